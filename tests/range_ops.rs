//! Range operations into a file another tenant holds open for reading: copy_file_range and
//! splice copy, and FICLONE, FICLONERANGE, FIDEDUPERANGE and exchange-range answer exactly
//! what ext4 answers for the same files (run on the raw backing and through the mount, by the
//! same tenant); never EIO.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::holder::Holder;
use common::{Fixture, assert_exact, run_ok};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/rangeops.py");

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// Makes src and dst in `dir` (owned by the tenant), holds dst open read-only (and mapped) in
/// another tenant's process, and runs every range operation as the tenant.
fn answers(f: &Fixture, dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    for (p, len) in [(&src, 3 << 20), (&dst, 8192)] {
        std::fs::write(p, pattern(len)).unwrap();
        std::os::unix::fs::chown(p, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut reader = Holder::spawn(1001, 1001);
    assert_eq!(reader.cmd(&format!("open r {} rdonly", dst.display())), "ok");
    assert_eq!(reader.cmd(&format!("open m {} mmap_private", dst.display())), "ok");
    let out = f.sh_ok(1000, 1000, &format!("/usr/bin/python3 {SCRIPT} {} {}", src.display(), dst.display()));
    // The held reader sees the copied bytes.
    let seen = reader.cmd("read r");
    format!("{out}reader: {seen}\n")
}

#[test]
fn range_operations_answer_as_ext4() {
    let f = Fixture::serving("rangeops", Some("served"), &[]);
    let want = answers(&f, &f.scratch.backing.join("raw"));
    let got = answers(&f, &f.m("t"));
    assert!(!got.contains("EIO"), "EIO through the mount:\n{got}");
    assert_eq!(got, want, "through the mount (left) vs ext4 (right)");
    run_ok(&mut std::process::Command::new("sync"));
    assert_exact(&f.state, f.backing(), "after the range operations");
}
