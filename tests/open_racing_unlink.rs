//! An open the kernel resolved before an unlink reaches the daemon's open count after it
//! (held there by a failpoint, so the race happens every time): the unlink found the file
//! closed and charged it off, yet the opener truncates and writes through it. Its charge must
//! still be taken and released once: the open charges it again, its close releases it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, assert_exact};

#[test]
fn an_open_counted_after_the_unlink_charges_the_file_again() {
    let env = [("QUOTAFS_FAILPOINT_OPEN_COUNTING_PAUSE_MS", "1500")];
    let mut f = Fixture::with_args("open-racing-unlink", &["--checkpoint-interval", "3600"]);
    // Restart with the failpoint (the first start made the ledger).
    f.signal("TERM");
    f.wait_exit();
    f.start_with_env(&["--checkpoint-interval", "3600"], &env);
    f.home("t", 1000, 1000);
    std::fs::write(f.m("t/f"), vec![5u8; 4 << 20]).unwrap();
    std::os::unix::fs::chown(f.m("t/f"), Some(1000), Some(1000)).unwrap();
    // The tenant opens the file (the daemon holds the open 1.5 s before counting it), an
    // unlink lands meanwhile, then the opener truncates it and writes 1 MiB.
    let opener = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "/usr/bin/python3", "-c"])
        .arg("import os\nfd = os.open('t/f', os.O_RDWR)\nos.ftruncate(fd, 0)\nos.write(fd, b'w' * 1048576)\nos.close(fd)\n")
        .current_dir(&f.mnt)
        .spawn()
        .expect("spawn the opener");
    std::thread::sleep(Duration::from_millis(500));
    f.sh_ok(1000, 1000, "rm t/f");
    let status = opener.wait_with_output().unwrap().status;
    assert!(status.success(), "the opener failed: {status}");
    // The release reaches the daemon after close returns: wait until the file's charge is gone.
    for _ in 0..100 {
        if common::report(&f.state).get(&("user".to_string(), 1000)).is_some_and(|u| u.1 == 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_exact(&f.state, f.backing(), "after an open counted after the unlink");
}
