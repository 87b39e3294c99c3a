//! `quotafs restart` upgrades a `--supervise` mount in place (issue #19): the mount is started
//! from a binary at some path, that path is then replaced by a new build (rename over it, as a
//! package manager does: the running processes' binary is now a deleted file), and `quotafs
//! restart` replaces the serving process with the binary installed at that path, five times,
//! while two tenants' shells create, write, read, list and unlink in a loop and stop at their
//! first error, and a third tenant holds a file open read-write across every restart, writing
//! and reading it after each. The mount never goes away, no tenant sees an error, `check` is
//! exact after every round and at the end, and SIGTERM to the supervisor still ends everything
//! cleanly.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::holder::Holder;
use common::{BIN, Fixture, assert_exact, mounted_at};
use takeover::{next_pid, serving_pid};

/// A directory for the "installed" binary, removed at the end (it holds a 100 MB copy).
struct Installed(PathBuf);

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs a new build at `path` the way a package manager does: a new file, renamed over.
fn upgrade(path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(BIN, &tmp).expect("copy the new build");
    std::fs::rename(&tmp, path).expect("install it");
}

#[test]
fn restart_runs_the_installed_binary_under_a_tenant_workload() {
    let dir = Installed(std::env::temp_dir().join(format!("quotafs-test-installed-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let installed = dir.0.join("quotafs");
    // A link to the build (no copy for the first start), or a copy across file systems.
    if std::fs::hard_link(BIN, &installed).is_err() {
        std::fs::copy(BIN, &installed).expect("copy the build");
    }

    let mut f = Fixture::with_bin("restart", &installed, &["--supervise", "--transport", "classic"]);
    let homes = [f.home("alice", 1001, 1001), f.home("bob", 1002, 1002)];
    f.home("carol", 1003, 1003);
    let supervisor = f.daemon_pid();
    let mut pid = next_pid(&f, None);
    // Each tenant works on until told to stop, and stops at its first error (printed).
    let tenants: Vec<_> = homes
        .iter()
        .zip([1001, 1002])
        .map(|(home, uid)| {
            Command::new("setpriv")
                .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
                .args(["sh", "-c"])
                .arg(
                    "cd \"$0\" || exit 1; mkdir -p d || exit 1; i=0; while [ ! -e stop ]; do i=$((i+1)); \
                     echo $i > d/f$i || exit 1; [ \"$(cat d/f$i)\" = $i ] || { echo \"read back d/f$i\" >&2; exit 1; }; \
                     ls d > /dev/null || exit 1; \
                     if [ $((i % 3)) = 0 ]; then rm d/f$((i-1)) || exit 1; fi; done; echo $i",
                )
                .arg(home)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("tenant shell")
        })
        .collect();
    let mut carol = Holder::spawn(1003, 1003);
    assert_eq!(carol.cmd(&format!("open c {} rdwr", f.m("carol/held").display())), "err ENOENT");
    f.sh_ok(1003, 1003, &format!("echo start > {}", f.m("carol/held").display()));
    assert_eq!(carol.cmd(&format!("open c {} rdwr", f.m("carol/held").display())), "ok");
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        upgrade(&installed);
        let exe = std::fs::read_link(format!("/proc/{supervisor}/exe")).unwrap();
        assert!(exe.to_string_lossy().ends_with("(deleted)"), "round {round}: the upgrade replaced the file: {exe:?}");
        let out = Command::new(BIN).arg("--state-dir").arg(&f.state).arg("restart").output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: quotafs restart: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            f.log_text()
        );
        eprintln!("round {round}: {}", String::from_utf8_lossy(&out.stdout).trim());
        let new = serving_pid(&f).expect("a serving process answers once restart returns");
        assert_ne!(new, pid, "round {round}: another process serves");
        // It runs what is installed now, not the deleted file.
        let running = std::fs::metadata(format!("/proc/{new}/exe")).unwrap();
        assert_eq!(running.ino(), std::fs::metadata(&installed).unwrap().ino(), "round {round}: the new binary runs");
        pid = new;
        // Carol's file, opened before every restart so far, writes and reads on.
        let w = carol.cmd(&format!("write c {} round{round}", round * 6));
        assert_eq!(w, "ok 6", "round {round}: held write\n{}", f.log_text());
        let read = carol.cmd("read c");
        assert!(read.starts_with("data "), "round {round}: held read: {read}");
        assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"), "round {round}: the mount stayed");
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "round {round}: {out}");
    }
    for (home, tenant) in homes.iter().zip(tenants) {
        std::fs::write(home.join("stop"), b"").unwrap();
        let out = tenant.wait_with_output().expect("tenant shell ends");
        assert!(
            out.status.success(),
            "a tenant saw an error: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            f.log_text()
        );
        eprintln!("tenant iterations: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let held = std::fs::read_to_string(f.b("carol/held")).unwrap();
    assert!(held.contains("round4"), "carol's writes through the held file landed: {held:?}");
    assert_eq!(carol.cmd("close c"), "ok");
    drop(carol);
    assert_eq!(f.daemon_pid(), supervisor, "the supervisor itself never restarted");
    assert!(!f.log_text().contains("the serving process died"), "no restart was a crash:\n{}", f.log_text());
    assert_exact(&f.state, f.backing(), "after the restarts, the tenant stopped");
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
    assert!(mounted_at(&f.mnt).is_none(), "no mount left behind");
    assert_exact(&f.state, f.backing(), "after the supervisor stopped");
}
