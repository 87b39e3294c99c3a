//! A removal that frees a small file holds the victim open until the next FORGET or a 200 ms
//! tick, so that ext4 frees it off the request's path (`inode::evict`, docs/design.md §9.7). A
//! tenant must not be able to turn that into space kept allocated and uncharged: holding the
//! victims' nodes on the mount (`O_PATH` descriptors, so that no FORGET of them ever comes,
//! and doing nothing else) must not keep them on the backing beyond the next tick; nor may
//! reaching a held victim again by its node (an `fstat` of the `O_PATH` descriptor sends a
//! GETATTR, which the daemon serves by opening the inode by handle, and it can while the
//! victim is held) leave the daemon's descriptor cache keeping it: 200 of 200 files stayed
//! allocated, uncharged, for as long as the tenant held them.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, assert_exact};

const FILES: u64 = 200;

const HOLD: &str = r#"
import os, sys
held = []
for i in range(int(sys.argv[1])):
    name = "f%d" % i
    with open(name, "wb") as f:
        f.write(b"x" * 4096)
    fd = os.open(name, os.O_PATH)
    os.unlink(name)
    if sys.argv[2] == "stat":
        try:
            os.stat(fd)
        except OSError as e:  # ESTALE once the victim is freed, as before it was ever held
            assert e.errno == 116, e
    held.append(fd)
print("held", flush=True)
sys.stdin.readline()
"#;

/// Free inodes of the file system of `path`.
fn free_inodes(path: &std::path::Path) -> u64 {
    rustix::fs::statvfs(path).expect("statvfs of the backing").f_ffree
}

#[test]
fn victims_whose_nodes_a_tenant_holds_are_freed_on_the_backing_at_the_next_tick() {
    victims_held_by_the_tenant_are_freed("hostile-deferred", "hold");
}

#[test]
fn victims_a_tenant_reaches_again_by_their_nodes_are_freed_too() {
    victims_held_by_the_tenant_are_freed("hostile-deferred-stat", "stat");
}

/// The tenant makes FILES files, each unlinked while it holds its node, and with `how` =
/// "stat" has each reached again by its node right after the unlink.
fn victims_held_by_the_tenant_are_freed(name: &str, how: &str) {
    let f = Fixture::with_args(name, &["--checkpoint-interval", "3600"]);
    f.home("t", 1000, 1000);
    let before = free_inodes(f.backing());
    let files = FILES.to_string();
    let holder = common::Held::spawn(1000, &f.m("t"), &["/usr/bin/python3", "-c", HOLD, &files, how]);
    // The tenant made FILES files and unlinked each while holding its node: no FORGET of them
    // comes, and the tenant does nothing more. A handful of inodes may be the ledger's own
    // (a journal pack).
    let start = Instant::now();
    let freed = loop {
        let missing = before.saturating_sub(free_inodes(f.backing()));
        if missing <= 3 || start.elapsed() > Duration::from_secs(5) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = start.elapsed();
    assert!(freed <= 3, "{freed} of {FILES} unlinked files still take inodes on the backing after {waited:?}");
    assert!(waited < Duration::from_secs(2), "the unlinked files took {waited:?} to be freed on the backing");
    holder.release();
    assert_exact(&f.state, f.backing(), "after the tenant let go");
}

#[test]
fn a_tree_removed_leaves_nothing_allocated_on_the_backing() {
    let f = Fixture::new("deferred-rm");
    let home = f.home("t", 1000, 1000);
    let before = free_inodes(f.backing());
    f.sh_ok(
        1000,
        1000,
        &format!(
            "cd {} && mkdir tree && for d in 0 1 2 3; do mkdir tree/$d; for i in $(seq 100); do echo data > tree/$d/$i; done; done",
            home.display()
        ),
    );
    assert!(before - free_inodes(f.backing()) >= 405, "the tree takes its inodes");
    f.sh_ok(1000, 1000, &format!("rm -rf {}/tree", home.display()));
    let start = Instant::now();
    while before.saturating_sub(free_inodes(f.backing())) > 3 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let missing = before.saturating_sub(free_inodes(f.backing()));
    assert!(missing <= 3, "{missing} inodes of the removed tree are still allocated after {:?}", start.elapsed());
    assert_exact(&f.state, f.backing(), "after rm -rf");
}
