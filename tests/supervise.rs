//! `quotafs mount --supervise`: the mount outlives the process that serves it (issue #19, in
//! part; docs/design.md §18). A kill -9 of the serving process (the pid `status --json`
//! reports) is followed by a new one within seconds, with nothing for the operator to do: the
//! mount never answers ENOTCONN, a shell whose cwd is inside it keeps working there, new work
//! succeeds, and `check` is exact after every round. A serving process that dies 5 times within
//! a minute leaves the mount answering EIO (logged why) instead of restarting forever; SIGTERM
//! to the supervisor still ends everything cleanly. Supervised mounts serve over /dev/fuse, so the
//! tests ask for it whatever transport the rest of the suite runs on.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, assert_exact, mounted_at};
use takeover::{kill9, next_pid, serving_pid};

#[test]
fn kill9_of_the_serving_process_keeps_the_mount() {
    let mut f = Fixture::with_args("supervise", &["--supervise", "--transport", "classic"]);
    let home = f.home("alice", 1001, 1001);
    let supervisor = f.daemon_pid();
    // A shell with its cwd inside the mount, working on across every kill.
    let mut tenant = Command::new("setpriv")
        .args(["--reuid=1001", "--regid=1001", "--clear-groups", "sh", "-c"])
        .arg(
            "cd \"$0\" && i=0; while [ ! -e stop ]; do i=$((i+1)); echo $i > f$i 2>/dev/null; cat f$i > /dev/null 2>&1; \
             ls > /dev/null; [ $((i % 3)) = 0 ] && rm -f f$((i-1)); done; pwd > where",
        )
        .arg(&home)
        .stdin(Stdio::null())
        .spawn()
        .expect("tenant shell");
    let mut pid = next_pid(&f, None);
    assert_ne!(pid, supervisor, "the supervisor does not serve requests itself");
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        kill9(pid);
        pid = next_pid(&f, Some(pid));
        assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"), "round {round}: the mount is still there");
        // New work succeeds as soon as the new process answers.
        let out = f.sh_as(
            1001,
            1001,
            &format!("echo round {round} > {}/round{round} && cat {}/round{round}", home.display(), home.display()),
        );
        assert!(
            out.status.success(),
            "round {round}: new work after the takeover: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Exact while the tenant works on: `check` holds usage changes off while it counts.
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "round {round}: {out}");
    }
    std::fs::write(home.join("stop"), b"").unwrap();
    let status = tenant.wait().expect("tenant shell ends");
    assert!(status.success(), "the tenant's shell kept its cwd in the mount and ended normally");
    assert_eq!(std::fs::read_to_string(home.join("where")).unwrap().trim(), home.to_str().unwrap());
    assert_eq!(f.daemon_pid(), supervisor, "the supervisor itself never restarted");
    assert_exact(&f.state, f.backing(), "after the takeovers, the tenant stopped");
    // SIGTERM to the supervisor ends the serving process and the mount, cleanly.
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
    assert!(mounted_at(&f.mnt).is_none(), "no mount left behind");
    assert_exact(&f.state, f.backing(), "after the supervisor stopped");
}

#[test]
fn a_crash_loop_ends_in_eio_not_in_endless_restarts() {
    let mut f = Fixture::with_args("supervise-loop", &["--supervise", "--transport", "classic"]);
    let mut pid = next_pid(&f, None);
    // Five deaths in a few seconds (the limit is 5 in 60 s).
    for death in 1..=5 {
        kill9(pid);
        if death < 5 {
            pid = next_pid(&f, Some(pid));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.log_text().contains("keeps dying") {
        assert!(Instant::now() < deadline, "the supervisor should stop restarting:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The mount answers EIO now, at once, rather than hanging or restarting.
    let err = std::fs::metadata(f.m("anything")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(serving_pid(&f).is_none(), "no serving process is started again");
    let status = f.unmount();
    assert!(!status.success(), "the supervisor reports the crash loop in its exit status");
}
