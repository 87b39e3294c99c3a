//! `quotafs restart` refuses, and the running process serves on, when the binary to start
//! cannot read the state dir (issue #19). The state dir is given what a newer quotafs would
//! leave there: a store whose snapshot says format 2 (written here with redb, as a later
//! version's checkpoint would write it; the running daemon keeps its open store, renamed
//! aside). `restart` exits non-zero naming the format, the old process keeps serving and the
//! tenant's work goes on; with the store put back, the same `restart` goes through.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, mounted_at};
use takeover::{next_pid, serving_pid};

const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

fn restart(f: &Fixture) -> std::process::Output {
    Command::new(BIN).arg("--state-dir").arg(&f.state).arg("restart").output().unwrap()
}

#[test]
fn restart_refuses_a_state_dir_of_a_newer_format_and_the_old_process_serves_on() {
    let mut f = Fixture::with_args("restart-refused", &["--supervise", "--transport", "classic"]);
    let home = f.home("alice", 1001, 1001);
    let pid = next_pid(&f, None);
    f.sh_ok(1001, 1001, &format!("head -c 100000 /dev/urandom > {}/before", home.display()));
    f.quotafs(&["checkpoint"]);

    // A newer quotafs's store: the snapshot as it stands, its format bumped to 2.
    let store = f.state.join("ledger.redb");
    let newer = f.state.join("ledger.redb.newer");
    let kept = f.state.join("ledger.redb.kept");
    std::fs::copy(&store, &newer).unwrap();
    {
        let db = redb::Database::create(&newer).expect("open the copy");
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 2).unwrap();
        txn.commit().unwrap();
    }
    std::fs::rename(&store, &kept).unwrap();
    std::fs::rename(&newer, &store).unwrap();

    let out = restart(&f);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restart must refuse: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        said.contains("format") && said.contains("keeps serving"),
        "the refusal says why and that nothing changed: {said}"
    );
    eprintln!("refused: {}", said.trim());
    assert_eq!(serving_pid(&f), Some(pid), "the old process serves on");
    assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"));
    assert!(!f.log_text().contains("handing the connection over"), "no handover was started:\n{}", f.log_text());
    f.sh_ok(1001, 1001, &format!("echo after > {0}/after && cat {0}/before > /dev/null", home.display()));

    // Its own store back, the same binary takes over.
    std::fs::rename(&kept, &store).unwrap();
    let out = restart(&f);
    assert!(
        out.status.success(),
        "restart with a readable store: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.log_text()
    );
    assert_ne!(serving_pid(&f), Some(pid), "another process serves");
    f.sh_ok(1001, 1001, &format!("cat {0}/after {0}/before > /dev/null && rm {0}/before", home.display()));
    assert_exact(&f.state, f.backing(), "after the refused and the accepted restart");
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
}
