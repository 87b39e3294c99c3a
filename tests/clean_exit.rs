//! SIGINT, SIGTERM and an outside `umount` all end the daemon cleanly (exit 0, nothing left
//! mounted); a busy mount is detached and keeps serving open files. `--help` explains options.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::{BIN, Fixture, mounted_at, run_ok};

#[test]
fn signals_and_umount_end_the_daemon_with_exit_0() {
    let mut f = Fixture::new("exit");
    std::fs::write(f.m("a"), b"1").unwrap();
    assert!(f.unmount().success(), "outside umount: {}", f.log_text());
    assert!(mounted_at(&f.mnt).is_none());

    for sig in ["INT", "TERM"] {
        f.start(&[]);
        std::fs::write(f.m("b"), b"2").unwrap();
        f.signal(sig);
        let status = f.wait_exit();
        assert!(status.success(), "SIG{sig} -> {status}: {}", f.log_text());
        assert!(mounted_at(&f.mnt).is_none(), "SIG{sig} unmounted");
    }

    // A busy mount: SIGTERM detaches it; an open file keeps working until closed.
    f.start(&[]);
    let mut open =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(f.m("busy")).unwrap();
    f.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(mounted_at(&f.mnt).is_none(), "detached from the tree");
    open.write_all(b"after detach").unwrap();
    let mut s = String::new();
    std::io::Seek::rewind(&mut open).unwrap();
    open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "after detach");
    drop(open);
    let status = f.wait_exit();
    assert!(status.success(), "busy mount, SIGTERM -> {status}:\n{}", f.log_text());
    assert_eq!(std::fs::read(f.b("busy")).unwrap(), b"after detach");
}

#[test]
fn help_explains_every_option() {
    let top = run_ok(Command::new(BIN).arg("--help"));
    for word in ["mount", "demo", "--config", "--state-dir"] {
        assert!(top.contains(word), "quotafs --help mentions {word}:\n{top}");
    }
    let mount = run_ok(Command::new(BIN).args(["mount", "--help"]));
    for word in [
        "--backing",
        "--threads",
        "--entry-ttl",
        "--attr-ttl",
        "--fd-cache",
        "--max-write",
        "--opens-per-uid",
        "--no-acl",
        "MOUNTPOINT",
        "--state-dir",
        "--config",
    ] {
        assert!(mount.contains(word), "quotafs mount --help mentions {word}:\n{mount}");
    }
}
