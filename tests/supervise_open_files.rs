//! A file opened before a kill -9 of the serving process reads and writes afterwards (issue
//! #19; docs/design.md §18): the new process reopens it from the open-file table the
//! supervisor holds, by its handle, on its first use, as its opener had it (access mode,
//! flags, credentials), and `check` stays exact.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::holder::Holder;
use common::{Fixture, assert_exact};
use takeover::{kill9, next_pid};

#[test]
fn files_opened_before_a_kill9_read_and_write_after_it() {
    let f = Fixture::with_args("supervise-open", &["--supervise", "--transport", "classic"]);
    let alice = f.home("alice", 1001, 1001);
    let bob = f.home("bob", 1002, 1002);
    f.sh_ok(1001, 1001, &format!("printf 0123456789 > {0}/rw && printf abc > {0}/log", alice.display()));
    f.sh_ok(1002, 1002, &format!("printf hello > {}/ro", bob.display()));
    let mut a = Holder::spawn(1001, 1001);
    let mut b = Holder::spawn(1002, 1002);
    assert_eq!(a.cmd(&format!("open rw {}/rw rdwr", alice.display())), "ok");
    assert_eq!(a.cmd(&format!("open log {}/log append", alice.display())), "ok");
    assert_eq!(b.cmd(&format!("open ro {}/ro direct", bob.display())), "ok");
    assert_eq!(a.cmd("write rw 0 AB"), "ok 2");
    let ro_before = b.cmd("read ro");

    let mut pid = next_pid(&f, None);
    for round in 0..2 {
        kill9(pid);
        pid = next_pid(&f, Some(pid));
        // Written through the handle opened before the kill, at an offset and appended.
        assert_eq!(a.cmd(&format!("write rw {} X{round}", 2 + 2 * round)), "ok 2", "round {round}:\n{}", f.log_text());
        assert_eq!(a.cmd(&format!("write log 0 L{round}")), "ok 2", "round {round}");
        // Read through a handle the kernel sends every read for (O_DIRECT).
        assert_eq!(b.cmd("read ro"), ro_before, "round {round}");
        assert_eq!(b.cmd("write ro 0 no"), "err EBADF", "a read-only open stays read-only");
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "round {round}: {out}");
    }
    assert_eq!(std::fs::read_to_string(alice.join("rw")).unwrap(), "ABX0X16789");
    assert_eq!(std::fs::read_to_string(alice.join("log")).unwrap(), "abcL0L1", "O_APPEND kept across the kill");
    assert_eq!(a.cmd("close rw"), "ok");
    assert_eq!(a.cmd("close log"), "ok");
    assert_eq!(b.cmd("close ro"), "ok");
    drop((a, b));
    assert_exact(&f.state, f.backing(), "after the handles were closed");
}
