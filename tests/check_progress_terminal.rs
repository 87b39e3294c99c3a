//! `quotafs check` shows its scan's progress on a terminal (a line on stderr, rewritten while
//! the scan runs), online (read from the daemon's status) and offline (its own scan); when
//! stderr is not a terminal it prints only its summary, so logs and CI stay clean.

mod common;

use std::process::Command;

use common::{BIN, Fixture, run};

/// Runs `cmd` (a shell command line) on a pseudo-terminal; returns all it wrote there.
fn on_a_tty(cmd: &str) -> String {
    let out = run(Command::new("script").args(["-qec", cmd, "/dev/null"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}: {out:?}\n{text}");
    text
}

/// Asserts that `out` (a run with stdout and stderr as pipes) holds the summary only.
fn summary_only(out: &std::process::Output) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("scanned") && stdout.contains("ledger matches the backing exactly"), "{stdout}");
    assert!(!stdout.contains('\r') && !stderr.contains('\r'), "a refreshing line off a terminal: {out:?}");
    assert!(!stdout.contains("dirs queued") && !stderr.contains("dirs queued"), "progress off a terminal: {out:?}");
}

/// Asserts that a run on a terminal showed the progress line and the summary.
fn showed_progress(text: &str) {
    assert!(text.contains("\rcheck: ") || text.contains("\r\x1b[Kcheck: "), "no progress line: {text:?}");
    assert!(text.contains(" inodes") && text.contains("dirs queued"), "{text:?}");
    assert!(text.contains("ledger matches the backing exactly"), "{text:?}");
}

#[test]
fn check_shows_progress_on_a_terminal_and_only_its_summary_elsewhere() {
    let mut f = Fixture::new("check-progress");
    f.home("t", 1001, 1001);
    f.sh_ok(1001, 1001, "cd t && for d in $(seq 300); do mkdir d$d && (cd d$d && touch $(seq 10)); done");
    // Each directory takes 30 ms to list: the scan lasts a few refreshes.
    let pause = ("QUOTAFS_FAILPOINT_SCAN_DIR_PAUSE_MS", "30");
    f.unmount();
    f.start_with_env(&[], &[pause]);
    let state = f.state.display().to_string();

    // Online: the daemon scans; the command reads its progress from `status`.
    showed_progress(&on_a_tty(&format!("{BIN} --state-dir {state} check")));
    summary_only(&run(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("check")));

    // Offline: the command scans itself.
    f.unmount();
    let backing = f.backing().display().to_string();
    let offline = format!("{BIN} --state-dir {state} check --backing {backing}");
    showed_progress(&on_a_tty(&format!("env {}={} {offline}", pause.0, pause.1)));
    summary_only(&run(Command::new(BIN)
        .arg("--state-dir")
        .arg(&f.state)
        .args(["check", "--backing"])
        .arg(f.backing())
        .env(pause.0, pause.1)));
}
