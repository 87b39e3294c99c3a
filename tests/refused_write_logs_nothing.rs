//! A change refused with EDQUOT logs nothing (issue #16, "a refused write logs nothing it does
//! not need").
//!
//! The first change of an inode born before the current epoch (a write to a file, a creation
//! in a directory) records the inode's charge before the change (a `Touch`, in the backing's
//! journal directory or, failing that, in the activity log). A change the limits refuse never
//! reaches the backing, so it must write no record — else a tenant at its hard limit, retrying
//! writes to its old files, makes the ledger record (or fdatasync) for nothing.

mod common;

use serde_json::Value;

use common::{Fixture, assert_exact};

/// Records written anywhere: the activity log and the backings' journal directories.
fn log_records_total(f: &Fixture) -> u64 {
    let status: Value = serde_json::from_str(&f.quotafs(&["status", "--json"])).expect("status --json is JSON");
    let count = |key: &str| status[key].as_u64().unwrap_or_else(|| panic!("status --json has {key}"));
    count("log_records_total") + count("journal_records_total")
}

#[test]
fn refused_changes_to_old_inodes_log_nothing() {
    // No checkpoint but the ones this test asks for.
    let f = Fixture::with_args("refused-write-logs", &["--checkpoint-interval", "86400"]);
    f.home("h", 1000, 1000);
    f.sh_ok(1000, 1000, "head -c 8192 /dev/urandom > h/old");
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "1M"]);
    // uid 1000 fills its limit: less than a block of room is left.
    let out = f.sh_as(1000, 1000, "head -c 2000000 /dev/zero > h/fill");
    assert!(!out.status.success(), "a 2 MB file fitted under a 1 MiB hard limit");
    // A new epoch: `old` was born before it, its next change is its first in the epoch.
    f.quotafs(&["checkpoint"]);

    let before = log_records_total(&f);
    // Each refused: an append and a fallocate to `old`, a mkdir in `h` (a block for the new
    // directory); `old` and `h` were born in an earlier epoch.
    for cmd in ["head -c 100 /dev/zero >> h/old", "fallocate -o 8192 -l 1M h/old", "mkdir h/d"] {
        let out = f.sh_as(1000, 1000, cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("Disk quota exceeded"), "`{cmd}` was not refused: {stderr}");
        let after = log_records_total(&f);
        assert_eq!(after, before, "`{cmd}`, refused with EDQUOT, logged {} record(s)", after - before);
    }
    assert_eq!(std::fs::metadata(f.b("h/old")).unwrap().len(), 8192, "the refused append changed the file");
    assert_exact(&f.state, f.backing(), "after a refused append to an old file");
}
