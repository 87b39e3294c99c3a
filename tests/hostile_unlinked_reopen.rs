//! A tenant reopens a file it unlinked through `/proc/self/fd` of an `O_PATH` descriptor
//! (FUSE sends no OPEN for `O_PATH`, so the daemon saw no open at the unlink and charged the
//! file off), truncates it to take the charge off a second time, and stores real data with
//! what it gained; four rounds. The file's charge must go exactly once: the ledger equals a
//! rescan and the tenant cannot store more than its hard limit. (The reopen works while the
//! daemon's `O_PATH` descriptor cache still holds the deleted backing inode, as ext4 lets
//! an `O_PATH` descriptor keep a deleted inode alive; the daemon must then charge it again.)

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Fixture, assert_exact};

const MIB: u64 = 1 << 20;

const ATTACK: &str = r#"
import errno, os
MIB = 1 << 20
for r in range(4):
    victim = "victim%d" % r
    try:
        with open(victim, "wb") as f:
            f.write(b"v" * (8 * MIB))
    except OSError as e:
        print("round %d: victim write: errno %d" % (r, e.errno))
    try:
        path = os.open(victim, os.O_PATH)
    except FileNotFoundError:
        # At the limit even the create is refused (its directory block, quotafs(8) LIMITS).
        print("round %d: victim not created" % r)
        continue
    # Any request on the node by id (here a chmod) makes the daemon cache an O_PATH
    # descriptor of the backing inode, which keeps the ext4 inode alive after the unlink.
    os.chmod(victim, 0o600)
    os.unlink(victim)
    try:
        fd = os.open("/proc/self/fd/%d" % path, os.O_RDWR)
    except OSError as e:
        print("round %d: reopen refused: errno %d" % (r, e.errno))
    else:
        os.ftruncate(fd, 0)
        os.close(fd)
        print("round %d: reopened and truncated" % r)
    os.close(path)
    try:
        with open("data%d" % r, "wb") as f:
            f.write(b"d" * (8 * MIB))
        print("round %d: stored 8 MiB" % r)
    except OSError as e:
        print("round %d: data write: errno %d" % (r, e.errno))
"#;

#[test]
fn reopening_an_unlinked_file_does_not_take_its_charge_off_twice() {
    let f = Fixture::with_args("hostile-reopen", &["--checkpoint-interval", "3600"]);
    let home = f.home("t", 1000, 1000);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "20M"]);

    let out = f.sh_as(1000, 1000, &format!("cd t && exec /usr/bin/python3 -c '{ATTACK}'"));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the tenant's script failed:\n{said}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{said}");

    // What the tenant holds on the backing.
    let stored: u64 = std::fs::read_dir(f.b("t"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.uid() == 1000)
        .map(|m| m.blocks() * 512)
        .sum();
    assert_exact(&f.state, f.backing(), "after four rounds of unlink, reopen, truncate");
    // Data never passes the hard limit (a few metadata blocks may, see quotafs(8)).
    assert!(stored <= 20 * MIB + 64 * 1024, "the tenant stores {stored} bytes against a 20 MiB hard limit:\n{said}");
    drop(home);
}
