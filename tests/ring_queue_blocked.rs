//! Over io_uring, requests that block do not stall their CPU's queue. The kernel hands a request
//! issued on a CPU to that CPU's queue only; when every entry of the queue holds a request, the
//! next one waits in the kernel. Here four of a tenant's creates (in four directories), all issued on CPU 0, block in
//! a frozen backing (fsfreeze: as on a dead or saturated disk) and so hold queue 0's ring
//! threads; another tenant's lookups, also issued on CPU 0 and needing no write, must still be
//! answered (docs/design.md §17.2). Afterwards the backing thaws, every create lands and the
//! ledger is exact.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::guards::{Frozen, Kids, UringSwitch};
use common::{Fixture, assert_exact};

const BLOCKERS: usize = 4;

/// `script` as `uid`, in `dir`, on CPU 0 (so its requests go to the kernel's queue 0).
fn on_cpu0(uid: u32, dir: &std::path::Path, script: &str) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "setpriv"])
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "sh", "-c", script])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn in_progress(f: &Fixture) -> u64 {
    let status: serde_json::Value = serde_json::from_str(&f.quotafs(&["status", "--json"])).expect("status JSON");
    status["backings"][0]["in_progress"].as_u64().unwrap_or(0)
}

#[test]
fn blocked_requests_do_not_stall_their_cpu_queue() {
    let _switch = UringSwitch::set(true);
    let f = Fixture::with_args("ring-queue-blocked", &["--transport", "uring"]);
    f.home("alice", 1001, 1001);
    f.home("bob", 1002, 1002);
    f.sh_ok(1002, 1002, "echo hello > bob/here");
    // A directory each: the kernel lets one create at a time into a directory reach the daemon.
    f.sh_ok(1001, 1001, &format!("cd alice && mkdir $(seq -f d%g 0 {})", BLOCKERS - 1));
    // Declared first, dropped last: the backing thaws before the processes are waited for.
    let mut procs = Kids(Vec::new());
    let frozen = Frozen::freeze(f.backing().to_path_buf());

    for i in 0..BLOCKERS {
        let cmd = on_cpu0(1001, &f.mnt, &format!("echo {i} > alice/d{i}/new")).spawn().expect("spawn a blocked create");
        procs.0.push(cmd);
    }
    // Until the daemon holds all of them (each in a backing call that waits for the thaw): a
    // create that stays in the kernel's queue is the stall itself.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n = in_progress(&f);
        if n >= BLOCKERS as u64 {
            break;
        }
        assert!(
            Instant::now() < until,
            "only {n} of {BLOCKERS} creates issued on CPU 0 reached the daemon; the others wait in the \
             kernel's queue behind ring threads blocked in the backing:\n{}",
            f.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Bob's lookups on the same CPU: a name that exists, one that does not, a listing.
    let mut bob = on_cpu0(1002, &f.mnt, "cat bob/here && ! stat bob/absent 2>/dev/null && ls bob")
        .spawn()
        .expect("spawn bob's lookups");
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = bob.try_wait().expect("wait for bob") {
            break Some(s);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    procs.0.push(bob);
    let Some(status) = status else {
        panic!(
            "bob's lookups on CPU 0 were not answered while {BLOCKERS} creates blocked in the backing \
             held CPU 0's ring threads:\n{}",
            f.log_text()
        );
    };
    assert!(status.success(), "bob's lookups failed");
    // Only the creates waited; they land once the backing thaws.
    drop(frozen);
    for mut c in procs.0.drain(..BLOCKERS) {
        let s = c.wait().expect("wait for a create");
        let mut err = String::new();
        if let Some(mut e) = c.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(s.success(), "a create failed after the thaw: {err}");
    }
    for i in 0..BLOCKERS {
        assert_eq!(std::fs::read_to_string(f.m(&format!("alice/d{i}/new"))).unwrap(), format!("{i}\n"));
    }
    assert_exact(&f.state, f.backing(), "after the thaw");
}
