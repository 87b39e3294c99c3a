//! A serving process killed by a signal before it answered its first INIT is replaced, and
//! the mount serves (issue #19; docs/design.md §18): the next process asks the kernel to
//! resend the INIT the dead one had read and answers it. (A process that *exits* before INIT
//! is a refused start and still ends the supervisor with its status.)

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::time::{Duration, Instant};

use common::{Fixture, assert_exact, mounted_at};
use takeover::{kill9, next_pid, serving_pid};

#[test]
fn a_kill9_before_the_first_init_is_answered_restarts() {
    let args = ["--supervise", "--transport", "classic"];
    let mut f = Fixture::with_args("supervise-first-init", &args);
    // In the fixture's directory, which goes with it.
    let hold = f.scratch.dir.join("init-reply");
    let held = hold.with_extension("held");
    next_pid(&f, None);
    f.signal("TERM");
    assert!(f.wait_exit().success(), "{}", f.log_text());

    std::fs::write(&hold, b"").unwrap();
    let _ = std::fs::remove_file(&held);
    f.start_with_env(&args, &[("QUOTAFS_FAILPOINT_INIT_REPLY_FILE", hold.to_str().unwrap())]);
    let supervisor = f.daemon_pid();
    // The serving process has read the INIT and holds before answering it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !held.exists() {
        assert!(Instant::now() < deadline, "the INIT never arrived:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = serving_pid(&f).expect("the serving process answers status while it starts");
    assert!(!f.state.join("fuse-init").exists(), "INIT not answered yet");
    kill9(pid);
    std::fs::remove_file(&hold).unwrap();
    let _ = std::fs::remove_file(&held);
    next_pid(&f, Some(pid));
    assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"), "the mount stayed");
    let home = f.home("alice", 1001, 1001);
    f.sh_ok(1001, 1001, &format!("echo hello > {0}/f && cat {0}/f", home.display()));
    assert_eq!(f.daemon_pid(), supervisor, "the supervisor itself never restarted");
    let out = f.quotafs(&["check"]);
    assert!(out.contains("exactly"), "{out}");
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
    assert_exact(&f.state, f.backing(), "after the supervisor stopped");
}
