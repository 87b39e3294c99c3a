//! A file opened under an alias node id keeps working across a takeover (issue #19; docs/design.md
//! §3 for aliases, §18.1 for the open-file table). While the kernel still holds a removed file's
//! node (here by an `O_PATH` descriptor), a new file that ext4 gives the same inode number is
//! handed to the kernel under an alias id, and the kernel names it by that id for as long as it
//! holds it. Under load this is common (a tenant's loop of creates and removes; found by
//! `supervise_restart` under a second test run's load). A file opened under such an id before a
//! kill -9 must read and write after it, as any other held file does.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::holder::Holder;
use common::{Fixture, assert_exact, ino};
use takeover::{kill9, next_pid};

#[test]
fn a_file_open_under_an_alias_id_survives_a_kill9() {
    let f = Fixture::with_args("supervise-open-alias", &["--supervise", "--transport", "classic"]);
    let pid = next_pid(&f, None);
    let home = f.home("alice", 1001, 1001);
    let mut a = Holder::spawn(1001, 1001);
    // Alice's removed file, its node held by the kernel; then her new files until one takes
    // its number.
    f.sh_ok(1001, 1001, &format!("echo old > {}/old", home.display()));
    let old = ino(&f.b("alice/old"));
    assert_eq!(a.cmd(&format!("open old {}/old path", home.display())), "ok");
    f.sh_ok(1001, 1001, &format!("rm {}/old", home.display()));
    let reused = (0..64)
        .find_map(|i| {
            f.sh_ok(1001, 1001, &format!("echo new > {}/new{i}", home.display()));
            (ino(&f.b(&format!("alice/new{i}"))) == old).then(|| format!("new{i}"))
        })
        .expect("ext4 gives the freed inode number to one of the next files");
    assert_eq!(a.cmd(&format!("open held {}/{reused} rdwr", home.display())), "ok");
    assert_eq!(a.cmd("write held 0 before"), "ok 6");

    kill9(pid);
    next_pid(&f, Some(pid));
    assert_eq!(a.cmd("write held 6 after"), "ok 5", "the held file writes after the takeover:\n{}", f.log_text());
    let read = a.cmd("read held");
    assert!(read.starts_with("data 11 "), "the held file reads after the takeover: {read}");
    assert_eq!(std::fs::read_to_string(f.b(&format!("alice/{reused}"))).unwrap(), "beforeafter");
    assert_eq!(a.cmd("close held"), "ok");
    assert_eq!(a.cmd("close old"), "ok");
    drop(a);
    assert_exact(&f.state, f.backing(), "after the takeover");
}
