//! `quotafs status` while the daemon holds the state dir but does not answer yet (recovering
//! at start, or stopping) says so, instead of a store error that reads as damage and points to
//! `check --repair`.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Fixture, run};

#[test]
fn status_says_the_daemon_is_starting_not_that_the_ledger_is_damaged() {
    let mut f = Fixture::new("status-starting");
    f.unmount();
    // A holder of the state dir's lock with no socket: what a daemon is while it recovers.
    // `-o`: only flock itself holds the lock, so killing it frees the state dir.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(f.state.join("lock"))
        .args(["sh", "-c", "echo locked; exec sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("status"));
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("starting") && !err.contains("--repair"), "{err}");
    // Free again: status reads the last checkpoint.
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("status"));
    assert!(out.status.success(), "{out:?}");
}
