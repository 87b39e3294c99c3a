//! An open file a tenant held across a takeover keeps working whatever other tenants open
//! after it. The next serving process reopens an inherited handle on its first use; until then
//! it holds no data descriptor for it. Tenants who open many files right after the takeover
//! (each within its share, together past the daemon's descriptor budget) must not take the
//! descriptors the held files had before the kill: the victim's read after the takeover
//! succeeds (it would fail ENFILE), and `check` stays exact.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::process::Command;

use common::holder::Holder;
use common::{Fixture, assert_exact, run_ok};
use takeover::{kill9, next_pid};

/// The daemon's open-file limit (inherited from this test process): with `--fd-cache 64` and
/// the 1024 descriptors it reserves, 512 data descriptors for open files.
const NOFILE: u32 = 1600;
const SHARE: usize = 300;

#[test]
fn a_held_file_survives_a_takeover_whatever_others_open_after_it() {
    // The daemon and its serving processes inherit this limit (their hard limit is the one
    // they raise to).
    run_ok(
        Command::new("prlimit").arg(format!("--pid={}", std::process::id())).arg(format!("--nofile={NOFILE}:{NOFILE}")),
    );
    let share = SHARE.to_string();
    let args = [
        "--supervise",
        "--transport",
        "classic",
        "--restart-limit",
        "100/60s",
        "--opens-per-uid",
        &share,
        "--fd-cache",
        "64",
    ];
    let f = Fixture::with_args("takeover-fd-budget", &args);
    f.home("bob", 1004, 1004);
    f.sh_ok(1004, 1004, "head -c 8192 /dev/urandom > bob/diary");
    let attackers = [1001u32, 1002];
    for uid in attackers {
        let name = format!("t{uid}");
        f.home(&name, uid, uid);
        f.sh_ok(uid, uid, &format!("mkdir {name}/many && cd {name}/many && seq 0 {} | xargs touch", SHARE - 1));
    }
    // O_DIRECT: every read reaches the serving process, none is answered from the page cache.
    let mut bob = Holder::spawn(1004, 1004);
    assert_eq!(bob.cmd(&format!("open 1 {} direct", f.m("bob/diary").display())), "ok");
    let before = bob.cmd("read 1");
    assert!(before.starts_with("data 8192 "), "bob reads his file: {before}");

    let pid = next_pid(&f, None);
    kill9(pid);
    next_pid(&f, Some(pid));
    // Right after the takeover, each attacker opens its whole share.
    let mut held = Vec::new();
    for uid in attackers {
        let mut h = Holder::spawn(uid, uid);
        let r = h.cmd(&format!("openmany {} 0 {SHARE}", f.m(&format!("t{uid}/many/")).display()));
        eprintln!("tenant {uid}: {r}");
        held.push(h);
    }
    let after = bob.cmd("read 1");
    assert_eq!(
        after,
        before,
        "bob's file held across the takeover, read after others opened theirs:\n{}",
        f.log_text()
    );
    drop(held);
    drop(bob);
    assert_exact(&f.state, f.backing(), "after the takeover");
}
