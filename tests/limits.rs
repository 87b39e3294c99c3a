//! Limits: EDQUOT (errno 122) on every allocating path, for a user limit and for a project
//! limit binding a uid without limits of its own; partial writes; writes that fit are never
//! refused; concurrent writers do not jointly overshoot; grace periods; defaults; live
//! changes; persistence across kill -9; df; exempt callers; bad input.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Fixture, assert_exact, report, run, run_ok};

const MIB: u64 = 1 << 20;

fn quota(f: &Fixture, args: &[&str]) -> std::process::Output {
    run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["quota", "set"]).args(args))
}

fn quota_ok(f: &Fixture, args: &[&str]) {
    let out = quota(f, args);
    assert!(out.status.success(), "quota set {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn edquot(out: &std::process::Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded")
}

fn used(f: &Fixture, kind: &str, id: u32) -> (u64, u64) {
    report(&f.state).get(&(kind.to_string(), id)).copied().unwrap_or_default()
}

#[test]
fn every_allocating_path_is_refused_over_a_user_limit() {
    let f = Fixture::new("limits-user");
    f.home("u", 1000, 1000);
    f.home("v", 1001, 1001);
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "2M", "--inodes-hard", "12"]);
    // Within the limit, everything works.
    f.sh_ok(1000, 1000, "cd u && head -c 1000000 /dev/zero > a && mkdir d && ln -s a s && mkfifo p");
    // A write that passes the limit is cut short, then refused, like ext4.
    let out = f.sh_as(1000, 1000, "head -c 3000000 /dev/zero > u/big");
    assert!(edquot(&out), "{out:?}");
    let big = std::fs::metadata(f.m("u/big")).unwrap().len();
    assert!(big > 0 && big < 1_100_000, "partial write of {big} bytes");
    let (bytes, _) = used(&f, "user", 1000);
    // Data never passes the limit; ext4's own metadata blocks (extent index, directory
    // blocks) allocated along with it may, by a few KiB (the bound in quotafs(8)).
    assert!(bytes <= 2 * MIB + 16 * 1024, "usage {bytes} stays within the hard limit's bound");
    // Every other allocating path is refused now.
    for cmd in [
        "head -c 100000 /dev/zero >> u/a",
        "fallocate -l 1M u/fa",
        "dd if=u/a of=u/copy bs=1M conv=notrunc status=none",
    ] {
        assert!(edquot(&f.sh_as(1000, 1000, cmd)), "{cmd}");
    }
    // Inode limit: creations refused once 12 inodes are used (bytes freed first).
    f.sh_ok(1000, 1000, "rm u/big");
    let n = used(&f, "user", 1000).1;
    for i in n..12 {
        f.sh_ok(1000, 1000, &format!("touch u/i{i}"));
    }
    for cmd in ["touch u/more", "mkdir u/dir2", "mkfifo u/p2", "ln -s x u/s2"] {
        assert!(edquot(&f.sh_as(1000, 1000, cmd)), "{cmd}");
    }
    // Over the limit (lowered below usage), growing and linking are refused too; freeing works.
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "512K"]);
    assert!(edquot(&f.sh_as(1000, 1000, "truncate -s 5M u/a")), "truncate up");
    assert!(edquot(&f.sh_as(1000, 1000, "ln u/a u/hard")), "link");
    f.sh_ok(1000, 1000, "rm u/a && rm -f u/i*");
    // Deleting freed space at once: writing works again.
    f.sh_ok(1000, 1000, "head -c 400000 /dev/zero > u/again");
    // Another user is not affected; root is never refused (but counted).
    f.sh_ok(1001, 1001, "head -c 3000000 /dev/zero > v/free");
    f.root("head -c 3000000 /dev/zero > u/by-root && chown 1000:1000 u/by-root");
    assert!(used(&f, "user", 1000).0 > 3 * MIB, "root's chown to an owner over the limit is allowed and counted");
    assert_exact(&f.state, f.backing(), "after the refusals");
}

#[test]
fn project_limit_binds_a_uid_without_user_limits() {
    let f = Fixture::new("limits-project");
    let st = f.state.to_str().unwrap().to_string();
    f.home("site", 1000, 1000);
    f.home("other", 1000, 1000);
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("site")).args(["--id", "7"]));
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("other")).args(["--id", "8"]));
    quota_ok(&f, &["--project", "7", "--bytes-hard", "3M", "--inodes-hard", "100"]);
    f.sh_ok(1000, 1000, "head -c 2500000 /dev/zero > site/a");
    assert!(edquot(&f.sh_as(1000, 1000, "head -c 2000000 /dev/zero > site/b")));
    // The same uid writes freely elsewhere.
    f.sh_ok(1000, 1000, "head -c 2000000 /dev/zero > other/b");
    // Every other allocating path in the full project, for a uid with no user limit.
    for cmd in [
        "head -c 100000 /dev/zero >> site/a",
        "fallocate -l 1M site/fa",
        "ln site/a site/hl",
        "mkdir site/newdir",
        "touch site/newfile",
        "mkfifo site/fifo",
        "ln -s target site/sl",
    ] {
        assert!(edquot(&f.sh_as(1000, 1000, cmd)), "{cmd} in a project over its limit");
    }
    // A sparse truncate up allocates nothing, so it is refused only over the limit (writes
    // fill a project exactly to it): lower the limit below the usage for a moment.
    quota_ok(&f, &["--project", "7", "--bytes-hard", "2M"]);
    assert!(edquot(&f.sh_as(1000, 1000, "truncate -s 10M site/a")), "truncate up in a project over its limit");
    quota_ok(&f, &["--project", "7", "--bytes-hard", "3M"]);
    // Moving a file into the full project is refused (mv's copy fallback too).
    assert!(edquot(&f.sh_as(1000, 1000, "mv other/b site/b2")));
    assert!(f.m("other/b").exists(), "nothing lost");
    // df inside the project shows the project's quota; outside, the backing's size.
    let df = |p: &str| {
        let out = run_ok(Command::new("df").args(["-B1", "--output=size,used,avail"]).arg(f.m(p)));
        let v: Vec<u64> = out.lines().nth(1).unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    };
    let (size, usedb, avail) = df("site");
    assert_eq!(size, 3 * MIB, "df size is the project's hard limit");
    assert!(usedb >= 2_500_000 && avail <= 3 * MIB - usedb + 4096, "{size} {usedb} {avail}");
    let (bsize, _, _) = df("other");
    assert!(bsize > 100 * MIB, "outside the limited project df shows the backing ({bsize})");
    assert_exact(&f.state, f.backing(), "after the project refusals");
}

#[test]
fn concurrent_writers_do_not_overshoot() {
    let f = Fixture::with_args("limits-concurrent", &["--threads", "8"]);
    f.home("u", 1000, 1000);
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "20M"]);
    let tenants: Vec<_> = (0..8)
        .map(|i| {
            let mnt = f.mnt.clone();
            std::thread::spawn(move || {
                Command::new("setpriv")
                    .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
                    .arg(format!("head -c 30000000 /dev/zero > u/t{i}"))
                    .current_dir(mnt)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for t in tenants {
        let out = t.join().unwrap();
        assert!(edquot(&out), "each writer hits the limit: {out:?}");
    }
    let on_disk = run_ok(Command::new("du").arg("-s").arg("-B1").arg(f.b("u")));
    let bytes: u64 = on_disk.split_whitespace().next().unwrap().parse().unwrap();
    assert!(bytes <= 21 * MIB, "8 writers against 20 MiB ended {bytes} bytes on disk (bound: 1 MiB over)");
    assert!(used(&f, "user", 1000).0 <= 21 * MIB);
    assert_exact(&f.state, f.backing(), "after the concurrent writers");
}

#[test]
fn grace_defaults_live_changes_and_persistence() {
    let mut f = Fixture::new("limits-grace");
    f.home("u", 1000, 1000);
    f.home("w", 1002, 1002);
    // Soft 1M / hard 10M with a 2 s grace: over soft is allowed until the grace runs out.
    quota_ok(&f, &["--user", "1000", "--bytes-soft", "1M", "--bytes-hard", "10M", "--grace", "2s"]);
    f.sh_ok(1000, 1000, "head -c 2000000 /dev/zero > u/a");
    let rows = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["report", "--json", "--user", "1000"]));
    let v: serde_json::Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(v[0]["bytes_soft"], 1 << 20);
    assert!(v[0]["grace_expires"].as_str().is_some_and(|s| s.ends_with('Z')), "{rows}");
    let table = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["report"]));
    assert!(table.lines().any(|l| l.starts_with("user") && l.contains("+-")), "{table}");
    f.sh_ok(1000, 1000, "head -c 100000 /dev/zero > u/b");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(edquot(&f.sh_as(1000, 1000, "head -c 100000 /dev/zero > u/c")), "grace expired: soft acts as hard");
    f.sh_ok(1000, 1000, "rm u/a");
    f.sh_ok(1000, 1000, "head -c 100000 /dev/zero > u/d");
    // Default limits bind users without their own.
    quota_ok(&f, &["--default-user", "--bytes-hard", "1M"]);
    assert!(edquot(&f.sh_as(1002, 1002, "head -c 2000000 /dev/zero > w/x")));
    // Raising a limit takes effect on the next operation.
    quota_ok(&f, &["--user", "1002", "--bytes-hard", "50M"]);
    f.sh_ok(1002, 1002, "head -c 2000000 /dev/zero > w/y");
    // Limits survive kill -9 and a remount.
    quota_ok(&f, &["--user", "1002", "--bytes-hard", "3M"]);
    f.kill9();
    f.start(&[]);
    assert!(edquot(&f.sh_as(1002, 1002, "head -c 2000000 /dev/zero > w/z")), "limit in force after kill -9");
    assert!(f.unmount().success());
    // With no daemon, quota set edits the store; the next mount enforces it.
    quota_ok(&f, &["--user", "1002", "--bytes-hard", "100M"]);
    f.start(&[]);
    f.sh_ok(1002, 1002, "head -c 2000000 /dev/zero > w/z");
    // Exempt uids are never refused but counted.
    assert!(f.unmount().success());
    f.start(&["--exempt-uid", "1002"]);
    quota_ok(&f, &["--user", "1002", "--bytes-hard", "1M"]);
    f.sh_ok(1002, 1002, "head -c 2000000 /dev/zero > w/exempt");
    assert!(used(&f, "user", 1002).0 > 2 * MIB);
    assert_exact(&f.state, f.backing(), "at the end");
}

#[test]
fn bad_quota_input_is_refused_and_changes_nothing() {
    let f = Fixture::new("limits-bad");
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "5M"]);
    for args in [
        vec!["--user", "1000", "--bytes-soft", "6M"],           // soft above hard
        vec!["--user", "1000", "--bytes-hard", "0"],            // zero
        vec!["--user", "1000", "--bytes-hard", "-1M"],          // negative
        vec!["--user", "1000", "--bytes-hard", "99999999999T"], // overflow
        vec!["--user", "no-such-user-xyz", "--bytes-hard", "1M"],
        vec!["--user", "1000", "--grace", "soon"],
        vec!["--user", "1000"], // nothing to set
        vec!["--user", "1000", "--project", "3", "--bytes-hard", "1M"],
    ] {
        let out = quota(&f, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let get = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["quota", "get", "--user", "1000"]));
    assert!(get.contains("hard 5.0M"), "unchanged: {get}");
    // A project no directory carries is allowed, with a note.
    let out = quota(&f, &["--project", "4242", "--bytes-hard", "1G"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no directory carries project 4242"));
}

#[test]
fn tenants_see_only_their_own_figures() {
    let f = Fixture::new("limits-show");
    let st = f.state.to_str().unwrap().to_string();
    f.home("alice", 1000, 1000);
    f.home("bob", 1001, 1001);
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("alice")).args([
        "--id",
        "31",
        "--name",
        "alice-site",
    ]));
    run_ok(
        Command::new(BIN)
            .args(["--state-dir", &st, "project", "assign"])
            .arg(f.m("bob"))
            .args(["--id", "32", "--name", "bob-site"]),
    );
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "7M"]);
    quota_ok(&f, &["--project", "32", "--bytes-hard", "9M"]);
    f.sh_ok(1000, 1000, "head -c 100000 /dev/zero > alice/a");
    f.sh_ok(1001, 1001, "head -c 200000 /dev/zero > bob/b");
    // Tenants run their own copy: the checkout (and so BIN) may sit in a directory only root
    // can enter.
    let bin = f.scratch.dir.join("quotafs");
    std::fs::copy(BIN, &bin).unwrap();
    let bin = bin.display().to_string();
    let show = |uid: u32| -> Vec<serde_json::Value> {
        let out = f.sh_ok(uid, uid, &format!("{bin} --state-dir {st} quota show --json"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let a = show(1000);
    let kinds: Vec<(String, u64)> =
        a.iter().map(|r| (r["kind"].as_str().unwrap().to_string(), r["id"].as_u64().unwrap())).collect();
    assert_eq!(kinds, vec![("user".into(), 1000), ("project".into(), 31)], "alice sees herself and her project: {a:?}");
    assert_eq!(a[0]["bytes_hard"], 7 << 20);
    let b = show(1001);
    assert!(b.iter().all(|r| r["id"] != 1000 && r["id"] != 31), "bob never sees alice's figures: {b:?}");
    assert!(b.iter().any(|r| r["kind"] == "project" && r["id"] == 32 && r["bytes_hard"] == 9 << 20));
    // A tenant cannot use the root-only control socket.
    let denied = f.sh_as(1000, 1000, &format!("{bin} --state-dir {st} report"));
    assert!(!denied.status.success(), "report through the control socket is root only");
    assert_ne!(denied.status.code(), Some(126), "the tenant could run the program; the socket refused it");
}
