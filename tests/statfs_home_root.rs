//! statfs of a user's home asked by root (as an NFS server statfs's an export's root, and as an
//! operator's `df` does) shows the home owner's quota, equal to `quotafs report`; any other
//! tenant asking gets its own figures, never the owner's; a project root in the home shows its
//! project's figures and cannot be renamed out of it; a limit changed live shows at once.

mod common;

use common::{Fixture, assert_exact, report};

/// statfs of `path` (relative to the mount) as uid: (frsize, blocks, bfree, bavail, files, ffree).
fn statfs_as(f: &Fixture, uid: u32, path: &str) -> [u64; 6] {
    let out = f.sh_ok(uid, uid, &format!("stat -f -c '%S %b %f %a %c %d' {path}"));
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v.try_into().unwrap_or_else(|v| panic!("stat -f output {v:?}"))
}

/// (size in bytes, used bytes rounded up to frsize, files, used files) of a statfs answer.
fn figures(s: [u64; 6]) -> (u64, u64, u64, u64) {
    (s[0] * s[1], s[0] * (s[1] - s[2]), s[4], s[4] - s[5])
}

#[test]
fn root_sees_the_owners_quota_on_a_home_and_tenants_only_their_own() {
    let f = Fixture::new("statfs-home");
    f.home("alice", 1001, 1001);
    f.home("bob", 1002, 1002);
    f.quotafs(&["quota", "set", "--user", "1001", "--bytes-hard", "2M", "--inodes-hard", "40"]);
    f.quotafs(&["quota", "set", "--user", "1002", "--bytes-hard", "5M"]);
    f.sh_ok(1001, 1001, "head -c 300000 /dev/zero > alice/a && mkdir alice/sub alice/proj && touch alice/sub/b");
    f.quotafs(&["project", "assign", "--id", "9", f.m("alice/proj").to_str().unwrap()]);
    f.quotafs(&["quota", "set", "--project", "9", "--bytes-hard", "512K"]);
    let volume = statfs_as(&f, 0, ".");
    let round = |b: u64| b.div_ceil(volume[0]) * volume[0];

    // Root asking about alice's home: alice's limits and usage, as `report` shows them.
    let (bytes, inodes) = report(&f.state)[&("user".into(), 1001)];
    assert_eq!(figures(statfs_as(&f, 0, "alice")), (2 << 20, round(bytes), 40, inodes), "root's df of alice's home");
    // The mount root stays the volume's.
    assert_eq!(statfs_as(&f, 0, ".")[1], volume[1]);

    // Another tenant asking about alice's home sees its own quota, not alice's.
    let (bob_bytes, _) = report(&f.state)[&("user".into(), 1002)];
    let seen = figures(statfs_as(&f, 1002, "alice"));
    assert_eq!((seen.0, seen.1), (5 << 20, round(bob_bytes)), "bob's df of alice's home: bob's own");
    assert_eq!(seen.2, volume[4], "bob has no inode limit: the volume's inodes, not alice's 40");

    // A project root inside the home: its project's figures, also for root.
    let before = statfs_as(&f, 0, "alice/proj");
    assert_eq!(before[0] * before[1], 512 << 10, "project 9's root");
    let mv = f.sh_as(1001, 1001, "python3 -c 'import os; os.rename(\"alice/proj\", \"alice/renamed\")'");
    // rename(2) of a project root into a parent of another project is EXDEV (one directory,
    // one project; `mv` copies into the parent's project instead): the root keeps its project.
    assert!(String::from_utf8_lossy(&mv.stderr).contains("Errno 18"), "rename of a project root: {mv:?}");
    let p = statfs_as(&f, 0, "alice/proj");
    assert_eq!(p[0] * p[1], 512 << 10, "project 9 after the refused rename");

    // A live change shows at once.
    f.quotafs(&["quota", "set", "--user", "1001", "--bytes-hard", "3M", "--inodes-hard", "60"]);
    let (bytes, inodes) = report(&f.state)[&("user".into(), 1001)];
    assert_eq!(figures(statfs_as(&f, 0, "alice")), (3 << 20, round(bytes), 60, inodes));
    assert_exact(&f.state, f.backing(), "after the statfs checks");
}
