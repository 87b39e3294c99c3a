//! Recovery re-examines only what the activity log names: with 10,000 and with 200,000 files
//! on the volume and the same work in flight, it replays the same records and lists the same
//! directories, and its time does not grow with the volume (within 2x plus a small allowance
//! for this machine's timer noise; the figures are in bench/ledger).

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, run_ok};

/// Fills the backing directly (before the first mount counts it), runs a fixed workload
/// through the mount, kills the daemon and returns (recovery ms, records, listed dirs).
fn recovery_after_crash(files: usize) -> (u64, u64, u64) {
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args(&format!("scale{files}"), &args);
    f.kill9();
    for d in 0..files / 1000 {
        let dir = f.b(&format!("bulk/d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&f.state);
    f.start(&args); // first mount: counts and tags everything
    let st = f.state.to_str().unwrap().to_string();
    run_ok(Command::new(BIN).args(["--state-dir", &st, "checkpoint"]));
    // The same in-flight work whatever the volume: 200 new files in 5 new directories,
    // 50 existing files grown, 20 removed.
    f.root(
        "mkdir work && for d in 1 2 3 4 5; do mkdir work/d$d; for i in $(seq 40); do echo $i > work/d$d/n$i; done; done; \
         for i in $(seq 50); do head -c 8192 /dev/zero >> bulk/d0/f$i; done; for i in $(seq 100 119); do rm bulk/d1/f$i; done",
    );
    f.kill9();
    f.start(&args);
    let status: serde_json::Value =
        serde_json::from_str(&run_ok(Command::new(BIN).args(["--state-dir", &st, "status", "--json"]))).unwrap();
    let r = &status["last_recovery"];
    assert_exact(&f.state, f.backing(), &format!("after recovery with {files} files"));
    (r["millis"].as_u64().unwrap(), r["records"].as_u64().unwrap(), r["listed_dirs"].as_u64().unwrap())
}

#[test]
fn recovery_time_does_not_grow_with_the_volume() {
    let small = recovery_after_crash(10_000);
    let large = recovery_after_crash(200_000);
    println!("recovery 10k files: {small:?}; 200k files: {large:?} (ms, records, listed dirs)");
    assert_eq!((small.1, small.2), (large.1, large.2), "the same records replayed and directories listed");
    assert!(large.0 <= 2 * small.0 + 50, "recovery took {} ms with 200k files vs {} ms with 10k", large.0, small.0);
}
