//! Routes: each user's `Dropbox` on a backing of its own, over two (or three) ext4 loop images.
//! One tree for tenants; files land on the right backing; EXDEV across; tree moves and
//! removals keep both backings consistent; inode numbers distinct and stable; limits and
//! projects span both; check and kill -9 recovery over both; inotify on the mount; bad input.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{BIN, Fixture, assert_exact_all, errno_of, report, run, run_ok};

const DROPBOX: &str = "/home/*/Dropbox";

fn quotafs(f: &Fixture, args: &[&str]) -> std::process::Output {
    run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args))
}

#[test]
fn routed_subtrees_land_on_their_backing_and_list_as_one_tree() {
    let mut f = Fixture::with_routes("route-basic", &[DROPBOX, "/srv/cache"], &[]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(
        1000,
        1000,
        "mkdir home/a/Dropbox && echo synced > home/a/Dropbox/doc && mkdir home/a/Mail && echo m > home/a/Mail/x",
    );
    f.root("mkdir -p srv/cache && echo c > srv/cache/blob");
    let (main, drop_b, cache_b) = (f.served.clone(), f.routed[0].backing.clone(), f.routed[1].backing.clone());
    // Where things live.
    assert_eq!(std::fs::read_to_string(drop_b.join("home/a/Dropbox/doc")).unwrap(), "synced\n");
    assert!(!main.join("home/a/Dropbox").exists(), "the Dropbox must not be on the main backing");
    assert!(main.join("home/a/Mail/x").exists());
    assert_eq!(std::fs::read_to_string(cache_b.join("srv/cache/blob")).unwrap(), "c\n");
    // The hidden parent has the owner and mode of the visible one.
    let (vis, hid) = (std::fs::metadata(f.m("home/a")).unwrap(), std::fs::metadata(drop_b.join("home/a")).unwrap());
    assert_eq!((hid.uid(), hid.gid(), hid.mode()), (vis.uid(), vis.gid(), vis.mode()));
    // One listing, d_ino == st_ino, distinct backings in the high bits.
    let ls = f.sh_ok(1000, 1000, "ls -i home/a");
    let mut names: Vec<&str> = ls.split_whitespace().skip(1).step_by(2).collect();
    names.sort();
    assert_eq!(names, ["Dropbox", "Mail"], "{ls}");
    for line in ls.lines() {
        let (ino, name) = line.trim().split_once(' ').unwrap();
        assert_eq!(ino.parse::<u64>().unwrap(), common::ino(&f.m(&format!("home/a/{name}"))), "{name}");
    }
    let (d, m, c) =
        (common::ino(&f.m("home/a/Dropbox")), common::ino(&f.m("home/a/Mail")), common::ino(&f.m("srv/cache")));
    assert!(d >> 56 != 0 && c >> 56 != 0 && m >> 56 == 0 && d >> 56 != c >> 56, "{d:x} {m:x} {c:x}");
    // Stable across a remount, also with the routes listed in the other order.
    let doc = common::ino(&f.m("home/a/Dropbox/doc"));
    assert!(f.unmount().success());
    f.route_args = vec![
        "--route".into(),
        format!("/srv/cache={}", cache_b.display()),
        "--route".into(),
        format!("{DROPBOX}={}", drop_b.display()),
    ];
    f.start(&[]);
    assert_eq!(common::ino(&f.m("home/a/Dropbox/doc")), doc);
    assert_eq!(common::ino(&f.m("srv/cache")), c);
    assert_eq!(std::fs::read_to_string(f.m("home/a/Dropbox/doc")).unwrap(), "synced\n");
    assert_exact_all(&f.state, &f.all_backings(), "after routed creates");
    // Each routed backing is served by a pool of its own, with its own request count.
    let st: serde_json::Value = serde_json::from_slice(&quotafs(&f, &["status", "--json"]).stdout).unwrap();
    let backings = st["backings"].as_array().unwrap();
    assert_eq!(backings.len(), 3, "{st}");
    assert!(!backings[0]["own_pool"].as_bool().unwrap() && backings[1]["own_pool"].as_bool().unwrap(), "{st}");
    assert!(backings[0]["requests"].as_u64().unwrap() > 0 && backings[1]["requests"].as_u64().unwrap() > 0, "{st}");
}

#[test]
fn renames_links_and_removals_keep_the_backings_consistent() {
    let f = Fixture::with_routes("route-moves", &[DROPBOX], &[]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.home("srv", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox && echo d > home/a/Dropbox/f && echo h > home/a/g");
    let routed = f.routed[0].backing.clone();
    // Across backings: EXDEV for rename and link; mv copies.
    assert_eq!(errno_of(std::fs::rename(f.m("home/a/Dropbox/f"), f.m("home/a/f2"))), libc::EXDEV);
    assert_eq!(errno_of(std::fs::hard_link(f.m("home/a/g"), f.m("home/a/Dropbox/g"))), libc::EXDEV);
    f.sh_ok(1000, 1000, "mv home/a/g home/a/Dropbox/g && mv home/a/Dropbox/f home/a/f");
    assert!(routed.join("home/a/Dropbox/g").exists() && f.served.join("home/a/f").exists());
    // A user's home renamed: its Dropbox moves with it on the routed backing.
    f.root("mv home/a home/b");
    assert_eq!(std::fs::read_to_string(f.m("home/b/Dropbox/g")).unwrap(), "h\n");
    assert!(routed.join("home/b/Dropbox/g").exists() && !routed.join("home/a").exists());
    // Moving it off the route's path would orphan the Dropbox: EXDEV (mv copies instead).
    assert_eq!(errno_of(std::fs::rename(f.m("home/b"), f.m("srv/b"))), libc::EXDEV);
    // A directory moved onto the route's path from elsewhere: EXDEV (its own Dropbox would be
    // hidden by the route); mv copies it, and the copy's Dropbox lands on the routed backing.
    f.sh_ok(1000, 1000, "mkdir -p srv/c/Dropbox && echo s > srv/c/Dropbox/s");
    assert_eq!(errno_of(std::fs::rename(f.m("srv/c"), f.m("home/c"))), libc::EXDEV);
    f.root("mv srv/c home/c");
    assert!(routed.join("home/c/Dropbox/s").exists());
    // A home whose only entry is its Dropbox is not empty; rm -rf removes both halves.
    f.root("rm home/b/f");
    assert_eq!(errno_of(std::fs::remove_dir(f.m("home/b"))), libc::ENOTEMPTY);
    f.root("rm -rf home/b");
    assert!(!f.m("home/b").exists() && !routed.join("home/b").exists() && !f.served.join("home/b").exists());
    // The routed directory itself: rmdir and rename within the routed backing.
    f.sh_ok(1000, 1000, "mkdir home/c/x");
    f.root("rm -rf home/c/Dropbox && mkdir home/c/Dropbox && rmdir home/c/Dropbox");
    assert!(!routed.join("home/c/Dropbox").exists());
    assert_exact_all(&f.state, &f.all_backings(), "after moves and removals");
    let check = quotafs(&f, &["check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

#[test]
fn limits_and_projects_span_both_backings() {
    let f = Fixture::with_routes("route-limits", &[DROPBOX], &[]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox");
    let out = quotafs(&f, &["quota", "set", "--user", "1000", "--bytes-hard", "2M"]);
    assert!(out.status.success());
    f.sh_ok(1000, 1000, "head -c 1500000 /dev/zero > home/a/big");
    let over = f.sh_as(1000, 1000, "head -c 1000000 /dev/zero > home/a/Dropbox/big");
    assert!(!over.status.success() && String::from_utf8_lossy(&over.stderr).contains("Disk quota exceeded"));
    let used = report(&f.state)[&("user".into(), 1000)].0;
    assert!(used <= 2 << 20, "user 1000 uses {used} bytes past a 2 MiB limit over two backings");
    // A project on the home covers its Dropbox on the other backing.
    run_ok(
        Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "assign", "--id", "5"]).arg(f.m("home/a")),
    );
    let dropbox_bytes = std::fs::metadata(f.m("home/a/Dropbox/big")).unwrap().blocks() * 512;
    assert!(dropbox_bytes > 0);
    assert_exact_all(&f.state, &f.all_backings(), "after project assign across backings");
    assert!(quotafs(&f, &["quota", "set", "--user", "1000", "--bytes-hard", "10M"]).status.success());
    f.sh_ok(1000, 1000, "echo new > home/a/Dropbox/new");
    let p5 = report(&f.state)[&("project".into(), 5)];
    assert!(p5.0 >= 1_500_000 + dropbox_bytes, "project 5 must hold both halves: {p5:?}");
    assert_exact_all(&f.state, &f.all_backings(), "after a create inside the re-tagged Dropbox");
}

#[test]
fn kill9_recovery_and_check_cover_both_backings() {
    let mut f = Fixture::with_routes("route-crash", &[DROPBOX], &[]);
    f.home("home", 0, 0);
    for u in ["a", "b"] {
        f.home(&format!("home/{u}"), 1000, 1000);
    }
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox home/b/Dropbox");
    assert!(quotafs(&f, &["checkpoint"]).status.success());
    f.sh_ok(
        1000,
        1000,
        "for i in $(seq 1 40); do echo $i > home/a/Dropbox/f$i; head -c 5000 /dev/zero >> home/b/Dropbox/g; mkdir -p home/b/Dropbox/d$i; done; rm home/a/Dropbox/f1*",
    );
    f.kill9();
    f.start(&[]);
    assert_exact_all(&f.state, &f.all_backings(), "after kill -9 with routed changes");
    // A routed path present on the main backing too is a conflict: the routed one is served
    // and check names it.
    std::fs::create_dir_all(f.served.join("home/a/Dropbox")).unwrap();
    let out = quotafs(&f, &["check", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/home/a/Dropbox exists on the main backing"), "{text}");
    assert_eq!(std::fs::read_dir(f.m("home/a/Dropbox")).unwrap().count(), 29, "the routed Dropbox is served");
}

#[test]
fn writes_made_directly_to_a_watched_routed_backing_are_charged() {
    let mut f = Fixture::with_routes("route-watch", &[DROPBOX], &["--watch-routes"]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox && echo through > home/a/Dropbox/mine");
    run_ok(
        Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "assign", "--id", "9"]).arg(f.m("home/a")),
    );
    let outside = f.routed[0].backing.join("home/a/Dropbox");
    let tenant_outside = |script: &str| {
        let out = run(Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", script])
            .current_dir(&outside));
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // A client pointed at the backing itself, while the daemon runs.
    tenant_outside("head -c 3000000 /dev/zero > big && mkdir d && echo x > d/y && rm mine");
    let want = common::recount_all(&f.all_backings());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while report(&f.state) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "outside writes not charged: {:?} vs {:?}",
            report(&f.state),
            want
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(want[&("project".into(), 9)].0 >= 3_000_000, "inherited the home's project: {want:?}");
    assert_exact_all(&f.state, &f.all_backings(), "after outside writes while running");
    // Made through the mount afterwards: still exact (tags were written by the recount).
    f.sh_ok(1000, 1000, "echo more >> home/a/Dropbox/d/y && rm home/a/Dropbox/big");
    assert_exact_all(&f.state, &f.all_backings(), "after mount writes to outside-made files");
    // While the daemon is down: found at the next mount.
    assert!(f.unmount().success());
    tenant_outside("head -c 700000 /dev/zero > offline && rm -r d");
    f.start(&["--watch-routes"]);
    assert_exact_all(&f.state, &f.all_backings(), "after outside writes while the daemon was down");
    // kill -9 amid writes from both sides: recovery replays the log, the recount the rest.
    f.sh_ok(1000, 1000, "for i in 1 2 3 4 5; do echo $i > home/a/Dropbox/m$i; done");
    tenant_outside("for i in 1 2 3 4 5; do head -c 20000 /dev/zero > o$i; done; rm offline");
    f.kill9();
    f.start(&["--watch-routes"]);
    assert_exact_all(&f.state, &f.all_backings(), "after kill -9 with writes from both sides");
}

#[test]
fn inotify_on_the_mount_sees_changes_made_through_it() {
    use rustix::fs::inotify;
    let f = Fixture::with_routes("route-inotify", &[DROPBOX], &[]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox");
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK).unwrap();
    inotify::add_watch(&fd, f.m("home/a/Dropbox"), inotify::WatchFlags::CREATE | inotify::WatchFlags::CLOSE_WRITE)
        .unwrap();
    // Another process (the tenant's shell) writes through the mount.
    f.sh_ok(1000, 1000, "echo hello > home/a/Dropbox/new");
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut reader = inotify::Reader::new(&fd, &mut buf);
    let mut seen = Vec::new();
    while let Ok(ev) = reader.next() {
        seen.push((ev.file_name().map(|n| n.to_string_lossy().into_owned()), ev.events()));
    }
    assert!(
        seen.iter().any(|(n, e)| n.as_deref() == Some("new") && e.contains(inotify::ReadFlags::CREATE)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(_, e)| e.contains(inotify::ReadFlags::CLOSE_WRITE)), "{seen:?}");
}

#[test]
fn bad_routes_are_refused_and_nothing_is_mounted() {
    let f = Fixture::new("route-bad");
    let other = common::Scratch::new("route-bad-other");
    let tmpfs = f.scratch.dir.join("tmpfs");
    std::fs::create_dir_all(&tmpfs).unwrap();
    run_ok(Command::new("mount").args(["-t", "tmpfs", "none"]).arg(&tmpfs));
    let mnt2 = f.scratch.dir.join("mnt2");
    std::fs::create_dir_all(&mnt2).unwrap();
    let ob = other.backing.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("{DROPBOX}={}/missing", ob), "does not exist"),
        (format!("{DROPBOX}={}", tmpfs.display()), "not ext4"),
        (format!("{DROPBOX}={}", f.served.display()), "same as, inside, or around"),
        (format!("{DROPBOX}={}/sub", f.served.display()), "same as, inside, or around"),
        (format!("={ob}"), "empty"),
        (format!("/home/../x={ob}"), "'..'"),
        (format!("/home/*={ob}"), "last component"),
        (ob.clone(), "PATTERN=DIR"),
    ];
    std::fs::create_dir_all(f.served.join("sub")).unwrap();
    for (route, want) in &cases {
        let out = run(Command::new(BIN)
            .args(["mount", "--backing"])
            .arg(&f.served)
            .arg("--state-dir")
            .arg(f.scratch.dir.join("state2"))
            .args(["--route", route])
            .arg(&mnt2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--route {route}: {err}");
        assert!(err.contains(want), "--route {route}: want {want:?} in: {err}");
        assert!(common::mounted_at(&mnt2).is_none());
    }
    // Two overlapping patterns.
    let third = common::Scratch::new("route-bad-third");
    let out = run(Command::new(BIN)
        .args(["mount", "--backing"])
        .arg(&f.served)
        .arg("--state-dir")
        .arg(f.scratch.dir.join("state2"))
        .args([
            "--route",
            &format!("{DROPBOX}={ob}"),
            "--route",
            &format!("/home/a/Dropbox={}", third.backing.display()),
        ])
        .arg(&mnt2));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlaps"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = run(Command::new("umount").arg(&tmpfs));
    assert!(!f.scratch.dir.join("state2").exists(), "a refused start created the state dir");
}
