//! A backing belongs to one ledger: a second daemon on the same backing (main or routed), or on
//! a directory inside one, with another state dir is refused with exit 2, whether the first
//! daemon runs or not, names the state dir that owns the backing, and writes nothing (no state
//! dir, no tag, no mount).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Fixture, Scratch, mounted_at, run};

/// Every entry under `dir` with its size, mode, owner and xattrs (trusted.* included); what is
/// *inside* the owner's journal directory is left out: the owner's own unmount (a final
/// checkpoint) moves it on, between the two snapshots the test compares.
fn snapshot(dir: &Path) -> String {
    let files = run(Command::new("find").arg(dir).args([
        "-path",
        &format!("{}/.quotafs-journal/*", dir.display()),
        "-prune",
        "-o",
        "-printf",
        "%P %s %m %U\\n",
    ]));
    let attrs = run(Command::new("getfattr").args(["-R", "-d", "-m", "-", "--absolute-names"]).arg(dir));
    // getfattr has no -prune: drop the blocks (`# file: PATH`, its xattrs, a blank line) of
    // what is inside the journal directory (its record packs carry xattrs).
    let inside = format!("# file: {}/.quotafs-journal/", dir.display());
    let attrs: String = String::from_utf8_lossy(&attrs.stdout)
        .split_inclusive("\n\n")
        .filter(|block| !block.starts_with(&inside))
        .collect();
    format!("{}{attrs}", String::from_utf8_lossy(&files.stdout))
}

/// Runs a mount that must be refused; one that is accepted instead is unmounted (it would
/// serve in the foreground) and fails the test.
fn refused(args: &[&str], mnt: &Path, owner: &Path, what: &str) {
    let mut child =
        Command::new(BIN).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn quotafs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if mounted_at(mnt).is_some() || Instant::now() > deadline {
            let _ = run(Command::new("umount").arg("-l").arg(mnt));
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: a second ledger was accepted on a backing that has one");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: must be refused with exit 2; stderr: {err}");
    assert!(err.contains(owner.to_str().unwrap()), "{what}: the message names the owning state dir: {err}");
}

#[test]
fn a_second_ledger_on_the_same_backing_is_refused() {
    let mut f = Fixture::with_routes("second-ledger", &["/home/*/Dropbox"], &[]);
    let routed = f.routed[0].backing.clone();
    let other = Scratch::new("second-ledger-other");
    let state2 = f.scratch.dir.join("state2");
    let mnt2 = f.scratch.dir.join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let main = f.backing().to_path_buf();
    let (b, r, o) = (main.to_str().unwrap(), routed.to_str().unwrap(), other.backing.to_str().unwrap());
    let (st2, m2) = (state2.to_str().unwrap(), mnt2.to_str().unwrap());
    let route = format!("/home/*/Dropbox={r}");
    std::fs::write(f.m("file"), b"data").unwrap();
    std::fs::create_dir(f.m("sub")).unwrap();
    let sub = main.join("sub");
    let sub = sub.to_str().unwrap();
    let before = (snapshot(f.backing()), snapshot(&routed), snapshot(&other.backing));

    // While the first daemon runs, and after it stopped: the main backing, and a routed one
    // behind a fresh main backing.
    for running in [true, false] {
        if !running {
            assert_eq!(f.unmount().code(), Some(0));
        }
        let when = if running { "first daemon running" } else { "first daemon stopped" };
        refused(&["mount", "--backing", b, "--route", &route, "--state-dir", st2, m2], &mnt2, &f.state, when);
        refused(&["mount", "--backing", o, "--route", &route, "--state-dir", st2, m2], &mnt2, &f.state, when);
        // A directory inside the owned backing is part of it.
        refused(&["mount", "--backing", sub, "--state-dir", st2, m2], &mnt2, &f.state, when);
        assert!(mounted_at(&mnt2).is_none(), "{when}: nothing mounted");
        assert!(!state2.exists(), "{when}: a refused start creates no state dir");
    }
    let after = (snapshot(f.backing()), snapshot(&routed), snapshot(&other.backing));
    assert_eq!(after, before, "a refused start writes nothing to any backing");

    // The owner mounts again as before.
    f.start(&[]);
    assert_eq!(std::fs::read(f.m("file")).unwrap(), b"data");
}
