//! NFS through a `--supervise` mount (issue #19): nfs-ganesha exports the mount, NFSv3 and
//! NFSv4 clients (libnfs) hold a file handle and an open file, and the serving process is
//! killed (SIGKILL), then replaced by `quotafs restart`, with no ganesha restart in between.
//! After each, both clients read and write through what they held, look up, create and write
//! new files; the mount keeps its device number (ganesha's handles embed it); `check` is
//! exact. Run it alone among NFS tests: `flock /tmp/quotafs-nfs.lock cargo test --test
//! nfs_supervise`.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::nfs::{Client, Ganesha, Netns};
use common::{BIN, Fixture, assert_exact};
use takeover::{next_pid, serving_pid};

/// What each client does after a takeover: through the open file it held, by name, and anew.
fn works_on(f: &Fixture, v3: &mut Client, v4: &mut Client, round: &str) {
    // Handles: GETATTR by the handle each client holds, no lookup by name first.
    let st = v3.ok("fstat 0");
    assert_eq!(st.split(' ').nth(3).unwrap().parse::<u64>().unwrap(), common::ino(&f.m("u/keep3")), "{round}");
    let st = v4.ok("fstat 0");
    assert_eq!(st.split(' ').nth(3).unwrap().parse::<u64>().unwrap(), common::ino(&f.m("u/keep4")), "{round}");
    // The open files: read and write through them.
    assert!(v3.ok("read 0 100").ends_with("v3 data"), "{round}");
    v3.ok(&format!("write 0 0 {round}"));
    assert!(v4.ok("read 0 100").ends_with("v4 data"), "{round}");
    v4.ok(&format!("write 0 0 {round}"));
    assert!(std::fs::read_to_string(f.m("u/keep3")).unwrap().starts_with(round), "{round}: the v3 write landed");
    assert!(std::fs::read_to_string(f.m("u/keep4")).unwrap().starts_with(round), "{round}: the v4 write landed");
    // New work, by name.
    assert_eq!(v3.ok(&format!("put /u/{round}-3 100000")), "100000", "{round}");
    assert_eq!(v4.ok(&format!("put /u/{round}-4 10000")), "10000", "{round}");
    assert_eq!(v3.ok(&format!("cat /u/{round}-4")).len(), 10000, "{round}");
}

#[test]
fn nfs_clients_keep_their_handles_and_open_files_through_a_kill_and_a_restart() {
    let f = Fixture::with_args("nfs-supervise", &["--supervise", "--transport", "classic"]);
    let home = f.home("u", 1000, 1000);
    std::fs::write(home.join("keep3"), "keep: v3 data").unwrap();
    std::fs::write(home.join("keep4"), "keep: v4 data").unwrap();
    f.root("chown 1000:1000 u/keep3 u/keep4");
    let mut pid = next_pid(&f, None);
    let dev = std::fs::metadata(&f.mnt).unwrap().dev();

    let ns = Netns::new();
    let g = Ganesha::start(&ns, &f.mnt, &f.scratch.dir.join("ganesha"));
    let ganesha = std::fs::read_to_string(g.dir.join("ganesha.pid")).unwrap_or_default();
    let mut v3 = Client::connect(&ns, 3, 1000, 1000);
    let mut v4 = Client::connect(&ns, 4, 1000, 1000);
    v3.ok("open 0 /u/keep3");
    v4.ok("open 0 /u/keep4");
    assert!(v3.ok("read 0 100").ends_with("v3 data"));
    assert!(v4.ok("read 0 100").ends_with("v4 data"));

    // A crash of the serving process.
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    pid = next_pid(&f, Some(pid));
    works_on(&f, &mut v3, &mut v4, "killed");
    assert_exact(&f.state, f.backing(), "after the kill");

    // An upgrade in place.
    let out = Command::new(BIN).arg("--state-dir").arg(&f.state).arg("restart").output().unwrap();
    assert!(out.status.success(), "restart: {}\n{}", String::from_utf8_lossy(&out.stderr), f.log_text());
    assert_ne!(serving_pid(&f), Some(pid), "another process serves");
    works_on(&f, &mut v3, &mut v4, "restarted");

    assert_eq!(std::fs::metadata(&f.mnt).unwrap().dev(), dev, "the mount kept its device number");
    assert_eq!(
        std::fs::read_to_string(g.dir.join("ganesha.pid")).unwrap_or_default(),
        ganesha,
        "ganesha was never restarted"
    );
    drop(v3);
    drop(v4);
    assert_exact(&f.state, f.backing(), "after the kill and the restart");
}
