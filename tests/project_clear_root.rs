//! `project clear` (and a re-assignment with `--absorb`) forgets the tree's old project root,
//! so the directory's owner stops seeing that project in `quota show`.

mod common;

use std::process::Command;

use common::{BIN, Fixture, run_ok};

fn projects_shown(f: &Fixture, uid: u32) -> Vec<u64> {
    let st = f.state.display();
    let out = f.sh_ok(uid, uid, &format!("{BIN} --state-dir {st} quota show --json"));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter().filter(|r| r["kind"] == "project").map(|r| r["id"].as_u64().unwrap()).collect()
}

#[test]
fn a_cleared_or_reassigned_tree_leaves_no_stale_project_root() {
    let f = Fixture::new("project-clear-root");
    f.home("site", 1001, 1001);
    let q = |args: &[&str]| run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args));
    q(&["project", "assign", f.m("site").to_str().unwrap(), "--id", "5"]);
    // The owner cache of `quota show` lives a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(projects_shown(&f, 1001), vec![5]);
    q(&["project", "assign", f.m("site").to_str().unwrap(), "--id", "6", "--absorb"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(projects_shown(&f, 1001), vec![6], "re-assigned: project 5 no longer tops the tree");
    q(&["project", "clear", f.m("site").to_str().unwrap(), "--absorb"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(projects_shown(&f, 1001), Vec::<u64>::new(), "cleared: no project tops the tree");
}
