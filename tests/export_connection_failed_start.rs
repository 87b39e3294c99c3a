//! A start whose export connections cannot all be mounted (here: the home exports' directory
//! is a file) fails, and leaves nothing mounted: neither the main mount nor the export
//! connections already made (/proc/mounts). A clean start after the cause is removed mounts
//! every connection, and SIGTERM unmounts them all.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, mounted_at, mounts_under};

#[test]
fn a_failed_export_mount_leaves_no_mount_and_sigterm_unmounts_every_connection() {
    let mut f = Fixture::new("export-failed-start");
    f.home("alice", 1001, 1001);
    f.root("mkdir site && chown 1002:1002 site");
    f.quotafs(&["project", "assign", "--id", "42", "--name", "site", &f.m("site").display().to_string()]);
    assert!(f.unmount().success());
    let exports = f.scratch.dir.join("exports");
    std::fs::create_dir(&exports).unwrap();
    std::fs::set_permissions(&exports, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    // Projects are mounted first (projects/site), then homes: users/ cannot be made.
    std::fs::write(exports.join("users"), "in the way").unwrap();
    let dir = exports.display().to_string();
    let args = ["--exports-dir", &dir, "--export-projects", "--export-users"];
    f.start_nowait(&args);
    let status = f.wait_exit();
    assert!(!status.success(), "the start must fail:\n{}", f.log_text());
    assert!(f.log_text().contains("nothing is left mounted"), "{}", f.log_text());
    assert_eq!(mounts_under(&f.scratch.dir), Vec::<std::path::PathBuf>::new(), "mounts left behind:\n{}", f.log_text());

    std::fs::remove_file(exports.join("users")).unwrap();
    f.start(&args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounts_under(&exports).len() < 2 {
        assert!(Instant::now() < deadline, "export connections not mounted:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mounted_at(&exports.join("projects/site")).as_deref(), Some("fuse.quotafs"));
    f.signal("TERM");
    assert!(f.wait_exit().success(), "SIGTERM must end the daemon cleanly:\n{}", f.log_text());
    assert_eq!(mounts_under(&f.scratch.dir), Vec::<std::path::PathBuf>::new(), "mounts left after SIGTERM");
}
