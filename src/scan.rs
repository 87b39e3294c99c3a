//! A parallel walk of the backings that counts usage per subject exactly as the ledger charges
//! it: every inode once (hard links by inode number), `st_blocks * 512` bytes, its owner uid and
//! the project in its tag (an untagged inode takes its directory's project). With
//! `Mode::Tag` (first mount) every untagged inode is tagged on the way.
//!
//! Directories travel through the work queue as file handles, never as open descriptors, so a
//! tree of any width stays within the open-file limit.
//!
//! Every long walk of a tree (this scan, and `project assign`'s re-tagging) publishes a
//! [`Progress`] while it runs; [`running`] lists them, for the terminal, the daemon's log and
//! `quotafs status`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backing::{Backing, Errno, Handle, sys};
use crate::quota::{Charge, Subject, Usage, charge_into};
use crate::tag::{self, Tag};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Count only.
    Count,
    /// Count, and tag every untagged inode with its directory's project and birth epoch 0.
    Tag,
}

/// Why a scan could not start: the root of backing `path` could not be read (`what`: stat, read
/// its tag, tag it, take its handle). Entries below the root that cannot be read do not stop a
/// scan; they are counted in `ScanResult::errors`.
#[derive(Debug)]
pub struct ScanError {
    pub what: &'static str,
    pub path: std::path::PathBuf,
    pub errno: Errno,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} backing {}: {}", self.what, self.path.display(), self.errno)
    }
}

impl std::error::Error for ScanError {}

/// For callers that only print the message (the CLI).
impl From<ScanError> for String {
    fn from(e: ScanError) -> String {
        e.to_string()
    }
}

#[derive(Clone, Debug, Default)]
pub struct ScanResult {
    pub usage: BTreeMap<Subject, Usage>,
    pub inodes: u64,
    pub tagged: u64,
    /// Entries that could not be read (each is logged); a scan with errors is not exact.
    pub errors: u64,
    pub duration: Duration,
}

/// How far a walk of a tree has got, readable while it runs. Counters only grow.
#[derive(Debug)]
pub struct Progress {
    task: &'static str,
    started: Instant,
    inodes: AtomicU64,
    tagged: AtomicU64,
    bytes: AtomicU64,
    dirs_queued: AtomicU64,
    dirs_done: AtomicU64,
}

/// A reading of a [`Progress`] (what `status --json` shows under `running`/`starting`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProgressReading {
    /// What walks: `count and tag` (first mount, a new backing), `count` (a recount),
    /// `check`, `check --repair`, `project assign (survey)` then `project assign`.
    pub task: String,
    /// Inodes visited so far.
    pub inodes: u64,
    /// Of those, inodes whose tag was written (tagged, or re-tagged by `project assign`).
    pub tagged: u64,
    /// Bytes charged for the inodes visited (`st_blocks * 512`; 0 where the walk does not count).
    pub bytes: u64,
    /// Directories found and not listed yet.
    pub dirs_queued: u64,
    /// Directories listed.
    pub dirs_done: u64,
    pub secs: u64,
}

impl Progress {
    /// A walk named `task`, listed by [`running`] until the returned guard is dropped.
    pub fn start(task: &'static str) -> Running {
        let p = Arc::new(Progress {
            task,
            started: Instant::now(),
            inodes: AtomicU64::new(0),
            tagged: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dirs_queued: AtomicU64::new(0),
            dirs_done: AtomicU64::new(0),
        });
        RUNNING.lock().push(Arc::clone(&p));
        Running(p)
    }

    pub fn inode(&self, bytes: u64) {
        self.inodes.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn tagged(&self) {
        self.tagged.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` directories found, to be listed.
    pub fn dirs_found(&self, n: u64) {
        self.dirs_queued.fetch_add(n, Ordering::Relaxed);
    }

    /// One directory listed (or skipped: gone, unreadable).
    pub fn dir_done(&self) {
        self.dirs_done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> ProgressReading {
        let done = self.dirs_done.load(Ordering::Relaxed);
        ProgressReading {
            task: self.task.to_string(),
            inodes: self.inodes.load(Ordering::Relaxed),
            tagged: self.tagged.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dirs_queued: self.dirs_queued.load(Ordering::Relaxed).saturating_sub(done),
            dirs_done: done,
            secs: self.started.elapsed().as_secs(),
        }
    }
}

impl ProgressReading {
    /// One line for a terminal or a log: `count and tag: 1,234,567 inodes, 45.0G, 12,345 dirs queued, 31 s`.
    pub fn line(&self) -> String {
        let mut line = format!("{}: {} inodes", self.task, grouped(self.inodes));
        if self.tagged > 0 {
            let verb = if self.task == ASSIGN_TASK { "re-tagged" } else { "tagged" };
            line += &format!(" ({} {verb})", grouped(self.tagged));
        }
        if self.bytes > 0 {
            line += &format!(", {}", human_bytes(self.bytes));
        }
        line + &format!(", {} dirs queued, {} s", grouped(self.dirs_queued), self.secs)
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// The walks running in this process.
static RUNNING: Mutex<Vec<Arc<Progress>>> = Mutex::new(Vec::new());

/// A registered [`Progress`]; unlisted when dropped.
pub struct Running(Arc<Progress>);

impl std::ops::Deref for Running {
    type Target = Progress;
    fn deref(&self) -> &Progress {
        &self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.lock().retain(|p| !Arc::ptr_eq(p, &self.0));
    }
}

/// Readings of every walk running in this process, oldest first.
pub fn running() -> Vec<ProgressReading> {
    RUNNING.lock().iter().map(|p| p.read()).collect()
}

struct Job {
    backing: crate::ids::BackingIndex,
    handle: Handle,
    project: u32,
}

struct Queue {
    jobs: Vec<Job>,
    active: usize,
}

struct Shared<'a> {
    backings: &'a [Backing],
    progress: &'a Progress,
    mode: Mode,
    queue: Mutex<Queue>,
    wake: Condvar,
    links: Mutex<HashSet<(crate::ids::BackingIndex, u64)>>,
    inodes: AtomicU64,
    tagged: AtomicU64,
    errors: AtomicU64,
}

impl Shared<'_> {
    fn next(&self) -> Option<Job> {
        let mut q = self.queue.lock();
        loop {
            if let Some(job) = q.jobs.pop() {
                q.active += 1;
                return Some(job);
            }
            if q.active == 0 {
                self.wake.notify_all();
                return None;
            }
            self.wake.wait(&mut q);
        }
    }

    fn done(&self, new: Vec<Job>) {
        self.progress.dir_done();
        self.progress.dirs_found(new.len() as u64);
        let mut q = self.queue.lock();
        q.active -= 1;
        let n = new.len();
        q.jobs.extend(new);
        if n > 0 || q.active == 0 {
            self.wake.notify_all();
        }
    }

    fn error(&self, what: &str, e: Errno) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "scan: {what}");
    }
}

/// Counts one directory's entries into `usage`; returns its subdirectories as jobs.
fn scan_dir(s: &Shared<'_>, job: &Job, usage: &mut BTreeMap<Subject, Usage>) -> Vec<Job> {
    let backing = s.backings.iter().find(|b| b.index == job.backing).expect("job of a scanned backing");
    crate::failpoint::SCAN_DIR.hit();
    let dir = match backing.open_handle(&job.handle, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno(libc::ESTALE | libc::ENOENT)) => return Vec::new(), // removed meanwhile
        Err(e) => {
            s.error("cannot open a directory", e);
            return Vec::new();
        }
    };
    let mut subdirs = Vec::new();
    let dir_ino = match sys::stat_fd(dir.as_fd()) {
        Ok(st) => st.st_ino,
        Err(e) => {
            s.error("cannot stat a directory", e);
            return Vec::new();
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let batch = match sys::read_dir(dir.as_fd(), &mut buf) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => b,
            Err(e) => {
                s.error("cannot read a directory", e);
                break;
            }
        };
        for e in batch {
            let name: &CStr = &e.name;
            if name == c"." || name == c".." || backing.is_private(dir_ino, name) {
                continue;
            }
            if let Some(job) = scan_entry(s, job, backing, dir.as_fd(), name, usage) {
                subdirs.push(job);
            }
        }
    }
    subdirs
}

fn scan_entry(
    s: &Shared<'_>,
    parent: &Job,
    backing: &Backing,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &CStr,
    usage: &mut BTreeMap<Subject, Usage>,
) -> Option<Job> {
    let st = match sys::stat_at(dir, name) {
        Ok(st) => st,
        Err(Errno(libc::ENOENT)) => return None,
        Err(e) => {
            s.error("cannot stat an entry", e);
            return None;
        }
    };
    if st.st_dev != backing.dev {
        return None; // a mount point inside the backing is not served, not counted
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if !is_dir && st.st_nlink > 1 && !s.links.lock().insert((parent.backing, st.st_ino)) {
        return None; // another link of an inode already counted
    }
    let tag = match tag::read_at(dir, name) {
        Ok(t) => t,
        Err(e) => {
            s.error("cannot read a tag", e);
            None
        }
    };
    let project = tag.map_or(parent.project, |t| t.project);
    if tag.is_none() && s.mode == Mode::Tag {
        let tagged = sys::open_entry(dir, name)
            .and_then(|fd| tag::write_fd(fd.as_fd(), Tag { project, birth: 0 }).map(|()| sys::stat_fd(fd.as_fd())));
        match tagged {
            Ok(Ok(after)) => {
                s.tagged.fetch_add(1, Ordering::Relaxed);
                s.progress.tagged();
                // A tag that did not fit in the inode takes an xattr block: count what is there now.
                charge_into(usage, Charge::of(&after, project));
                s.inodes.fetch_add(1, Ordering::Relaxed);
                s.progress.inode(after.st_blocks as u64 * 512);
                return is_dir.then(|| subdir(s, parent, dir, name, project)).flatten();
            }
            Ok(Err(e)) | Err(e) => s.error("cannot tag an inode", e),
        }
    }
    charge_into(usage, Charge::of(&st, project));
    s.inodes.fetch_add(1, Ordering::Relaxed);
    s.progress.inode(st.st_blocks as u64 * 512);
    if is_dir { subdir(s, parent, dir, name, project) } else { None }
}

fn subdir(s: &Shared<'_>, parent: &Job, dir: std::os::fd::BorrowedFd<'_>, name: &CStr, project: u32) -> Option<Job> {
    match sys::name_to_handle(dir, name) {
        Ok(handle) => Some(Job { backing: parent.backing, handle, project }),
        Err(e) => {
            s.error("cannot get a directory's handle", e);
            None
        }
    }
}

/// The task name of a scan in `mode`, as [`running`] lists it.
fn task_of(mode: Mode) -> &'static str {
    match mode {
        Mode::Count => "count",
        Mode::Tag => TAG_TASK,
    }
}

/// The name of `project assign`'s re-tagging walk (`passthrough::project`).
pub const ASSIGN_TASK: &str = "project assign";
/// The read-only walk `project assign` makes first, for projects nested in the tree.
pub const ASSIGN_SURVEY_TASK: &str = "project assign (survey)";

/// The task name of a scan that tags (the first mount's count, a new backing's).
pub const TAG_TASK: &str = "count and tag";

/// Walks every backing with `threads` workers and returns the usage it counted.
pub fn scan(backings: &[Backing], mode: Mode, threads: usize) -> Result<ScanResult, ScanError> {
    scan_with(backings, mode, threads, &Progress::start(task_of(mode)))
}

/// `scan`, reporting to `progress`.
fn scan_with(backings: &[Backing], mode: Mode, threads: usize, progress: &Progress) -> Result<ScanResult, ScanError> {
    let started = Instant::now();
    let mut jobs = Vec::new();
    let mut usage = BTreeMap::new();
    for b in backings {
        let root = b.root_fd();
        let fail = |what: &'static str| move |errno| ScanError { what, path: b.path.clone(), errno };
        let st = sys::stat_fd(root).map_err(fail("stat"))?;
        let mut t = tag::read_fd(root).map_err(fail("read the tag of"))?;
        if t.is_none() && mode == Mode::Tag {
            let fresh = Tag { project: 0, birth: 0 };
            tag::write_fd(root, fresh).map_err(fail("tag"))?;
            t = Some(fresh);
        }
        let project = t.map_or(0, |t| t.project);
        let st = if mode == Mode::Tag { sys::stat_fd(root).unwrap_or(st) } else { st };
        charge_into(&mut usage, Charge::of(&st, project));
        progress.inode(st.st_blocks as u64 * 512);
        progress.dirs_found(1);
        let handle = sys::fd_to_handle(root).map_err(fail("take the handle of"))?;
        jobs.push(Job { backing: b.index, handle, project });
    }
    let shared = Shared {
        backings,
        progress,
        mode,
        queue: Mutex::new(Queue { jobs, active: 0 }),
        wake: Condvar::new(),
        links: Mutex::new(HashSet::new()),
        inodes: AtomicU64::new(backings.len() as u64),
        tagged: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    };
    let partials: Vec<BTreeMap<Subject, Usage>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = BTreeMap::new();
                    while let Some(job) = shared.next() {
                        let subdirs = scan_dir(&shared, &job, &mut mine);
                        shared.done(subdirs);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("scan worker panicked")).collect()
    });
    for part in partials {
        for (s, u) in part {
            let e = usage.entry(s).or_default();
            e.bytes += u.bytes;
            e.inodes += u.inodes;
        }
    }
    Ok(ScanResult {
        usage,
        inodes: shared.inodes.load(Ordering::Relaxed),
        tagged: shared.tagged.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        duration: started.elapsed(),
    })
}

/// `scan`, one backing after the other, also returning the share of each routed backing
/// (index ≥ 1) for the ledger's per-backing totals.
pub fn scan_split(
    backings: &[Backing],
    mode: Mode,
    threads: usize,
) -> Result<(ScanResult, crate::quota::BackingUsage), ScanError> {
    scan_split_as(task_of(mode), backings, mode, threads)
}

/// `scan_split`, listed by [`running`] as `task`.
pub fn scan_split_as(
    task: &'static str,
    backings: &[Backing],
    mode: Mode,
    threads: usize,
) -> Result<(ScanResult, crate::quota::BackingUsage), ScanError> {
    let progress = Progress::start(task);
    let started = Instant::now();
    let mut total = ScanResult { usage: BTreeMap::new(), inodes: 0, tagged: 0, errors: 0, duration: Duration::ZERO };
    let mut per_backing = BTreeMap::new();
    for b in backings {
        let r = scan_with(std::slice::from_ref(b), mode, threads, &progress)?;
        for (s, u) in &r.usage {
            let e = total.usage.entry(*s).or_default();
            e.bytes += u.bytes;
            e.inodes += u.inodes;
            if !b.index.is_main() {
                per_backing.insert((b.index, *s), *u);
            }
        }
        total.inodes += r.inodes;
        total.tagged += r.tagged;
        total.errors += r.errors;
    }
    total.duration = started.elapsed();
    Ok((total, per_backing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_groups_digits_and_names_the_walk() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234_567), "1,234,567");
        let r = ProgressReading {
            task: "check".into(),
            inodes: 1_234_567,
            tagged: 0,
            bytes: 45 << 30,
            dirs_queued: 12_345,
            dirs_done: 7,
            secs: 31,
        };
        assert_eq!(r.line(), "check: 1,234,567 inodes, 45.0 GiB, 12,345 dirs queued, 31 s");
        let r = ProgressReading { task: ASSIGN_TASK.into(), inodes: 10, tagged: 4, ..Default::default() };
        assert_eq!(r.line(), "project assign: 10 inodes (4 re-tagged), 0 dirs queued, 0 s");
    }

    #[test]
    fn a_walk_is_listed_while_its_guard_lives() {
        let ours = |r: &ProgressReading| r.task == "count" && r.bytes == 4096 && r.dirs_done == 1;
        {
            let p = Progress::start("count");
            p.inode(4096);
            p.dirs_found(3);
            p.dir_done();
            let r = running().into_iter().find(ours).expect("listed");
            assert_eq!((r.inodes, r.dirs_queued, r.dirs_done), (1, 2, 1));
        }
        assert!(!running().iter().any(ours), "still listed after its guard was dropped");
    }
}
