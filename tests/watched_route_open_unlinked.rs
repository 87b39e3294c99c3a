//! A watched routed backing (`--watch-routes`) is recounted after writes made to it directly;
//! the recount cannot see a file unlinked but still open there, which the ledger charges until
//! its last close. The recount must count it, or it takes the charge off and the last close
//! takes it off again.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, assert_exact_all, recount_all, report, run};

#[test]
fn recount_of_a_watched_backing_keeps_a_file_unlinked_while_open() {
    let f = Fixture::with_routes("route-watch-open-unlinked", &["/home/*/Dropbox"], &["--watch-routes"]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox && head -c 2097152 /dev/zero > home/a/Dropbox/held");
    let holder = common::Held::spawn(
        1000,
        &f.mnt,
        &["sh", "-c", "exec 3<home/a/Dropbox/held && rm home/a/Dropbox/held && echo held && read _ && exec 3<&-"],
    );
    let before = report(&f.state);
    // A sync client writing to the routed backing itself: the daemon recounts that backing.
    let outside = f.routed[0].backing.join("home/a/Dropbox");
    let out = run(Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", "head -c 1048576 /dev/zero > synced"])
        .current_dir(&outside));
    assert!(out.status.success(), "outside write: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while report(&f.state) == before {
        assert!(Instant::now() < deadline, "the outside write was never recounted");
        std::thread::sleep(Duration::from_millis(100));
    }
    holder.release();
    // The last close reaches the daemon after close returns: wait for the ledger to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while report(&f.state) != recount_all(&f.all_backings()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_exact_all(&f.state, &f.all_backings(), "after a recount while a file was unlinked but open");
}
