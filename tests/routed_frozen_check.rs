//! `quotafs check` while a Dropbox's disk does not answer. A check counts every backing with
//! usage changes held off, so it must wait for the operations in flight; one stuck in a frozen
//! routed backing never ends. The check must then give up in bounded time and say why, and the
//! main tree must keep working while it tries (a check that held the epoch lock's queue would
//! stall every tenant behind it). Once the disk thaws, the same check succeeds and is exact.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::guards::{Frozen, Kids};
use common::{BIN, Fixture, assert_exact_all};

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn check_with_a_frozen_dropbox_gives_up_and_leaves_the_mount_serving() {
    let f = Fixture::with_routes("route-frozen-check", &["/home/*/Dropbox"], &[]);
    f.home("home", 0, 0);
    f.home("home/alice", 1001, 1001);
    f.home("home/bob", 1002, 1002);
    f.sh_ok(1001, 1001, "mkdir home/alice/Dropbox");
    let frozen = Frozen::freeze(f.routed[0].backing.clone());

    // A writer blocked in the frozen Dropbox: an operation that stays in flight.
    let mut kids = Kids(Vec::new());
    kids.0.push(
        Command::new("setpriv")
            .args(["--reuid=1001", "--regid=1001", "--clear-groups", "sh", "-c"])
            .arg(format!("head -c 65536 /dev/urandom > {}/home/alice/Dropbox/stuck", f.mnt.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the writer"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(kids.0[0].try_wait().unwrap().is_none(), "the writer must be blocked for the test to mean anything");

    // The operator's check, in the background.
    let check = Command::new(BIN)
        .arg("--state-dir")
        .arg(&f.state)
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn check");
    kids.0.push(check);
    std::thread::sleep(Duration::from_millis(300));

    // Bob's work in the main tree completes while the check tries.
    let mut bob = Command::new("setpriv")
        .args(["--reuid=1002", "--regid=1002", "--clear-groups", "sh", "-c"])
        .arg(format!("cd {}/home/bob && for i in $(seq 1 100); do echo $i > f$i; done && rm f*", f.mnt.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn bob");
    let bob_done = wait_for(&mut bob, Duration::from_secs(60));
    if bob_done.is_none() {
        drop(frozen);
        let _ = bob.wait();
        panic!("main-tree work stalled behind `quotafs check` while the Dropbox was frozen:\n{}", f.log_text());
    }
    assert!(bob_done.unwrap().success(), "bob's work failed during the check");

    // The check gives up, saying why, instead of waiting for the disk forever.
    let status = wait_for(&mut kids.0[1], Duration::from_secs(60));
    if status.is_none() {
        drop(frozen);
        panic!("`quotafs check` still waiting 60 s after a Dropbox froze:\n{}", f.log_text());
    }
    let check = kids.0.remove(1);
    let out = check.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a check that could not count must not report success:\n{text}");
    assert!(text.contains("in flight"), "the check must say what it waited for:\n{text}");

    // After the thaw the writer ends, and the same check succeeds and agrees with a recount.
    drop(frozen);
    let writer = wait_for(&mut kids.0[0], Duration::from_secs(60));
    assert!(writer.is_some_and(|s| s.success()), "the Dropbox write failed after the thaw");
    f.quotafs(&["check"]);
    assert_exact_all(&f.state, &f.all_backings(), "after the thaw");
}
