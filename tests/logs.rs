//! Logs fit journald and log shippers: no colour codes unless stderr is a terminal, a
//! QUOTAFS_LOG that does not parse (or names nothing of ours) refuses the start with a message
//! saying what to write instead, and `--log-format json` gives one JSON object per line.

mod common;

use std::process::Command;

use common::{BIN, Fixture, run};

#[test]
fn logs_are_plain_or_json_and_a_bad_filter_is_refused() {
    // The fixture's daemon logs to a file: no ANSI escapes in it.
    let mut f = Fixture::new("logs");
    f.root("mkdir d && touch d/x");
    f.unmount();
    let text = f.log_text();
    assert!(text.contains("INFO"), "the daemon logged: {text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in a log file:\n{text}");

    // A filter that does not parse, and a typo of a level: refused, exit 2, nothing mounted.
    for bad in ["info=verbose", "debgu"] {
        let out = run(Command::new(BIN).env("QUOTAFS_LOG", bad).arg("--state-dir").arg(&f.state).arg("status"));
        assert_eq!(out.status.code(), Some(2), "QUOTAFS_LOG={bad}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("QUOTAFS_LOG") && err.contains("info,redb=warn"), "{err}");
    }

    // --log-format json: every line of the daemon's log is one JSON object with a level.
    let _ = std::fs::remove_file(&f.log);
    f.start(&["--log-format", "json"]);
    f.root("touch d/y");
    f.unmount();
    let json = f.log_text();
    let lines: Vec<&str> = json.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the daemon logged nothing");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
}
