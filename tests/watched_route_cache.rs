//! Pages cached by the kernel are kept across opens (every change normally goes through the
//! mount), so a routed backing written behind the mount's back (`--watch-routes`) must have
//! them dropped: a reader holding a Dropbox file open through the mount, and a later open,
//! read what a client wrote directly to the routed backing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::holder::Holder;
use common::{Fixture, run};

#[test]
fn outside_writes_to_a_watched_route_reach_cached_readers() {
    // Long attribute caching: the kernel would not look at the file's mtime again by itself.
    let f = Fixture::with_routes("route-cache", &["/home/*/Dropbox"], &["--watch-routes", "--attr-ttl", "600"]);
    f.home("home", 0, 0);
    f.home("home/a", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/a/Dropbox && printf 'version-1' > home/a/Dropbox/doc");
    let doc = f.m("home/a/Dropbox/doc");
    let mut reader = Holder::spawn(1000, 1000);
    assert_eq!(reader.cmd(&format!("open r {} rdonly", doc.display())), "ok");
    let old = reader.cmd("read r");
    assert_eq!(std::fs::read_to_string(&doc).unwrap(), "version-1", "now in the page cache");
    // The sync client writes the backing itself: same size, new bytes.
    let outside = f.routed[0].backing.join("home/a/Dropbox");
    let out = run(Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", "printf 'version-2' > doc"])
        .current_dir(&outside));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The watcher charges the burst once it is quiet, and drops the cached pages with it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&doc).unwrap() != "version-2" {
        assert!(Instant::now() < deadline, "a new open still reads the stale cached page");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(reader.cmd("read r"), old, "the held reader reads the outside write");
}
