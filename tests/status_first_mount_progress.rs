//! While the first mount counts and tags a big tree (before the control socket is up),
//! `quotafs status --json` says so and how far the count is, from the progress file the
//! daemon keeps in the state dir; once the daemon serves, the file is gone.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Fixture, assert_exact, mounted_at, run, run_ok};

#[test]
fn status_shows_the_first_mount_count_growing() {
    let mut f = Fixture::new("first-count-progress");
    f.unmount();
    // 50,000 files in 1,000 directories, made on the backing behind quotafs's back; then a
    // state dir that has never counted them: the next mount is a first mount.
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import os, sys\n\
         root = sys.argv[1]\n\
         for d in range(1000):\n\
         \x20   p = os.path.join(root, 'tree', 'd%d' % d)\n\
         \x20   os.makedirs(p)\n\
         \x20   for i in range(50):\n\
         \x20       open(os.path.join(p, 'f%d' % i), 'w').close()\n\
         \x20   os.chown(p, 1001, 1001)\n",
            )
            .arg(f.backing()),
    );
    std::fs::remove_dir_all(&f.state).unwrap();
    // Each directory takes 30 ms to list: the count lasts several seconds.
    f.start_nowait_with_env(&[], &[("QUOTAFS_FAILPOINT_SCAN_DIR_PAUSE_MS", "30")]);

    let status = |f: &Fixture| run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counts: Vec<u64> = Vec::new();
    let mut plain_seen = false;
    while mounted_at(&f.mnt).as_deref() != Some("fuse.quotafs") {
        std::thread::sleep(Duration::from_millis(200));
        assert!(Instant::now() < deadline, "quotafs did not mount in time:\n{}", f.log_text());
        let out = status(&f);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(s) = v.get("starting")
        {
            // Before the count: opening the store, reading the journals.
            if s["phase"] == "recovering the ledger" && counts.is_empty() {
                continue;
            }
            assert_eq!(s["phase"], "first-mount count", "{v}");
            let n = s["inodes"].as_u64().unwrap_or_default();
            assert!(n <= 51_002, "more inodes than the tree holds: {v}");
            if counts.last() != Some(&n) {
                counts.push(n);
            }
            // Without --json: an error (it does not serve yet) that says how far it is.
            if !plain_seen {
                let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("status"));
                let err = String::from_utf8_lossy(&out.stderr);
                if mounted_at(&f.mnt).is_none() && !err.is_empty() {
                    assert_eq!(out.status.code(), Some(1), "{out:?}");
                    assert!(err.contains("is starting (first-mount count: ") && err.contains("inodes so far"), "{err}");
                    plain_seen = true;
                }
            }
        }
    }
    // Seen mid-way, at least twice, growing.
    assert!(counts.len() >= 2 && counts.windows(2).all(|w| w[0] < w[1]), "counts seen: {counts:?}\n{}", f.log_text());
    assert!(counts.iter().any(|n| *n > 0 && *n < 50_000), "counts seen: {counts:?}");
    assert!(plain_seen, "plain `status` was not seen during the count");
    // Serving now: no progress file, and status answers from the daemon.
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let out = status(&f);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v.get("epoch").is_some() {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "status does not answer: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(v.get("starting").is_none(), "{v}");
    assert_eq!(v["in_progress"], serde_json::json!([]), "{v}");
    assert!(!f.state.join("starting.json").exists());
    assert_eq!(v["last_recovery"]["initial_scan"], true, "{v}");
    assert_exact(&f.state, f.backing(), "after the first mount's count");
}
