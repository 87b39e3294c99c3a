//! A damaged state dir: the activity log cut at arbitrary offsets (a torn tail) mounts and
//! says what it dropped; a log damaged in the middle, or a corrupt store, refuses the mount
//! with the file, the offset and the command that repairs it, touching nothing on the backing;
//! `quotafs check --repair` then brings ledger == recount.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Fixture, assert_exact, mounted_at, run, run_ok};

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

fn the_log(state: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("an activity log")
}

fn listing(dir: &Path) -> String {
    run_ok(Command::new("sh").arg("-c").arg(format!("cd {} && find . -printf '%p %s %i %m\\n' | sort", dir.display())))
}

#[test]
fn torn_corrupt_and_repaired() {
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args("damaged", &args);
    let st = f.state.to_str().unwrap().to_string();
    let b = f.backing().to_str().unwrap().to_string();
    f.root("mkdir -p a b && for i in $(seq 30); do head -c $((i * 3000)) /dev/zero > a/f$i; done");
    run_ok(Command::new(BIN).args(["--state-dir", &st, "checkpoint"]));
    // Changes after the checkpoint: records in the log. Records go to the backing's journal
    // directory when they can; a fault there sends them all to the log, which this test damages.
    f.kill9();
    let fault = f.scratch.dir.join("journal-fault");
    std::fs::write(&fault, "EIO").unwrap();
    f.start_with_env(&args, &[("QUOTAFS_FAILPOINT_JOURNAL_RECORD_FILE", fault.to_str().unwrap())]);
    f.root(
        "for i in $(seq 10); do rm a/f$i; head -c 9000 /dev/zero >> a/f$((i+10)); mkdir b/d$i; echo x > b/d$i/g; done",
    );
    f.kill9();
    let saved = f.scratch.dir.join("state-saved");
    copy_dir(&f.state, &saved);
    let log_len = std::fs::metadata(the_log(&f.state)).unwrap().len();
    assert!(log_len > 100, "the log has records ({log_len} bytes)");

    // Torn tails: every cut mounts, reports what was cut, and check --repair makes it exact.
    for cut in [21, log_len / 3, log_len / 2, log_len - 5] {
        copy_dir(&saved, &f.state);
        let log = the_log(&f.state);
        std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(cut).unwrap();
        f.start(&args);
        let status: serde_json::Value =
            serde_json::from_str(&run_ok(Command::new(BIN).args(["--state-dir", &st, "status", "--json"]))).unwrap();
        let torn = status["last_recovery"]["torn_bytes"].as_u64().unwrap();
        assert!(torn > 0 || cut == 21, "cut at {cut}: torn bytes reported ({status})");
        assert!(f.log_text().contains("cut a torn tail") || torn == 0);
        run_ok(Command::new(BIN).args(["--state-dir", &st, "check", "--repair"]));
        assert_exact(&f.state, f.backing(), &format!("log cut at {cut}, after check --repair"));
        f.kill9();
    }

    // A bit flipped early in the log, with valid records after it: the mount is refused.
    copy_dir(&saved, &f.state);
    let log = the_log(&f.state);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[40] ^= 0x10;
    std::fs::write(&log, &bytes).unwrap();
    let before = listing(f.backing());
    let out = run(Command::new(BIN).args(["mount", "--backing", &b, "--state-dir", &st]).arg(&f.mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(log.to_str().unwrap()) && err.contains("offset") && err.contains("check --repair"), "{err}");
    assert!(mounted_at(&f.mnt).is_none());
    assert_eq!(listing(f.backing()), before, "nothing on the backing was touched");
    let repair = run(Command::new(BIN).args(["--state-dir", &st, "check", "--repair", "--backing", &b]));
    assert!(repair.status.success(), "{}", String::from_utf8_lossy(&repair.stderr));
    f.start(&args);
    assert_exact(&f.state, f.backing(), "after repairing a damaged log");
    f.kill9();

    // A corrupt store: refused, then rebuilt (the bad file is kept aside).
    let store = f.state.join("ledger.redb");
    let mut db = std::fs::read(&store).unwrap();
    let len = db.len();
    for byte in db.iter_mut().take(len).skip(len / 4).step_by(7) {
        *byte ^= 0xA5;
    }
    std::fs::write(&store, &db).unwrap();
    let out = run(Command::new(BIN).args(["mount", "--backing", &b, "--state-dir", &st]).arg(&f.mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "a corrupt store must refuse the mount");
    assert!(err.contains("ledger.redb") && err.contains("check --repair"), "{err}");
    assert!(mounted_at(&f.mnt).is_none());
    let repair = run(Command::new(BIN).args(["--state-dir", &st, "check", "--repair", "--backing", &b]));
    assert!(repair.status.success(), "{}", String::from_utf8_lossy(&repair.stderr));
    assert!(
        std::fs::read_dir(&f.state).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("corrupt")),
        "the damaged store is kept aside"
    );
    f.start(&args);
    assert_exact(&f.state, f.backing(), "after rebuilding a corrupt store");
}
