//! Shared harness for the integration tests: a fresh ext4 loop image as the backing, the real
//! `quotafs mount` daemon over it, helpers to act as tenants, and a guard that unmounts
//! everything and frees the loop device even when a test fails or panics.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod guards;
pub mod holder;
pub mod nfs;

pub const BIN: &str = env!("CARGO_BIN_EXE_quotafs");
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A tenant process that prints `held` once it holds what its program was told to (a file
/// opened and unlinked, say) and ends when it reads a line: for tests that act meanwhile.
/// Killed when dropped unreleased (a failing test).
pub struct Held(Option<Child>);

impl Held {
    /// Runs `argv` as `uid` (gid the same, no supplementary groups) in `dir`; returns once it
    /// said `held`.
    pub fn spawn(uid: u32, dir: &Path, argv: &[&str]) -> Held {
        use std::io::BufRead;
        let mut child = Command::new("setpriv")
            .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()])
            .args(argv)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the tenant's holder");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let held = Held(Some(child));
        assert_eq!(line.trim(), "held", "the tenant's holder did not get hold of its file");
        held
    }

    /// Tells it to let go, and waits for it to end well.
    pub fn release(mut self) {
        use std::io::Write;
        let mut child = self.0.take().unwrap();
        child.stdin.as_mut().unwrap().write_all(b"done\n").unwrap();
        assert!(child.wait().unwrap().success(), "the tenant's holder failed");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The quotafs mount points at or beneath `dir` (from /proc/self/mountinfo, deepest first).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.iter().position(|x| *x == "-").and_then(|d| f.get(d + 1)) == Some(&"fuse.quotafs"))
        .filter_map(|f| f.get(4).map(|m| m.to_string()))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

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
        // Tenants (other uids) must reach the mount whatever the runner's umask.
        for d in [dir.clone(), dir.join("mnt")] {
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
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
    /// The backing directory served: the image's root, or a directory inside it.
    pub served: PathBuf,
    /// Extra images for routes, and the `--route` flags every start passes.
    pub routed: Vec<Scratch>,
    pub route_args: Vec<String>,
    pub state: PathBuf,
    /// The quotafs binary the daemon is started from (`BIN` unless `with_bin`).
    pub bin: PathBuf,
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
        Self::serving(name, None, args)
    }

    /// A fixture not started yet: no route, serving `served` (the image's backing or a
    /// directory in it) with the binary `bin`.
    fn unstarted(scratch: Scratch, served: Option<PathBuf>, bin: &Path) -> Fixture {
        Fixture {
            routed: Vec::new(),
            route_args: Vec::new(),
            served: served.unwrap_or_else(|| scratch.backing.clone()),
            mnt: scratch.dir.join("mnt"),
            state: scratch.dir.join("state"),
            log: scratch.dir.join("daemon.log"),
            bin: bin.to_path_buf(),
            daemon: None,
            scratch,
        }
    }

    /// A fixture whose daemon runs the binary at `bin` (a copy or link of `BIN`).
    pub fn with_bin(name: &str, bin: &Path, args: &[&str]) -> Fixture {
        let mut f = Self::unstarted(Scratch::new(name), None, bin);
        f.start(args);
        f
    }

    /// A fixture whose backing is the directory `sub` inside the image (created 0755), so
    /// the image holds files outside the backing root.
    pub fn serving(name: &str, sub: Option<&str>, args: &[&str]) -> Fixture {
        let scratch = Scratch::new(name);
        let served = sub.map(|sub| {
            let p = scratch.backing.join(sub);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            p
        });
        let mut f = Self::unstarted(scratch, served, Path::new(BIN));
        f.start(args);
        f
    }

    /// A fixture with one route per pattern, each to an ext4 image of its own (`routed[i]`).
    pub fn with_routes(name: &str, patterns: &[&str], args: &[&str]) -> Fixture {
        let mut f = Self::unstarted(Scratch::new(name), None, Path::new(BIN));
        for (i, p) in patterns.iter().enumerate() {
            let r = Scratch::new(&format!("{name}-route{i}"));
            f.route_args.push("--route".into());
            f.route_args.push(format!("{p}={}", r.backing.display()));
            f.routed.push(r);
        }
        f.start(args);
        f
    }

    /// Every backing served, main first.
    pub fn all_backings(&self) -> Vec<PathBuf> {
        let mut v = vec![self.served.clone()];
        v.extend(self.routed.iter().map(|r| r.backing.clone()));
        v
    }

    pub fn backing(&self) -> &Path {
        &self.served
    }

    /// A path inside the mount.
    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The same path on the backing ext4.
    pub fn b(&self, rel: &str) -> PathBuf {
        self.served.join(rel)
    }

    pub fn start(&mut self, args: &[&str]) {
        self.start_with_env(args, &[]);
    }

    pub fn start_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        self.spawn(args, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mounted_at(&self.mnt).as_deref() != Some("fuse.quotafs") {
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

    /// kill -9 of the daemon, then a lazy unmount of its dead mount (what an operator does
    /// after a crash before restarting it).
    pub fn kill9(&mut self) {
        let mut child = self.daemon.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
        if mounted_at(&self.mnt).is_some() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
    }

    /// Starts the daemon without waiting for the mount (to kill it during recovery).
    pub fn start_nowait(&mut self, args: &[&str]) {
        self.spawn(args, &[]);
    }

    /// `start_nowait` with extra environment variables (failpoints).
    pub fn start_nowait_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        self.spawn(args, env);
    }

    fn spawn(&mut self, args: &[&str], env: &[(&str, &str)]) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new().append(true).create(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            // Its own process group, which a supervised daemon's serving processes share:
            // Drop ends them all.
            .process_group(0)
            .arg("mount")
            .arg("--backing")
            .arg(&self.served)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.route_args)
            .args(args)
            .arg(&self.mnt)
            .env("QUOTAFS_LOG", std::env::var("QUOTAFS_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn quotafs");
        self.daemon = Some(child);
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

    /// Runs `quotafs --state-dir STATE ARGS...` (a command that must succeed); its stdout.
    pub fn quotafs(&self, args: &[&str]) -> String {
        run_ok(Command::new(BIN).arg("--state-dir").arg(&self.state).args(args))
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
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!("quotafs-failed-{}.log", std::process::id()));
            if std::fs::copy(&self.log, &keep).is_ok() {
                eprintln!("daemon log kept at {}", keep.display());
            }
        }
        // A failed test may leave tenants working in the mount (a shell loop never told to
        // stop): they would keep a lazily unmounted connection, and its daemon, alive.
        kill_processes_in(&self.scratch.dir);
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
            // Under --supervise the serving process is the daemon's child, in its process group.
            let _ = run(Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]));
        }
        // A daemon still starting when the test ended may have mounted after the check above:
        // killed, it leaves a dead mount behind.
        if mounted_at(&self.mnt).is_some() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        // Export connections (`--exports-dir` in the scratch dir) a killed daemon left.
        for m in mounts_under(&self.scratch.dir) {
            let _ = run(Command::new("umount").arg("-l").arg(&m));
        }
    }
}

/// Kills (SIGKILL) every process whose working directory lies under `dir`.
fn kill_processes_in(dir: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid as u32 == std::process::id() {
            continue;
        }
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let _ = run(Command::new("kill").arg("-9").arg(pid.to_string()));
        }
    }
}

/// The readahead window of the mount holding `p`, in KiB, as an operator reads it:
/// `/sys/class/bdi/<major>:<minor>/read_ahead_kb` of the mount's device.
pub fn read_ahead_kb(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(p).unwrap().dev();
    let path = format!("/sys/class/bdi/{}:{}/read_ahead_kb", rustix::fs::major(dev), rustix::fs::minor(dev));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().parse().unwrap()
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

/// Usage per (kind, id): (bytes, inodes).
pub type UsageMap = std::collections::BTreeMap<(String, u32), (u64, u64)>;

/// An independent recount of a backing, written for the tests (it shares no code with
/// quotafs): every inode once, st_blocks * 512 bytes, charged to its owner and to the project
/// in its `trusted.quotafs` tag (version 1 | project u32 LE | birth u64 LE), an untagged inode
/// to its directory's project. The daemon's own directory at the backing root
/// (`.quotafs-journal`, the ledger's records) is not the tenants' and is not counted.
pub fn recount(backing: &Path) -> UsageMap {
    fn project_of(p: &Path, inherited: u32) -> u32 {
        let mut buf = [0u8; 64];
        match rustix::fs::lgetxattr(p, "trusted.quotafs", &mut buf[..]) {
            Ok(13) if buf[0] == 1 => u32::from_le_bytes(buf[1..5].try_into().unwrap()),
            _ => inherited,
        }
    }
    fn add(map: &mut UsageMap, md: &std::fs::Metadata, project: u32) {
        for key in [("user".to_string(), md.uid()), ("project".to_string(), project)] {
            let e = map.entry(key).or_default();
            e.0 += md.blocks() * 512;
            e.1 += 1;
        }
    }
    fn walk(
        dir: &Path,
        root: bool,
        project: u32,
        dev: u64,
        seen: &mut std::collections::HashSet<u64>,
        map: &mut UsageMap,
    ) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if root && path.file_name() == Some(std::ffi::OsStr::new(".quotafs-journal")) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
            if md.dev() != dev || !seen.insert(md.ino()) {
                continue;
            }
            let p = project_of(&path, project);
            add(map, &md, p);
            if md.is_dir() {
                walk(&path, false, p, dev, seen, map);
            }
        }
    }
    let mut map = UsageMap::new();
    let md = std::fs::symlink_metadata(backing).unwrap();
    let root_project = project_of(backing, 0);
    add(&mut map, &md, root_project);
    let mut seen = std::collections::HashSet::new();
    walk(backing, true, root_project, md.dev(), &mut seen, &mut map);
    map
}

/// `quotafs report --json` of a state dir, as a UsageMap.
pub fn report(state: &Path) -> UsageMap {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(state).args(["report", "--json"]));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("report --json: {e}: {out}"));
    rows.iter()
        .map(|r| {
            (
                (r["kind"].as_str().unwrap().to_string(), r["id"].as_u64().unwrap() as u32),
                (r["bytes_used"].as_u64().unwrap(), r["inodes_used"].as_u64().unwrap()),
            )
        })
        .collect()
}

/// The recount of several backings, summed.
pub fn recount_all(backings: &[PathBuf]) -> UsageMap {
    let mut total = UsageMap::new();
    for b in backings {
        for (k, (bytes, inodes)) in recount(b) {
            let e = total.entry(k).or_default();
            e.0 += bytes;
            e.1 += inodes;
        }
    }
    total
}

/// Asserts the ledger equals the independent recount, showing the differences. A running
/// daemon first checkpoints (syncfs, then it charges what writeback allocated since the
/// changes were settled), so both sides see the final allocation.
pub fn assert_exact(state: &Path, backing: &Path, when: &str) {
    assert_exact_all(state, &[backing.to_path_buf()], when);
}

/// `assert_exact` over several backings (routes): the recount is their sum.
pub fn assert_exact_all(state: &Path, backings: &[PathBuf], when: &str) {
    let _ = run(Command::new(BIN).arg("--state-dir").arg(state).arg("checkpoint"));
    let (ledger, truth) = (report(state), recount_all(backings));
    if ledger != truth {
        let mut diff = String::new();
        for k in ledger.keys().chain(truth.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (l, t) = (ledger.get(k), truth.get(k));
            if l != t {
                diff.push_str(&format!("  {k:?}: ledger {l:?}, recount {t:?}\n"));
            }
        }
        panic!("{when}: ledger differs from the recount:\n{diff}");
    }
}

/// `assert_exact`, once the kernel's pending RELEASEs have arrived: a close returns before
/// its RELEASE reaches the daemon (FUSE sends it in the background, behind any others queued),
/// and until then the ledger rightly charges a removed file as still open, which a recount of
/// the backing cannot see. Waits up to 30 s for the two to agree, then fails with the diff.
pub fn assert_exact_settled(state: &Path, backing: &Path, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if report(state) == recount(backing) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_exact(state, backing, when);
}

/// A small deterministic PRNG (xorshift64*), so failures replay from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn seed() -> u64 {
    std::env::var("QUOTAFS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}
