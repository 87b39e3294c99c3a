//! The daemon's stdout and stderr may be gone (a shell or journal that exited: a pipe whose
//! reader is closed), full (/dev/full) or stalled (a reader that never reads, with a log line
//! per FUSE request): it still mounts and serves, a tenant over its limit still gets EDQUOT
//! (the refusal is logged, and the log write fails or would block), and SIGTERM still
//! unmounts cleanly.

mod common;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Scratch, mounted_at, run, run_ok};

/// Unmounts and kills the daemon if the test ends early.
struct Daemon {
    child: Option<Child>,
    mnt: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The daemon first: a daemon stuck on its log would keep `umount` waiting on it.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if mounted_at(&self.mnt).is_some() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
    }
}

fn start(s: &Scratch, state: &Path, mnt: &Path, (out, err, level): Sinks) -> Daemon {
    let child = Command::new(BIN)
        .arg("mount")
        .arg("--backing")
        .arg(&s.backing)
        .arg("--state-dir")
        .arg(state)
        .arg(mnt)
        .env("QUOTAFS_LOG", level)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn quotafs");
    let mut d = Daemon { child: Some(child), mnt: mnt.to_path_buf() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounted_at(mnt).as_deref() != Some("fuse.quotafs") {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("quotafs exited before mounting: {status}");
        }
        assert!(Instant::now() < deadline, "quotafs did not mount in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

/// A process holding the read end of a pipe without ever reading it; killed when dropped.
struct Stalled(Child);

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// stdout, stderr and log filter for one round.
type Sinks = (Stdio, Stdio, &'static str);

/// A pipe whose reader has exited: every write to it fails with EPIPE.
fn broken_pipe(_: &mut Vec<Stalled>) -> Sinks {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer: OwnedFd = reader.stdin.take().unwrap().into();
    reader.wait().unwrap();
    (Stdio::from(writer.try_clone().unwrap()), Stdio::from(writer), "info")
}

fn dev_full(_: &mut Vec<Stalled>) -> Sinks {
    let full = || Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap());
    (full(), full(), "info")
}

/// A pipe nobody reads, and a log line per FUSE request (fuser's, at `debug`): it is full
/// after a few hundred requests.
fn stalled_pipe(keep: &mut Vec<Stalled>) -> Sinks {
    // Longer than the creates' `timeout`; short enough that a daemon stuck on it (a failing
    // run) is freed soon.
    let mut reader = Command::new("sleep").arg("90").stdin(Stdio::piped()).spawn().unwrap();
    let writer: OwnedFd = reader.stdin.take().unwrap().into();
    keep.push(Stalled(reader));
    (Stdio::from(writer.try_clone().unwrap()), Stdio::from(writer), "debug")
}

#[test]
fn a_lost_or_full_log_breaks_nothing() {
    let s = Scratch::new("hostile-start");
    let state = s.dir.join("state");
    let mnt = s.dir.join("mnt");
    let st = state.to_str().unwrap();
    run_ok(Command::new(BIN).args(["--state-dir", st, "quota", "set", "--user", "1000", "--bytes-hard", "1M"]));
    type Sink = fn(&mut Vec<Stalled>) -> Sinks;
    let sinks: [(&str, Sink); 3] =
        [("a closed pipe", broken_pipe), ("/dev/full", dev_full), ("a pipe nobody reads", stalled_pipe)];
    let mut readers = Vec::new();
    for (round, (what, sink)) in sinks.into_iter().enumerate() {
        let mut d = start(&s, &state, &mnt, sink(&mut readers));
        let home = mnt.join(format!("h{round}"));
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
        let many_dir = mnt.join(format!("many{round}"));
        std::fs::create_dir(&many_dir).unwrap();
        std::os::unix::fs::chown(&many_dir, Some(1001), Some(1001)).unwrap();
        let dd = run(Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "dd", "if=/dev/zero", "bs=64K", "count=64"])
            .arg(format!("of={}/big", home.display())));
        let msg = String::from_utf8_lossy(&dd.stderr);
        assert!(msg.contains("Disk quota exceeded"), "stderr as {what}: a write over the limit must be EDQUOT: {msg}");
        // Refused again (a second logged refusal), still EDQUOT, and the daemon is alive.
        let again = run(Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
            .arg(format!("head -c 2000000 /dev/zero > {}/more", home.display())));
        let msg = String::from_utf8_lossy(&again.stderr);
        assert!(msg.contains("Disk quota exceeded"), "stderr as {what}: second refusal: {msg}");
        // Many requests (a log line each at `debug`); `timeout` turns a hang into a failure.
        let many = run(Command::new("setpriv")
            .args(["--reuid=1001", "--regid=1001", "--clear-groups", "timeout", "60", "sh", "-c"])
            .arg(format!("cd {} && for i in $(seq 1500); do : > f$i; done", many_dir.display())));
        assert!(
            many.status.success(),
            "stderr as {what}: 1500 creates ({}): {}",
            many.status,
            String::from_utf8_lossy(&many.stderr)
        );
        let status = run(Command::new(BIN).args(["--state-dir", st, "status", "--json"]));
        assert!(status.status.success(), "stderr as {what}: the daemon answers status");
        // SIGTERM unmounts and the daemon exits 0.
        let child = d.child.as_mut().unwrap();
        run_ok(Command::new("kill").arg("-TERM").arg(child.id().to_string()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            assert!(Instant::now() < deadline, "stderr as {what}: SIGTERM did not end the daemon");
            std::thread::sleep(Duration::from_millis(20));
        };
        d.child = None;
        assert_eq!(code, Some(0), "stderr as {what}: exit status after SIGTERM");
        assert!(mounted_at(&mnt).is_none(), "stderr as {what}: still mounted after SIGTERM");
    }
}
