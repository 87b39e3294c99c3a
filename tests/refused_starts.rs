//! Every refused start says what is wrong and what to do, exits 2, mounts nothing and leaves
//! the backing untouched.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Fixture, Scratch, mounted_at, run};

/// A listing of everything under `dir` (names, sizes, modes): to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<String> {
    let out = run(Command::new("find").arg(dir).arg("-printf").arg("%P %s %m %U\\n"));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn refused(args: &[&str], expect: &[&str]) -> String {
    let out = run(Command::new(BIN).args(args));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} must be refused with exit 2; stderr: {err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: message should mention {e:?}, got: {err}");
    }
    err
}

#[test]
fn bad_starts_are_refused_cleanly() {
    let s = Scratch::new("refuse");
    let b = s.backing.to_str().unwrap().to_string();
    std::fs::write(s.backing.join("existing"), b"keep me").unwrap();
    let before = snapshot(&s.backing);
    let mnt = s.dir.join("mnt");
    let m = mnt.to_str().unwrap();
    let state = s.dir.join("state");
    let st = state.to_str().unwrap();

    refused(
        &["mount", "--backing", "/nonexistent/backing", "--state-dir", st, m],
        &["/nonexistent/backing", "does not exist"],
    );
    refused(&["mount", "--backing", &format!("{b}/existing"), "--state-dir", st, m], &["not a directory"]);
    // A tmpfs directory is not ext4: the message names the type found.
    let tmpfs = s.dir.join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    assert!(run(Command::new("mount").args(["-t", "tmpfs", "none"]).arg(&tmpfs)).status.success());
    refused(&["mount", "--backing", tmpfs.to_str().unwrap(), "--state-dir", st, m], &["tmpfs", "not ext4"]);
    run(Command::new("umount").arg(&tmpfs));
    refused(
        &["mount", "--backing", &b, "--state-dir", st, "/nonexistent/mnt"],
        &["mountpoint", "does not exist", "mkdir"],
    );
    // Mountpoint inside the backing, backing inside the mountpoint.
    std::fs::create_dir(s.backing.join("inner")).unwrap();
    let inner_before = snapshot(&s.backing);
    refused(&["mount", "--backing", &b, "--state-dir", st, &format!("{b}/inner")], &["inside the backing"]);
    refused(&["mount", "--backing", &format!("{b}/inner"), "--state-dir", st, &b], &["inside the mountpoint"]);
    // The state dir may not live in the backing; it is not created there.
    refused(
        &["mount", "--backing", &b, "--state-dir", &format!("{b}/inner/state"), m],
        &["state dir", "inside the backing"],
    );
    assert_eq!(snapshot(&s.backing), inner_before, "a refused start changes nothing in the backing");
    std::fs::remove_dir(s.backing.join("inner")).unwrap();
    assert_eq!(snapshot(&s.backing), before);

    // Config file: malformed (line named), unknown key (line and key named).
    let cfg = s.dir.join("bad.toml");
    std::fs::write(&cfg, format!("backing = \"{b}\"\nthreads = [1\n")).unwrap();
    refused(&["--config", cfg.to_str().unwrap(), "mount", "--state-dir", st, m], &["bad.toml", "line 2"]);
    std::fs::write(&cfg, format!("backing = \"{b}\"\n\nbakcing = \"/x\"\n")).unwrap();
    refused(&["--config", cfg.to_str().unwrap(), "mount", "--state-dir", st, m], &["bakcing", "line 3"]);
    refused(&["--config", "/nonexistent.toml", "mount", m], &["/nonexistent.toml"]);
    // Absurd values.
    refused(&["mount", "--backing", &b, "--state-dir", st, "--threads", "0", m], &["threads"]);
    refused(&["mount", "--backing", &b, "--state-dir", st, "--entry-ttl=-1", m], &["entry_ttl"]);
    // Not root.
    let out = run(Command::new("setpriv").args([
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        BIN,
        "mount",
        "--backing",
        &b,
        "--state-dir",
        st,
        m,
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));

    assert!(mounted_at(&mnt).is_none(), "nothing was mounted");
    assert!(!state.exists(), "a refused start creates no state dir");
    assert_eq!(snapshot(&s.backing), before);
}

#[test]
fn second_mount_and_shared_state_are_refused() {
    let f = Fixture::new("twice");
    let b = f.backing().to_str().unwrap().to_string();
    let st = f.state.to_str().unwrap().to_string();
    // Already mounted at that mountpoint.
    let other_state = f.scratch.dir.join("state2");
    refused(
        &["mount", "--backing", &b, "--state-dir", other_state.to_str().unwrap(), f.mnt.to_str().unwrap()],
        &["already mounted", "umount"],
    );
    // Another daemon holds the state dir.
    let mnt2 = f.scratch.dir.join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let out = run(Command::new(BIN).args(["mount", "--backing", &b, "--state-dir", &st, mnt2.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another quotafs daemon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mounted_at(&mnt2).is_none());
    // The first mount is unharmed.
    std::fs::write(f.m("still-works"), b"ok").unwrap();
}
