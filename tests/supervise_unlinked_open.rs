//! A file unlinked while open lives only as long as a descriptor of it; the serving process's
//! descriptors die with it (issue #19; docs/design.md §18). After a kill -9, the holder of
//! such a file gets ESTALE on it (not EBADF, not another file's data), its close succeeds, and
//! the ledger is exact throughout: the charge the open kept is settled by recovery, as after
//! kill -9 without a supervisor. A file unlinked after the kill while its holder had not used
//! it again is the same case.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::holder::Holder;
use common::{Fixture, assert_exact};
use takeover::{kill9, next_pid};

#[test]
fn a_file_unlinked_while_open_answers_estale_after_a_kill9() {
    let f = Fixture::with_args("supervise-unlinked", &["--supervise", "--transport", "classic"]);
    let home = f.home("alice", 1001, 1001);
    let pid = next_pid(&f, None);
    f.sh_ok(1001, 1001, &format!("cd {} && head -c 200000 /dev/zero > before && echo x > after", home.display()));
    let mut a = Holder::spawn(1001, 1001);
    assert_eq!(a.cmd(&format!("open before {}/before rdwr", home.display())), "ok");
    assert_eq!(a.cmd(&format!("open after {}/after rdwr", home.display())), "ok");
    assert_eq!(a.cmd("write before 200000 more"), "ok 4");
    f.sh_ok(1001, 1001, &format!("rm {}/before", home.display()));
    let out = f.quotafs(&["check"]);
    assert!(out.contains("exactly"), "unlinked while open, still charged: {out}");

    kill9(pid);
    next_pid(&f, Some(pid));
    let out = f.quotafs(&["check"]);
    assert!(out.contains("exactly"), "after the takeover: {out}");
    // Unlinked after the kill, before its holder used it again: gone with the descriptors too.
    f.sh_ok(1001, 1001, &format!("rm {}/after", home.display()));
    for h in ["before", "after"] {
        assert_eq!(a.cmd(&format!("write {h} 0 data")), "err ESTALE", "{h}: the data is gone:\n{}", f.log_text());
        assert_eq!(a.cmd(&format!("sync {h}")), "err ESTALE", "{h}");
        assert_eq!(a.cmd(&format!("close {h}")), "ok", "{h}: the close succeeds");
    }
    drop(a);
    assert_exact(&f.state, f.backing(), "after the holder closed them");
}
