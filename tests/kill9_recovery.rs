//! kill -9 of the daemon at random moments of a multi-tenant workload, over many rounds
//! (checkpoints every 0.3 s, so some kills land inside a checkpoint): after each restart the
//! ledger equals an independent recount exactly. Also kill -9 during `project assign` and
//! during recovery itself. Replay with QUOTAFS_SEED.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Fixture, Rng, assert_exact, run_ok, seed};

/// One tenant's endless workload: writes, appends, truncates, creates, deletes, renames within
/// and across projects, hard links, directories.
fn tenant(f: &Fixture, uid: u32, home: &str) -> Child {
    let script = format!(
        "i=0; while true; do i=$((i+1)); \
           head -c $((i * 7919 % 300000)) /dev/zero > {home}/f$i 2>/dev/null; \
           echo line$i >> {home}/log 2>/dev/null; \
           truncate -s $((i * 104729 % 2000000)) {home}/f$((i-3)) 2>/dev/null; \
           mkdir -p {home}/d$((i % 7))/e 2>/dev/null; mv {home}/f$((i-1)) {home}/d$((i % 7))/e/ 2>/dev/null; \
           ln {home}/f$i {home}/hl$i 2>/dev/null; rm -f {home}/f$((i-5)) {home}/hl$((i-2)) 2>/dev/null; \
           mv {home}/f$((i-2)) shared/moved-{uid}-$i 2>/dev/null; \
           rm -rf {home}/d$(((i + 3) % 7)) 2>/dev/null; \
         done"
    );
    Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "sh".into(),
            "-c".into(),
            script,
        ])
        .current_dir(&f.mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill9_during_a_workload_recovers_exactly() {
    let seed = seed();
    println!("QUOTAFS_SEED={seed}");
    let mut rng = Rng(seed);
    let args = ["--checkpoint-interval", "0.3"];
    let mut f = Fixture::with_args("kill9", &args);
    let st = f.state.to_str().unwrap().to_string();
    f.root("mkdir shared && chmod 1777 shared");
    for uid in 1000..1004 {
        f.home(&format!("h{uid}"), uid, uid);
    }
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("shared")).args(["--id", "5"]));
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("h1000")).args(["--id", "6"]));
    for round in 0..10 {
        let mut tenants: Vec<Child> = (1000..1004).map(|uid| tenant(&f, uid, &format!("h{uid}"))).collect();
        std::thread::sleep(Duration::from_millis(200 + rng.below(1200)));
        f.kill9();
        for t in &mut tenants {
            let _ = t.kill();
            let _ = t.wait();
        }
        f.start(&args);
        assert_exact(&f.state, f.backing(), &format!("round {round} after kill -9 (seed {seed})"));
    }
    assert!(f.log_text().contains("ledger recovered"), "recovery ran");
}

#[test]
fn kill9_during_project_assign_and_during_recovery() {
    let mut f = Fixture::with_args("kill9b", &["--checkpoint-interval", "3600"]);
    let st = f.state.to_str().unwrap().to_string();
    // A tree made through the mount in this epoch: ~8,000 inodes to assign, and to recover.
    f.root("mkdir -p big && cd big && for d in $(seq 40); do mkdir d$d; for i in $(seq 200); do echo $i > d$d/f$i; done; done");
    let mut assign = Command::new(BIN)
        .args(["--state-dir", &st, "project", "assign"])
        .arg(f.m("big"))
        .args(["--id", "9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    f.kill9();
    let _ = assign.wait();
    // Half-assigned: the ledger still matches the tags exactly...
    f.start(&["--checkpoint-interval", "3600"]);
    assert_exact(&f.state, f.backing(), "after kill -9 during project assign");
    // ...and assigning again finishes the job.
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("big")).args(["--id", "9"]));
    assert_exact(&f.state, f.backing(), "after re-running project assign");
    let report = common::report(&f.state);
    assert!(report[&("project".to_string(), 9)].1 >= 8000, "{report:?}");

    // New files in this epoch (no checkpoint): recovery must list them. Kill it part-way.
    f.root("mkdir more && cd more && for d in $(seq 20); do mkdir d$d; for i in $(seq 300); do echo $i > d$d/g$i; done; done");
    f.kill9();
    f.start_nowait(&[]);
    std::thread::sleep(Duration::from_millis(30));
    f.kill9();
    f.start(&[]);
    assert_exact(&f.state, f.backing(), "after kill -9 during recovery");
}
