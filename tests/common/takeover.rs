//! Helpers of the `--supervise` tests (tests/supervise*.rs): the serving process's pid, the
//! next one after a kill, a kill -9. Included by `#[path]` beside `mod common`.
// Each test file uses some of these.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use super::common::{self, Fixture};

/// The pid `status --json` reports: the process serving requests now. Not one still starting
/// (recovering), which `status` names too (`"running": false`) but which answers nothing yet.
pub fn serving_pid(f: &Fixture) -> Option<u32> {
    let out = Command::new(common::BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if v["running"] == serde_json::Value::Bool(false) {
        return None;
    }
    v["pid"].as_u64().map(|p| p as u32)
}

/// The pid of a serving process other than `old`, once one answers past INIT (within 30 s).
pub fn next_pid(f: &Fixture, old: Option<u32>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = serving_pid(f)
            && Some(p) != old
            && f.state.join("fuse-init").exists()
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no serving process took over:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kill9(pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
}

/// As uid 1002, makes files `<dir>/b<n>-<batch>-<i>` holding `content` (batches of 8, for up
/// to 2 s) until one takes ext4 inode number `old` (a number just freed); its path beneath the
/// mount, or None if none did. ext4 gives a new file the lowest free number of its group, and
/// a small file's number is free once the daemon lets go of the removed file, at its next
/// FORGET or 200 ms tick (docs/design.md §9.7): batches are made until then.
pub fn file_reusing(f: &Fixture, old: u64, dir: &str, n: usize, content: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    for batch in 0.. {
        f.sh_ok(
            1002,
            1002,
            &format!(
                "cd {} && for i in 0 1 2 3 4 5 6 7; do echo {content} > b{n}-{batch}-$i; done",
                f.m(dir).display()
            ),
        );
        for i in 0..8 {
            let name = format!("{dir}/b{n}-{batch}-{i}");
            if common::ino(&f.b(&name)) == old {
                return Some(name);
            }
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
