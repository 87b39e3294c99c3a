//! A failed write of the activity log poisons the ledger: every later usage-changing operation
//! is refused with EIO (never retried and pretended), reads keep working, and the reason is in
//! the log and in `quotafs status`.

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
    let mut daemon = Command::new(BIN)
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
}
