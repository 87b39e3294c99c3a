//! `--supervise` needs FUSE_HAS_RESEND (Linux 6.9+; issue #19, docs/design.md §18): without it
//! the requests a dead serving process had read would never be answered. A kernel that does
//! not offer it at INIT (simulated with failpoint INIT_NO_RESEND: this kernel does offer it)
//! is refused: exit status 2, a message naming the capability and what to do, no mount left.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::{Fixture, mounted_at};
use takeover::next_pid;

#[test]
fn supervise_is_refused_when_the_kernel_cannot_resend() {
    let args = ["--supervise", "--transport", "classic"];
    let mut f = Fixture::with_args("supervise-resend", &args);
    next_pid(&f, None);
    f.signal("TERM");
    assert!(f.wait_exit().success(), "{}", f.log_text());

    let trigger = f.scratch.dir.join("no-resend");
    std::fs::write(&trigger, b"").unwrap();
    f.start_nowait_with_env(&args, &[("QUOTAFS_FAILPOINT_INIT_NO_RESEND_FILE", trigger.to_str().unwrap())]);
    let status = f.wait_exit();
    let log = f.log_text();
    assert_eq!(status.code(), Some(2), "refused as a bad setting is:\n{log}");
    assert!(log.contains("FUSE_HAS_RESEND") && log.contains("without --supervise"), "{log}");
    assert!(mounted_at(&f.mnt).is_none(), "no mount left behind");
}
