//! A failed write of the activity log poisons the ledger: every later usage-changing operation
//! is refused with EIO (never retried and pretended), reads keep working, and the reason is in
//! the log and in `quotafs status`. Records go to the log only when the backing's journal
//! directory cannot take them (docs/design.md §16): these tests fail that first, with the
//! `JOURNAL_RECORD` fault, so that every record meets the log.

mod common;

use std::process::Command;

use common::{BIN, Scratch, mounted_at, run, run_ok};

#[test]
fn full_state_dir_poisons_and_refuses_changes() {
    // The backing, and a separate tiny file system for the state dir that we then fill up.
    let s = Scratch::new("poison");
    let state_img = s.dir.join("state.img");
    let state = s.dir.join("state");
    std::fs::create_dir(&state).unwrap();
    run_ok(Command::new("truncate").arg("-s").arg("8M").arg(&state_img));
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&state_img));
    run_ok(Command::new("mount").arg("-o").arg("loop").arg(&state_img).arg(&state));
    let mnt = s.dir.join("mnt");
    let log = std::fs::File::create(s.dir.join("daemon.log")).unwrap();
    let journal_fault = s.dir.join("journal-fault");
    std::fs::write(&journal_fault, "ENOSPC").unwrap();
    let mut daemon = Command::new(BIN)
        .env("QUOTAFS_FAILPOINT_JOURNAL_RECORD_FILE", &journal_fault)
        .args(["mount", "--checkpoint-interval", "3600", "--backing"])
        .arg(&s.backing)
        .arg("--state-dir")
        .arg(&state)
        .arg(&mnt)
        .stderr(log)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if mounted_at(&mnt).is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/before"), b"written before the disk filled").unwrap();
    for i in 0..400 {
        std::fs::write(mnt.join(format!("d/f{i}")), b"x").unwrap();
    }
    run_ok(Command::new(BIN).arg("--state-dir").arg(&state).arg("checkpoint"));
    // Fill the state file system; the log's next block then cannot be allocated.
    let _ = run(Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", state.join("filler").display()))
        .args(["bs=4k"]));
    // Each first change to an existing file appends a record: soon one needs a new block.
    let first_eio = (0..400).find(|i| {
        std::fs::write(mnt.join(format!("d/f{i}")), b"changed").err().and_then(|e| e.raw_os_error()) == Some(libc::EIO)
    });
    // After that, every usage change is refused: also a new file (no log record of its own).
    let refused = std::fs::write(mnt.join("d/after"), vec![7u8; 100_000]);
    let refused2 = std::fs::create_dir(mnt.join("d/newdir"));
    let read = std::fs::read(mnt.join("d/before"));
    let status = run(Command::new(BIN).arg("--state-dir").arg(&state).args(["status", "--json"]));
    // Space again: the poison does not lapse with a new epoch's log.
    let _ = std::fs::remove_file(state.join("filler"));
    let checkpoint = run(Command::new(BIN).arg("--state-dir").arg(&state).arg("checkpoint"));
    let still = std::fs::write(mnt.join("d/after2"), b"y");
    let _ = run(Command::new("umount").arg("-l").arg(&mnt));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = run(Command::new("umount").arg("-l").arg(&state));
    let daemon_log = std::fs::read_to_string(s.dir.join("daemon.log")).unwrap_or_default();
    assert!(first_eio.is_some(), "the log filled up and a change was refused:\n{daemon_log}");
    assert_eq!(refused.err().and_then(|e| e.raw_os_error()), Some(libc::EIO), "a create after the failure: EIO");
    assert_eq!(refused2.err().and_then(|e| e.raw_os_error()), Some(libc::EIO), "a mkdir after the failure: EIO");
    assert_eq!(read.unwrap(), b"written before the disk filled", "reads keep working");
    assert!(daemon_log.contains("poisoned"), "the reason is logged:\n{daemon_log}");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("poisoned") && status.contains("No space left"), "{status}");
    assert!(!checkpoint.status.success(), "no checkpoint after the failure: {checkpoint:?}");
    assert_eq!(still.err().and_then(|e| e.raw_os_error()), Some(libc::EIO), "still refused once space is back");
}

/// What a poisoned ledger must keep doing until it is restarted, whatever else happens:
/// refuse every usage change with EIO (an old file's first change and a new file alike),
/// refuse every checkpoint (a checkpoint after the failure would commit a table nobody knows
/// to be durable, and a fresh log writer would lapse the poison), keep serving reads, and say
/// why in `status`. A restart then recovers an exact ledger from what is durable.
fn assert_stays_poisoned(f: &mut common::Fixture, reason: &str) {
    let (uid, gid) = (1001, 1001);
    for round in 0..2 {
        let appended = f.sh_as(uid, gid, &format!("echo more >> home/old{round}"));
        assert!(!appended.status.success(), "round {round}: an old file's change is refused");
        let err = String::from_utf8_lossy(&appended.stderr);
        assert!(err.contains("I/O error") || err.contains("Input/output error"), "EIO: {appended:?}");
        let created = f.sh_as(uid, gid, &format!("echo new > home/new{round}"));
        assert!(!created.status.success(), "round {round}: a new file is refused too");
        assert_eq!(f.sh_ok(uid, gid, "cat home/old9"), "old\n", "reads keep working");
        let cp = run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
        assert!(!cp.status.success(), "round {round}: a checkpoint is refused while poisoned");
        assert!(String::from_utf8_lossy(&cp.stderr).contains("poisoned"), "{cp:?}");
        let status = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]));
        assert!(status.contains("poisoned") && status.contains(reason), "round {round}: {status}");
    }
}

fn old_tree(f: &common::Fixture) {
    f.root("mkdir home && chown 1001:1001 home");
    f.sh_ok(1001, 1001, "for i in 0 1 2 3 4 5 6 7 8 9; do echo old > home/old$i; done");
    // A checkpoint makes them old: their first change now needs a log record.
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
}

fn restart_is_exact(f: &mut common::Fixture) {
    f.unmount();
    f.start(&[]);
    f.sh_ok(1001, 1001, "echo after >> home/old0; echo fresh > home/fresh");
    common::assert_exact(&f.state, f.backing(), "after the restart that ends the poison");
}

#[test]
fn failed_log_fdatasync_poisons_until_restart() {
    let mut f = common::Fixture::new("poison-eio");
    f.unmount();
    let trigger = f.scratch.dir.join("log-sync-fails");
    let trigger_s = trigger.display().to_string();
    let journal_fault = f.scratch.dir.join("journal-fault");
    std::fs::write(&journal_fault, "EIO").unwrap();
    let journal_fault = journal_fault.display().to_string();
    f.start_with_env(
        &[],
        &[("QUOTAFS_FAILPOINT_LOG_SYNC_FILE", &trigger_s), ("QUOTAFS_FAILPOINT_JOURNAL_RECORD_FILE", &journal_fault)],
    );
    old_tree(&f);
    std::fs::write(&trigger, "EIO").unwrap();
    let first = f.sh_as(1001, 1001, "echo more >> home/old5");
    assert!(!first.status.success(), "the change whose record could not be synced is refused");
    // The fault is gone, but what was durable is not known: the ledger stays poisoned.
    std::fs::remove_file(&trigger).unwrap();
    assert_stays_poisoned(&mut f, "Input/output error");
    restart_is_exact(&mut f);
}

#[test]
fn failed_snapshot_commit_poisons_until_restart() {
    let mut f = common::Fixture::new("poison-commit");
    f.unmount();
    let trigger = f.scratch.dir.join("commit-fails");
    let trigger_s = trigger.display().to_string();
    f.start_with_env(&[], &[("QUOTAFS_FAILPOINT_SNAPSHOT_COMMIT_FILE", &trigger_s)]);
    old_tree(&f);
    std::fs::write(&trigger, "ENOSPC").unwrap();
    let cp = run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
    assert!(!cp.status.success(), "the failed commit is reported");
    std::fs::remove_file(&trigger).unwrap();
    assert_stays_poisoned(&mut f, "No space left");
    restart_is_exact(&mut f);
}
