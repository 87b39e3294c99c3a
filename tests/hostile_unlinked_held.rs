//! A tenant keeps `O_PATH` descriptors (which FUSE does not count as opens) of files it
//! unlinked. The ledger charged them off at the unlink; their space must then be free on the
//! backing too, or the tenant keeps any number of deleted, uncharged files allocated: six
//! rounds of 8 MiB against a 20 MiB hard limit held 48 MiB of the backing.

mod common;

use std::process::Command;

use common::{Fixture, assert_exact, run};

const MIB: u64 = 1 << 20;

const HOLD: &str = r#"
import os, sys
MIB = 1 << 20
held = []
for r in range(6):
    name = "f%d" % r
    try:
        with open(name, "wb") as f:
            f.write(b"x" * (8 * MIB))
    except OSError as e:
        print("round %d: write: errno %d" % (r, e.errno), file=sys.stderr)
    path = os.open(name, os.O_PATH)
    os.chmod(name, 0o600)  # a request by node id: the daemon caches a descriptor of it
    os.unlink(name)
    held.append(path)
print("held", flush=True)
sys.stdin.readline()
"#;

/// Bytes in use on the file system of `path`.
fn used(path: &std::path::Path) -> u64 {
    let s = rustix::fs::statvfs(path).expect("statvfs of the backing");
    (s.f_blocks - s.f_bfree) * s.f_frsize
}

#[test]
fn unlinked_files_held_by_o_path_descriptors_do_not_keep_their_space() {
    let f = Fixture::with_args("hostile-held", &["--checkpoint-interval", "3600"]);
    f.home("t", 1000, 1000);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "20M"]);
    let baseline = used(f.backing());
    let holder = common::Held::spawn(1000, &f.m("t"), &["/usr/bin/python3", "-c", HOLD]);
    run(Command::new("sync").arg("-f").arg(f.backing()));
    let held = used(f.backing()).saturating_sub(baseline);
    holder.release();
    assert!(held <= 20 * MIB + MIB, "the tenant keeps {held} bytes of the backing allocated against a 20 MiB limit");
    assert_exact(&f.state, f.backing(), "after the tenant let go");
}
