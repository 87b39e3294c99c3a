//! Requests that had taken effect when the serving process died are answered as the first
//! attempt would have been (issue #19; docs/design.md §18). The failpoint NAME_REPLY holds a
//! name operation after its backing call and before its reply; the serving process is killed
//! there, and the kernel resends the request (FUSE_UNIQUE_RESEND) to the next one, which meets
//! the change already made: EEXIST for a mkdir, create, symlink, link, mknod; ENOENT for an
//! unlink, rmdir, rename. The tenant's command must succeed all the same, and `check` stays
//! exact.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, assert_exact};
use takeover::{kill9, next_pid};

#[test]
fn resent_name_operations_that_took_effect_succeed() {
    let args = ["--supervise", "--transport", "classic", "--restart-limit", "100/60s"];
    let mut f = Fixture::with_args("supervise-resent", &args);
    next_pid(&f, None);
    f.signal("TERM");
    assert!(f.wait_exit().success(), "{}", f.log_text());
    // In the fixture's directory, which goes with it (the marker `<hold>.held` too).
    let hold = f.scratch.dir.join("name-reply");
    f.start_with_env(&args, &[("QUOTAFS_FAILPOINT_NAME_REPLY_FILE", hold.to_str().unwrap())]);
    let home = f.home("alice", 1001, 1001);
    f.sh_ok(1001, 1001, &format!("cd {} && echo a > f && echo b > gone && mkdir rmd && echo c > from", home.display()));
    // (what the tenant runs in its home, what is on the backing once it took effect)
    let cases: [(&str, &str, bool); 9] = [
        ("mkdir d", "alice/d", true),
        ("set -C; echo x > excl", "alice/excl", true),
        // O_CREAT without O_EXCL: met again, the file must not be made (and charged) twice.
        ("echo x > plain", "alice/plain", true),
        ("ln -s f sym", "alice/sym", true),
        ("ln f hard", "alice/hard", true),
        ("mkfifo fifo", "alice/fifo", true),
        ("rm gone", "alice/gone", false),
        ("rmdir rmd", "alice/rmd", false),
        ("mv from to", "alice/from", false),
    ];
    let mut pid = next_pid(&f, None);
    for (script, effect, present) in cases {
        std::fs::write(&hold, b"").unwrap();
        let op = Command::new("setpriv")
            .args(["--reuid=1001", "--regid=1001", "--clear-groups", "sh", "-c"])
            .arg(format!("cd \"$0\" && {script}"))
            .arg(&home)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The change is on the backing, its reply held: the process dies there.
        let deadline = Instant::now() + Duration::from_secs(20);
        while f.b(effect).symlink_metadata().is_ok() != present {
            assert!(Instant::now() < deadline, "`{script}` never reached the backing:\n{}", f.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        kill9(pid);
        pid = next_pid(&f, Some(pid));
        std::fs::remove_file(&hold).unwrap();
        let out = op.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "`{script}` resent after the kill: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            f.log_text()
        );
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "after `{script}`: {out}");
    }
    assert_eq!(std::fs::read_to_string(home.join("to")).unwrap(), "c\n");
    assert_eq!(std::fs::read_to_string(home.join("hard")).unwrap(), "a\n");
    assert_exact(&f.state, f.backing(), "after the resent requests");
}
