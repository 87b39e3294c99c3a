//! The wire code against hand-built requests in the kernel's layout.

use std::time::{Duration, UNIX_EPOCH};

use super::abi::{self, op};
use super::attr::{FileAttr, FileType};
use super::decode::{DecodeError, Op, decode, forget_pairs};
use super::encode::{InitOut, Out};

/// A request as the kernel lays it out: header (length filled in by `done`), then `body`.
fn request(opcode: u32, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&opcode.to_ne_bytes());
    b.extend_from_slice(&77u64.to_ne_bytes()); // unique
    b.extend_from_slice(&nodeid.to_ne_bytes());
    for v in [1001u32, 1002, 4242] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&[0u8; 4]); // total_extlen, padding
    assert_eq!(b.len(), abi::IN_HEADER_LEN);
    b.extend_from_slice(body);
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

fn words(ws: &[u64], halves: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    for w in ws {
        b.extend_from_slice(&w.to_ne_bytes());
    }
    for h in halves {
        b.extend_from_slice(&h.to_ne_bytes());
    }
    b
}

#[test]
fn header_fields_and_names_are_read() {
    let r = request(op::LOOKUP, 9, b"hello\0");
    let (h, o) = decode(&r).unwrap();
    assert_eq!((h.opcode, h.unique, h.nodeid, h.uid, h.gid, h.pid), (op::LOOKUP, 77, 9, 1001, 1002, 4242));
    assert_eq!(o, Op::Lookup { name: b"hello" });

    let mut body = words(&[5], &[]);
    body.extend_from_slice(b"a\0b\0");
    let r = request(op::RENAME, 1, &body);
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::Rename { newdir: 5, flags: 0, name: b"a", newname: b"b" });

    let mut body = words(&[6], &[libc::RENAME_NOREPLACE, 0]);
    body.extend_from_slice(b"x\0y\0");
    let r = request(op::RENAME2, 1, &body);
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::Rename { newdir: 6, flags: libc::RENAME_NOREPLACE, name: b"x", newname: b"y" });

    let r = request(op::SYMLINK, 1, b"link\0/target/path\0");
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::Symlink { name: b"link", target: b"/target/path" });
}

#[test]
fn write_data_follows_its_fixed_part() {
    let mut body = words(&[3, 4096], &[5, abi::WRITE_CACHE]);
    body.extend_from_slice(&[0u8; 16]);
    body.extend_from_slice(b"abcde");
    let r = request(op::WRITE, 2, &body);
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::Write { fh: 3, offset: 4096, write_flags: abi::WRITE_CACHE, data: b"abcde" });
    // A size past the bytes present is refused, not read past the end.
    let mut body = words(&[3, 0], &[6, 0]);
    body.extend_from_slice(&[0u8; 16]);
    body.extend_from_slice(b"abcde");
    assert!(matches!(decode(&request(op::WRITE, 2, &body)), Err(DecodeError::Short { .. })));
}

#[test]
fn setattr_and_getattr_flags() {
    let mut body = words(&[], &[abi::fattr::MODE | abi::fattr::MTIME_NOW | abi::fattr::SIZE, 0]);
    body.extend_from_slice(&words(&[11, 4096, 0, 100, 200, 300], &[1, 2, 3, 0o640, 0, 1001, 1002, 0]));
    assert_eq!(body.len(), 88);
    let r = request(op::SETATTR, 2, &body);
    let (_, o) = decode(&r).unwrap();
    let Op::SetAttr(s) = o else { panic!("{o:?}") };
    assert_eq!(
        (s.fh, s.size, s.atime, s.mtime, s.mode, s.uid, s.gid),
        (11, 4096, (100, 1), (200, 2), 0o640, 1001, 1002)
    );

    let r = request(op::GETATTR, 2, &[words(&[], &[0, 0]), words(&[9], &[])].concat());
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::GetAttr { fh: None });
    let mut body = words(&[], &[abi::GETATTR_FH, 0]);
    body.extend_from_slice(&words(&[9], &[]));
    let r = request(op::GETATTR, 2, &body);
    assert_eq!(decode(&r).unwrap().1, Op::GetAttr { fh: Some(9) });
}

#[test]
fn batch_forget_pairs() {
    let mut body = words(&[], &[2, 0]);
    body.extend_from_slice(&words(&[10, 1, 11, 3], &[]));
    let r = request(op::BATCH_FORGET, 0, &body);
    let (_, o) = decode(&r).unwrap();
    let Op::BatchForget { pairs } = o else { panic!() };
    assert_eq!(forget_pairs(pairs).collect::<Vec<_>>(), vec![(10, 1), (11, 3)]);
    // A count larger than the pairs present is refused.
    let mut body = words(&[], &[3, 0]);
    body.extend_from_slice(&words(&[10, 1], &[]));
    assert!(decode(&request(op::BATCH_FORGET, 0, &body)).is_err());
}

/// Every prefix of every request, with its length field made to match, decodes to an error
/// or an operation; none panics.
#[test]
fn truncated_requests_are_errors_not_panics() {
    let samples = [
        request(op::LOOKUP, 1, b"name\0"),
        request(op::MKNOD, 1, &[words(&[], &[0o644, 0, 0o22, 0]), b"n\0".to_vec()].concat()),
        request(op::CREATE, 1, &[words(&[], &[0, 0o644, 0o22, 0]), b"n\0".to_vec()].concat()),
        request(op::SETXATTR, 1, &[words(&[], &[3, 0]), b"user.a\0abc".to_vec()].concat()),
        request(op::COPY_FILE_RANGE, 1, &words(&[1, 2, 3, 4, 5, 6, 7], &[])),
        request(op::INIT, 0, &words(&[], &[7, 41, 131072, 0, 0])),
    ];
    for s in &samples {
        for cut in 0..s.len() {
            let mut b = s[..cut].to_vec();
            if b.len() >= 4 {
                b[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            let _ = decode(&b);
        }
        // A length field that disagrees with what was read.
        let mut b = s.clone();
        b[0] ^= 1;
        assert!(matches!(decode(&b), Err(DecodeError::Length { .. })));
    }
    assert!(matches!(decode(&request(op::LOOKUP, 1, b"no-nul")), Err(DecodeError::Unterminated { .. })));
}

#[test]
fn init_flags2_only_with_init_ext() {
    let r = request(op::INIT, 0, &words(&[], &[7, 41, 1 << 17, abi::init::INIT_EXT as u32, 1 << 7]));
    let (_, o) = decode(&r).unwrap();
    assert_eq!(
        o,
        Op::Init(super::decode::InitIn {
            major: 7,
            minor: 41,
            max_readahead: 1 << 17,
            flags: abi::init::INIT_EXT | abi::init::HAS_RESEND
        })
    );
    let r = request(op::INIT, 0, &words(&[], &[7, 41, 1 << 17, 0, 1 << 7]));
    let (_, o) = decode(&r).unwrap();
    assert_eq!(o, Op::Init(super::decode::InitIn { major: 7, minor: 41, max_readahead: 1 << 17, flags: 0 }));
}

fn attr() -> FileAttr {
    FileAttr {
        ino: 5,
        size: 10,
        blocks: 8,
        atime: UNIX_EPOCH + Duration::new(100, 5),
        mtime: UNIX_EPOCH - Duration::new(1, 1),
        ctime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0o644,
        nlink: 1,
        uid: 1001,
        gid: 1002,
        rdev: 0,
        blksize: 4096,
        flags: abi::ATTR_SUBMOUNT,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn entry_and_attr_layouts() {
    let mut o = Out::new();
    o.entry(5, 3, Duration::from_millis(1500), Duration::from_secs(2), &attr());
    let m = o.finish(9, 0, 0);
    assert_eq!(m.len(), abi::OUT_HEADER_LEN + abi::ENTRY_OUT_LEN);
    assert_eq!((u32_at(&m, 0) as usize, u64_at(&m, 8)), (m.len(), 9));
    let e = &m[abi::OUT_HEADER_LEN..];
    assert_eq!((u64_at(e, 0), u64_at(e, 8), u64_at(e, 16), u64_at(e, 24)), (5, 3, 1, 2));
    assert_eq!((u32_at(e, 32), u32_at(e, 36)), (500_000_000, 0));
    let a = &e[40..];
    assert_eq!((u64_at(a, 0), u64_at(a, 8), u64_at(a, 16)), (5, 10, 8));
    // atime 100.000000005; mtime one second and a nanosecond before the epoch.
    assert_eq!((u64_at(a, 24), u32_at(a, 48)), (100, 5));
    assert_eq!((u64_at(a, 32) as i64, u32_at(a, 52)), (-2, 999_999_999));
    assert_eq!(u32_at(a, 60), libc::S_IFREG | 0o644);
    assert_eq!((u32_at(a, 68), u32_at(a, 72)), (1001, 1002));
    assert_eq!((u32_at(a, 80), u32_at(a, 84)), (4096, abi::ATTR_SUBMOUNT));
}

#[test]
fn dirents_are_padded_and_bounded() {
    let mut o = Out::with_capacity(0);
    assert!(o.dirent(64, 7, 1, FileType::Directory.dirent_type(), b"abc"));
    assert_eq!(o.body_len(), 32); // 24 + 3, padded to 8
    assert!(o.dirent(64, 8, 2, FileType::RegularFile.dirent_type(), b"abcdefgh"));
    assert_eq!(o.body_len(), 64);
    assert!(!o.dirent(64, 9, 3, 0, b"x"), "a full listing takes no more");
    assert_eq!(o.body_len(), 64);
    let m = o.finish(1, 0, 0);
    let d = &m[abi::OUT_HEADER_LEN..];
    assert_eq!((u64_at(d, 0), u64_at(d, 8), u32_at(d, 16), u32_at(d, 20)), (7, 1, 3, libc::DT_DIR as u32));
    assert_eq!(&d[24..27], b"abc");
    assert_eq!(&d[27..32], &[0u8; 5]);

    let mut o = Out::with_capacity(0);
    assert!(o.direntplus(4096, 1, b"f", 2, Duration::ZERO, Duration::ZERO, &attr()));
    assert_eq!(o.body_len(), (abi::ENTRY_OUT_LEN + abi::DIRENT_LEN + 1).next_multiple_of(8));
}

#[test]
fn init_reply_layout() {
    let i = InitOut {
        major: 7,
        minor: 41,
        max_readahead: 1 << 20,
        flags: abi::init::INIT_EXT | abi::init::SUBMOUNTS | abi::init::HAS_RESEND,
        max_background: 64,
        congestion_threshold: 48,
        max_write: 1 << 20,
        max_pages: 256,
    };
    let mut o = Out::new();
    o.init(&i);
    let m = o.finish(1, 0, 0);
    let b = &m[abi::OUT_HEADER_LEN..];
    assert_eq!(b.len(), abi::INIT_OUT_LEN);
    assert_eq!((u32_at(b, 0), u32_at(b, 4), u32_at(b, 8)), (7, 41, 1 << 20));
    assert_eq!(u32_at(b, 12) as u64, (abi::init::INIT_EXT | abi::init::SUBMOUNTS) & 0xffff_ffff);
    assert_eq!(u32_at(b, 20), 1 << 20);
    assert_eq!(u32_at(b, 32) as u64, abi::init::HAS_RESEND >> 32);
}
