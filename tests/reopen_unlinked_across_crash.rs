//! Files a tenant reopened after unlinking them (charged again until their last close) across
//! checkpoints and a kill -9 of the daemon: one reopened in the epoch of its unlink and
//! written in the next, one unlinked, then a checkpoint, then reopened (charged again in an
//! epoch whose snapshot never charged it). After the crash ext4 frees both; recovery must
//! take back exactly what the last snapshot charged for them, whichever epoch logged them.
//!
//! The daemon lets go of a file at its last unlink, so the reopen by handle works only while
//! something else holds the deleted inode: here a root process reading the backing directly
//! (a backup job), the same window an open racing the unlink has inside the daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use common::{BIN, Fixture, assert_exact, run_ok};

const HOLDER: &str = r#"
import os, sys
held = {}
for line in sys.stdin:
    cmd, name = line.split()
    if cmd == "unlink":
        # Held by an O_PATH descriptor (no FUSE open), touched by id, then unlinked.
        path = os.open(name, os.O_PATH)
        os.chmod(name, 0o600)
        os.unlink(name)
        held[name + "/path"] = path
    elif cmd == "reopen":
        held[name] = os.open("/proc/self/fd/%d" % held[name + "/path"], os.O_RDWR)
    elif cmd == "append":
        os.lseek(held[name], 0, os.SEEK_END)
        os.write(held[name], b"a" * 262144)
    print("ok", flush=True)
"#;

struct Holder {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    child: std::process::Child,
}

impl Holder {
    fn ask(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "the tenant's `{cmd}` failed");
    }
}

fn checkpoint(f: &Fixture) {
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
}

#[test]
fn reopened_unlinked_files_across_checkpoints_and_kill9() {
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args("reopen-crash", &args);
    f.home("t", 1000, 1000);
    f.sh_ok(1000, 1000, "head -c 1048576 /dev/zero > t/a && head -c 524288 /dev/zero > t/b");
    checkpoint(&f);
    let backup: Vec<std::fs::File> =
        ["t/a", "t/b"].iter().map(|p| std::fs::File::open(f.b(p)).expect("open on the backing")).collect();
    let mut child = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "/usr/bin/python3", "-c", HOLDER])
        .current_dir(f.m("t"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the tenant's holder");
    let mut h =
        Holder { stdin: child.stdin.take().unwrap(), stdout: BufReader::new(child.stdout.take().unwrap()), child };
    // `a`: unlinked and reopened in one epoch, written in that epoch and the next.
    h.ask("unlink a");
    h.ask("reopen a");
    h.ask("append a");
    // `b`: unlinked (charged off), and the snapshot below no longer charges it.
    h.ask("unlink b");
    checkpoint(&f);
    h.ask("append a");
    // Charged again in an epoch whose snapshot did not charge it.
    h.ask("reopen b");
    h.ask("append b");
    f.kill9();
    drop(backup);
    drop(h.stdin);
    let _ = h.child.wait();
    f.start(&args);
    assert_exact(&f.state, f.backing(), "after kill -9 with reopened unlinked files");
}
