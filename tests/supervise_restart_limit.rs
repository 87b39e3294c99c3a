//! The crash-loop bound of `--supervise` is configurable (`--restart-limit DEATHS/SECSs`,
//! config `restart_limit`; issue #19): with 2 in 60 s, the second death of the serving process
//! leaves the mount answering EIO, logged why, with no third process started.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::time::{Duration, Instant};

use common::Fixture;
use takeover::{kill9, next_pid, serving_pid};

#[test]
fn a_restart_limit_of_two_stops_after_the_second_death() {
    let mut f =
        Fixture::with_args("supervise-limit", &["--supervise", "--transport", "classic", "--restart-limit", "2/60s"]);
    let pid = next_pid(&f, None);
    kill9(pid);
    let pid = next_pid(&f, Some(pid));
    assert!(std::fs::metadata(f.m(".")).is_ok(), "one death is within the limit: the mount serves");
    kill9(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.log_text().contains("keeps dying") {
        assert!(Instant::now() < deadline, "the supervisor should stop restarting:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = std::fs::metadata(f.m("anything")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(serving_pid(&f).is_none(), "no third serving process");
    assert!(!f.unmount().success(), "the supervisor reports the crash loop in its exit status");
}
