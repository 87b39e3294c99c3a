//! copy_file_range between files of a routed Dropbox runs on that backing's own pool, like
//! every other request of its nodes (counted in `quotafs status` under the routed backing),
//! and copies the bytes.

mod common;

use std::process::Command;

use common::{BIN, Fixture, run_ok};

const COPIES: u64 = 200;

fn routed_requests(f: &Fixture) -> u64 {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("status --json");
    v["backings"][1]["requests"].as_u64().unwrap_or_else(|| panic!("no routed backing in {out}"))
}

#[test]
fn copy_file_range_in_a_dropbox_runs_on_its_pool() {
    let f = Fixture::with_routes("route-copy", &["/home/*/Dropbox"], &[]);
    f.home("home", 0, 0);
    f.home("home/u", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/u/Dropbox && head -c 819200 /dev/urandom > home/u/Dropbox/src");
    let before = routed_requests(&f);
    let script = format!(
        "import os\ns = os.open('home/u/Dropbox/src', os.O_RDONLY)\nd = os.open('home/u/Dropbox/dst', os.O_WRONLY | os.O_CREAT, 0o644)\n\
         for i in range({COPIES}):\n    assert os.copy_file_range(s, d, 4096, i * 4096, i * 4096) == 4096\n"
    );
    f.sh_ok(1000, 1000, &format!("/usr/bin/python3 -c \"{script}\""));
    let delta = routed_requests(&f) - before;
    assert!(delta >= COPIES, "{delta} requests counted on the routed backing's pool for {COPIES} copies");
    assert_eq!(std::fs::read(f.m("home/u/Dropbox/dst")).unwrap(), std::fs::read(f.m("home/u/Dropbox/src")).unwrap());
}
