//! Data through the mount: large files, appends, truncation, sparse files and holes,
//! fallocate modes, copy_file_range, and a file that stays usable after unlink.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use common::{Fixture, errno_of, read_ahead_kb};
use rustix::fs::{FallocateFlags, fallocate};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn data_round_trip() {
    let f = Fixture::new("data");

    // A 24 MiB file written in odd-sized chunks reads back identical, through the mount and
    // on the backing.
    let data = pattern(24 << 20, 7);
    {
        let mut w = File::create(f.m("big")).unwrap();
        for chunk in data.chunks(100_003) {
            w.write_all(chunk).unwrap();
        }
        w.sync_all().unwrap();
    }
    assert_eq!(std::fs::read(f.m("big")).unwrap(), data, "read through the mount");
    assert_eq!(std::fs::read(f.b("big")).unwrap(), data, "bytes on the backing");
    assert_eq!(std::fs::metadata(f.m("big")).unwrap().len(), data.len() as u64);

    // Random-offset reads and overwrites.
    let rw = OpenOptions::new().read(true).write(true).open(f.m("big")).unwrap();
    rw.write_all_at(b"HELLO", 5_000_000).unwrap();
    let mut buf = [0u8; 5];
    rw.read_exact_at(&mut buf, 5_000_000).unwrap();
    assert_eq!(&buf, b"HELLO");
    drop(rw);

    // O_APPEND from two descriptors interleaves without losing data.
    let mut a = OpenOptions::new().append(true).create(true).open(f.m("log")).unwrap();
    let mut b = OpenOptions::new().append(true).open(f.m("log")).unwrap();
    for i in 0..50 {
        writeln!(a, "a{i}").unwrap();
        writeln!(b, "b{i}").unwrap();
    }
    let text = std::fs::read_to_string(f.m("log")).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(text.lines().any(|l| l == "b49") && text.lines().any(|l| l == "a0"));

    // O_TRUNC empties an existing file; O_EXCL refuses an existing name.
    std::fs::write(f.m("t"), b"0123456789").unwrap();
    OpenOptions::new().write(true).truncate(true).open(f.m("t")).unwrap();
    assert_eq!(std::fs::metadata(f.m("t")).unwrap().len(), 0);
    let excl = OpenOptions::new().write(true).create_new(true).open(f.m("t"));
    assert_eq!(errno_of(excl), libc::EEXIST);

    // truncate up makes a hole, truncate down drops data.
    std::fs::write(f.m("tr"), b"abcdef").unwrap();
    let t = OpenOptions::new().write(true).open(f.m("tr")).unwrap();
    t.set_len(1 << 20).unwrap();
    assert_eq!(std::fs::metadata(f.m("tr")).unwrap().len(), 1 << 20);
    t.set_len(3).unwrap();
    assert_eq!(std::fs::read(f.m("tr")).unwrap(), b"abc");
}

#[test]
fn sparse_files_and_fallocate() {
    let f = Fixture::new("sparse");
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(f.m("sparse")).unwrap();
    // Data at 0 and at 64 MiB, a hole between.
    file.write_all_at(&[1u8; 4096], 0).unwrap();
    file.write_all_at(&[2u8; 4096], 64 << 20).unwrap();
    file.sync_all().unwrap();
    let md = std::fs::metadata(f.m("sparse")).unwrap();
    assert_eq!(md.len(), (64 << 20) + 4096);
    assert!(md.blocks() * 512 < 1 << 20, "the hole takes no space: {} blocks", md.blocks());
    let hole = rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(0)).unwrap();
    assert_eq!(hole, 4096, "SEEK_HOLE finds the hole after the first block");
    let data = rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(4096)).unwrap();
    assert_eq!(data, 64 << 20, "SEEK_DATA finds the second block");
    let mut buf = vec![9u8; 8192];
    file.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "holes read as zeros");

    // fallocate: plain preallocation grows the size and allocates.
    let fa = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(f.m("fa")).unwrap();
    fallocate(&fa, FallocateFlags::empty(), 0, 8 << 20).unwrap();
    let md = fa.metadata().unwrap();
    assert_eq!(md.len(), 8 << 20);
    assert!(md.blocks() * 512 >= 8 << 20);
    // KEEP_SIZE allocates past EOF without changing the size.
    fallocate(&fa, FallocateFlags::KEEP_SIZE, 8 << 20, 4 << 20).unwrap();
    assert_eq!(fa.metadata().unwrap().len(), 8 << 20);
    // Punch a hole: space freed, bytes read as zero, size unchanged.
    fa.write_all_at(&[5u8; 1 << 20], 0).unwrap();
    let before = fa.metadata().unwrap().blocks();
    fallocate(&fa, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, 1 << 20).unwrap();
    let md = fa.metadata().unwrap();
    assert!(md.blocks() < before, "punch hole frees blocks ({} -> {})", before, md.blocks());
    let mut b = vec![1u8; 4096];
    fa.read_exact_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    // Zero range: bytes become zero.
    fa.write_all_at(&[7u8; 8192], 2 << 20).unwrap();
    fallocate(&fa, FallocateFlags::ZERO_RANGE, 2 << 20, 8192).unwrap();
    fa.read_exact_at(&mut b, 2 << 20).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn copy_file_range_and_unlinked_open_file() {
    let f = Fixture::new("cfr");
    let src_data = pattern(3 << 20, 1);
    std::fs::write(f.m("src"), &src_data).unwrap();
    let src = File::open(f.m("src")).unwrap();
    let dst = OpenOptions::new().write(true).create(true).truncate(true).open(f.m("dst")).unwrap();
    let mut copied = 0usize;
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while copied < src_data.len() {
        let n = rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), src_data.len() - copied)
            .unwrap();
        assert!(n > 0);
        copied += n;
    }
    drop(dst);
    assert_eq!(std::fs::read(f.m("dst")).unwrap(), src_data);

    // Unlinked but open: reads and writes keep working until close.
    let mut keep = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(f.m("gone")).unwrap();
    keep.write_all(b"still here").unwrap();
    std::fs::remove_file(f.m("gone")).unwrap();
    assert!(!f.m("gone").exists());
    keep.write_all(b", and more").unwrap();
    keep.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    keep.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here, and more");
    assert_eq!(keep.metadata().unwrap().nlink(), 0, "fstat of the unlinked file works");
    drop(keep);

    // A read-only open of a file being written by another descriptor sees the writes.
    let w = OpenOptions::new().write(true).create(true).truncate(true).open(f.m("shared")).unwrap();
    let r = OpenOptions::new().read(true).custom_flags(0).open(f.m("shared")).unwrap();
    w.write_all_at(b"fresh", 0).unwrap();
    let mut b5 = [0u8; 5];
    r.read_exact_at(&mut b5, 0).unwrap();
    assert_eq!(&b5, b"fresh");
}

/// The mount's readahead window (what `/sys/class/bdi/<dev>/read_ahead_kb` shows) is
/// `max_write`, so a sequential read reaches the daemon in requests of that size. The kernel
/// cuts the window to INIT's max_readahead when it takes the INIT reply; a window widened
/// before then was back at 128 KiB (eight times the READs, and a third more daemon CPU for a
/// cold read over /dev/fuse).
#[test]
fn readahead_window_is_max_write() {
    let f = Fixture::new("readahead");
    assert_eq!(read_ahead_kb(&f.m("")), 1024, "default max_write is 1 MiB");
    drop(f);
    let f = Fixture::with_args("readahead-256", &["--max-write", "262144"]);
    assert_eq!(read_ahead_kb(&f.m("")), 256);
}
