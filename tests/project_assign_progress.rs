//! `quotafs project assign` of a big tree shows on a terminal how far the re-tagging is (read
//! from the daemon's `status`, which lists the walk under `in_progress`); in a pipe only its
//! summary.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, run};

#[test]
fn project_assign_shows_its_retag_count_on_a_terminal() {
    let mut f = Fixture::new("assign-progress");
    f.home("t", 1001, 1001);
    f.home("u", 1001, 1001);
    let make = "for d in $(seq 200); do mkdir d$d && (cd d$d && touch $(seq 10)); done";
    f.sh_ok(1001, 1001, &format!("cd t && {make} && cd ../u && {make}"));
    // Each directory waits 30 ms before it is listed: the walk lasts a few refreshes.
    f.unmount();
    f.start_with_env(&[], &[("QUOTAFS_FAILPOINT_ASSIGN_LISTING_PAUSE_MS", "30")]);

    let cmd = format!("{BIN} --state-dir {} project assign {} --id 7", f.state.display(), f.m("t").display());
    let out = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{text}");
    assert!(text.contains("project assign: ") && text.contains("re-tagged"), "no progress line: {text:?}");
    assert!(text.contains("project 7: 2201 inodes moved"), "{text:?}");

    let out = run(Command::new(BIN)
        .arg("--state-dir")
        .arg(&f.state)
        .args(["project", "assign"])
        .arg(f.m("u"))
        .args(["--id", "8"]));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("project 8: 2201 inodes moved") && !stdout.contains('\r'), "{stdout}");
    assert!(!stderr.contains("re-tagged") && !stderr.contains('\r'), "progress off a terminal: {stderr}");
    assert_exact(&f.state, f.backing(), "after both assignments");
}
