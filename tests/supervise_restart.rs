//! `quotafs restart` upgrades a `--supervise` mount in place (issue #19): the mount is started
//! from a binary at some path, that path is then replaced by a new build (rename over it, as a
//! package manager does: the running processes' binary is now a deleted file), and `quotafs
//! restart` replaces the serving process with the binary installed at that path, five times,
//! while a tenant's shell creates, writes, reads, lists and unlinks in a loop and stops at its
//! first error. The mount never goes away, the tenant sees no error, `check` is exact after
//! every round and at the end, and SIGTERM to the supervisor still ends everything cleanly.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Fixture, assert_exact, mounted_at};

fn serving_pid(f: &Fixture) -> Option<u32> {
    let out = Command::new(BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

/// The pid of the first serving process once it has answered INIT (within 30 s).
fn first_pid(f: &Fixture) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = serving_pid(f)
            && f.state.join("fuse-init").exists()
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no serving process:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    let home = f.home("alice", 1001, 1001);
    let supervisor = f.daemon_pid();
    let mut pid = first_pid(&f);
    // The tenant works on until told to stop, and stops at its first error (printed).
    let tenant = Command::new("setpriv")
        .args(["--reuid=1001", "--regid=1001", "--clear-groups", "sh", "-c"])
        .arg(
            "cd \"$0\" || exit 1; mkdir -p d || exit 1; i=0; while [ ! -e stop ]; do i=$((i+1)); \
             echo $i > d/f$i || exit 1; [ \"$(cat d/f$i)\" = $i ] || { echo \"read back d/f$i\" >&2; exit 1; }; \
             ls d > /dev/null || exit 1; \
             if [ $((i % 3)) = 0 ]; then rm d/f$((i-1)) || exit 1; fi; done; echo $i",
        )
        .arg(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenant shell");
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
        assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"), "round {round}: the mount stayed");
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "round {round}: {out}");
    }
    std::fs::write(home.join("stop"), b"").unwrap();
    let out = tenant.wait_with_output().expect("tenant shell ends");
    assert!(
        out.status.success(),
        "the tenant saw an error: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.log_text()
    );
    eprintln!("tenant iterations: {}", String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(f.daemon_pid(), supervisor, "the supervisor itself never restarted");
    assert!(!f.log_text().contains("the serving process died"), "no restart was a crash:\n{}", f.log_text());
    assert_exact(&f.state, f.backing(), "after the restarts, the tenant stopped");
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
    assert!(mounted_at(&f.mnt).is_none(), "no mount left behind");
    assert_exact(&f.state, f.backing(), "after the supervisor stopped");
}
