//! A Dropbox whose disk stops answering stalls only the Dropbox. With the routed backing
//! frozen (fsfreeze: every write to it blocks, as on a dead or saturated disk) and 40 of a
//! tenant's writers blocked in it, another tenant's creates, listings, renames and removals in
//! the main tree still complete, on whichever transport the suite runs (`QUOTAFS_TRANSPORT`):
//! over /dev/fuse the readers hand routed requests to the Dropbox's pool and go on; over
//! io_uring the routed requests hold ring entries, not ring threads (docs/design.md §17.2).
//! Checkpoints run every second meanwhile, so a checkpoint that waited for the frozen disk
//! while holding up the main tree would show too. Afterwards the Dropbox thaws, every blocked
//! write lands, and the ledger is exact on both backings.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::guards::{Frozen, Kids};
use common::{Fixture, assert_exact_all};

#[test]
fn a_frozen_dropbox_stalls_only_the_dropbox() {
    let f = Fixture::with_routes("route-frozen", &["/home/*/Dropbox"], &["--checkpoint-interval", "1"]);
    f.home("home", 0, 0);
    f.home("home/alice", 1001, 1001);
    f.home("home/bob", 1002, 1002);
    f.sh_ok(1001, 1001, "mkdir home/alice/Dropbox");
    let frozen = Frozen::freeze(f.routed[0].backing.clone());

    // 40 writers, each blocked in a write of its own file in the frozen Dropbox.
    let mut writers = Kids(Vec::new());
    for i in 0..40 {
        let child = Command::new("setpriv")
            .args(["--reuid=1001", "--regid=1001", "--clear-groups", "sh", "-c"])
            .arg(format!("head -c 65536 /dev/urandom > {}/home/alice/Dropbox/w{i} && sync", f.mnt.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn a writer");
        writers.0.push(child);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        writers.0.iter_mut().all(|c| c.try_wait().unwrap().is_none()),
        "the writers must be blocked by the frozen Dropbox for the test to mean anything"
    );

    // Meanwhile, bob works in the main tree. A stall is a failure: past the deadline the
    // Dropbox is thawed (so that everything can end) and the test fails.
    let started = Instant::now();
    let mut bob = Command::new("setpriv")
        .args(["--reuid=1002", "--regid=1002", "--clear-groups", "sh", "-c"])
        .arg(format!(
            "cd {}/home/bob && for i in $(seq 1 300); do echo $i > f$i; done && ls | wc -l | grep -qx 300 \
             && mkdir d && for i in $(seq 1 100); do mv f$i d/; done && rm -r d f1*",
            f.mnt.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn bob's work");
    let status = loop {
        if let Some(status) = bob.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            drop(frozen);
            let _ = bob.wait();
            panic!("main-tree work stalled for 60 s while the Dropbox was frozen:\n{}", f.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "main-tree work failed while the Dropbox was frozen ({:?})", started.elapsed());
    assert!(writers.0.iter_mut().all(|c| c.try_wait().unwrap().is_none()), "the Dropbox writers are still blocked");

    drop(frozen);
    for c in &mut writers.0 {
        let status = c.wait().expect("wait for a writer");
        assert!(status.success(), "a Dropbox write failed after the thaw");
    }
    for i in 0..40 {
        assert_eq!(std::fs::metadata(f.m(&format!("home/alice/Dropbox/w{i}"))).unwrap().len(), 65536);
    }
    assert_exact_all(&f.state, &f.all_backings(), "after the thaw");
}
