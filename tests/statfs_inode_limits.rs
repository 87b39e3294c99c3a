//! `df -i` follows inode limits the way `df` follows byte limits, also when no byte limit is
//! set: each figure pair of statfs comes from the first of the node's project and the caller
//! with a limit of that kind (design §11), and a limit changed live shows at once.

mod common;

use common::{Fixture, assert_exact, report};

/// statfs of `path` as uid: (frsize, blocks, bfree, bavail, files, ffree).
fn statfs_as(f: &Fixture, uid: u32, path: &str) -> [u64; 6] {
    let out = f.sh_ok(uid, uid, &format!("stat -f -c '%S %b %f %a %c %d' {path}"));
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v.try_into().unwrap_or_else(|v| panic!("stat -f output {v:?}"))
}

#[test]
fn df_inodes_follow_inode_limits_with_or_without_byte_limits() {
    let f = Fixture::new("statfs-inodes");
    f.home("site", 1000, 1000);
    f.home("bytesonly", 1000, 1000);
    f.home("u", 1001, 1001);
    f.quotafs(&["project", "assign", "--id", "7", f.m("site").to_str().unwrap()]);
    f.quotafs(&["project", "assign", "--id", "8", f.m("bytesonly").to_str().unwrap()]);
    f.quotafs(&["quota", "set", "--project", "7", "--inodes-hard", "10"]);
    f.quotafs(&["quota", "set", "--project", "8", "--bytes-hard", "1M"]);
    f.quotafs(&["quota", "set", "--user", "1001", "--inodes-soft", "20"]);
    f.quotafs(&["quota", "set", "--user", "1000", "--inodes-hard", "50"]);
    f.sh_ok(1000, 1000, "touch site/a site/b site/c && mkdir site/d && head -c 100000 /dev/zero > bytesonly/x");
    f.sh_ok(1001, 1001, "touch u/a u/b");
    let volume = statfs_as(&f, 0, ".");
    let usage = report(&f.state);

    // A project with only an inode limit: its inodes, the volume's blocks.
    let site = statfs_as(&f, 1000, "site");
    let used = usage[&("project".into(), 7)].1;
    assert_eq!(site[4..], [10, 10 - used], "df -i in project 7 (10 inodes, {used} used)");
    assert_eq!(site[1], volume[1], "no byte limit: the volume's size");
    // Whoever asks: the project binds every file under it.
    assert_eq!(statfs_as(&f, 1001, "site")[4..], [10, 10 - used]);

    // A user with only a soft inode limit, in its home (no project limit there).
    let home = statfs_as(&f, 1001, "u");
    let used_u = usage[&("user".into(), 1001)].1;
    assert_eq!(home[4..], [20, 20 - used_u], "df -i of uid 1001 (soft limit 20, {used_u} used)");
    assert_eq!(home[1], volume[1]);

    // A project with only a byte limit, a caller with only an inode limit: each figure from
    // the subject that limits it.
    let mixed = statfs_as(&f, 1000, "bytesonly");
    let used_1000 = usage[&("user".into(), 1000)].1;
    assert_eq!(mixed[0] * mixed[1], 1 << 20, "size: project 8's byte limit");
    assert_eq!(mixed[4..], [50, 50 - used_1000], "files: uid 1000's inode limit");

    // A limit changed live shows at once.
    f.quotafs(&["quota", "set", "--project", "7", "--inodes-hard", "30"]);
    assert_eq!(statfs_as(&f, 1000, "site")[4..], [30, 30 - used]);
    assert_exact(&f.state, f.backing(), "after the statfs checks");
}
