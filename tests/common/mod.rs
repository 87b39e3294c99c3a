//! Shared harness for the integration tests: a fresh ext4 loop image as the backing, the real
//! `quotafs mount` daemon over it, helpers to act as tenants, and a guard that unmounts
//! everything and frees the loop device even when a test fails or panics.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_quotafs");
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Is something mounted exactly at `path`? (Reads /proc/self/mountinfo.)
pub fn mounted_at(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4) == Some(&want.as_str()) {
            let dash = f.iter().position(|x| *x == "-")?;
            Some(f.get(dash + 1)?.to_string())
        } else {
            None
        }
    })
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory with an ext4 image loop-mounted at `backing`.
pub struct Scratch {
    pub dir: PathBuf,
    pub backing: PathBuf,
    mounted: bool,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Self::with_size(name, "256M")
    }

    pub fn with_size(name: &str, size: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "quotafs-test-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("backing")).unwrap();
        std::fs::create_dir_all(dir.join("mnt")).unwrap();
        let img = dir.join("backing.img");
        run_ok(Command::new("truncate").arg("-s").arg(size).arg(&img));
        run_ok(Command::new("mkfs.ext4").args(["-q", "-F", "-N", "300000"]).arg(&img));
        let mut s = Scratch { backing: dir.join("backing"), dir, mounted: false };
        run_ok(Command::new("mount").arg("-o").arg("loop").arg(&img).arg(&s.backing));
        s.mounted = true;
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            for _ in 0..50 {
                if run(Command::new("umount").arg(&self.backing)).status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if mounted_at(&self.backing).is_some() {
                let _ = run(Command::new("umount").arg("-l").arg(&self.backing));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running quotafs mount over a fresh ext4 image.
pub struct Fixture {
    pub mnt: PathBuf,
    pub state: PathBuf,
    daemon: Option<Child>,
    pub log: PathBuf,
    // Declared last: dropped after the daemon is gone.
    pub scratch: Scratch,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        Self::with_args(name, &[])
    }

    pub fn with_args(name: &str, args: &[&str]) -> Fixture {
        let scratch = Scratch::new(name);
        let mut f = Fixture {
            mnt: scratch.dir.join("mnt"),
            state: scratch.dir.join("state"),
            log: scratch.dir.join("daemon.log"),
            daemon: None,
            scratch,
        };
        f.start(args);
        f
    }

    pub fn backing(&self) -> &Path {
        &self.scratch.backing
    }

    /// A path inside the mount.
    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The same path on the backing ext4.
    pub fn b(&self, rel: &str) -> PathBuf {
        self.scratch.backing.join(rel)
    }

    pub fn start(&mut self, args: &[&str]) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(BIN)
            .arg("mount")
            .arg("--backing")
            .arg(&self.scratch.backing)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn quotafs");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mounted_at(&self.mnt).as_deref() != Some("fuse") {
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("quotafs exited before mounting ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "quotafs did not mount in time:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// Unmounts from outside (`umount MOUNTPOINT`) and returns the daemon's exit status.
    pub fn unmount(&mut self) -> ExitStatus {
        run_ok(Command::new("umount").arg(&self.mnt));
        self.wait_exit()
    }

    pub fn signal(&self, sig: &str) {
        run_ok(Command::new("kill").arg(format!("-{sig}")).arg(self.daemon_pid().to_string()));
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.daemon.take().expect("daemon running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("quotafs did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `script` with `sh -c` in the mount root as uid/gid with no supplementary groups.
    pub fn sh_as(&self, uid: u32, gid: u32, script: &str) -> Output {
        self.sh_groups(uid, gid, &[], script)
    }

    /// Runs `script` as uid/gid with the given supplementary groups.
    pub fn sh_groups(&self, uid: u32, gid: u32, groups: &[u32], script: &str) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
        if groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            let g: Vec<String> = groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", g.join(",")));
        }
        cmd.args(["sh", "-c", script]).current_dir(&self.mnt);
        run(&mut cmd)
    }

    /// `sh_as` that must succeed; returns stdout.
    pub fn sh_ok(&self, uid: u32, gid: u32, script: &str) -> String {
        let out = self.sh_as(uid, gid, script);
        assert!(
            out.status.success(),
            "as {uid}:{gid}: `{script}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a script as root in the mount root; must succeed.
    pub fn root(&self, script: &str) -> String {
        self.sh_ok(0, 0, script)
    }

    /// A home directory owned by uid:gid, mode 0755.
    pub fn home(&self, name: &str, uid: u32, gid: u32) -> PathBuf {
        let p = self.m(name);
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        p
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if mounted_at(&self.mnt).is_some() && !run(Command::new("umount").arg(&self.mnt)).status.success() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        if let Some(mut child) = self.daemon.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).ino()
}

pub fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}
