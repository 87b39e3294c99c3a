//! A parallel walk of the backings that counts usage per subject exactly as the ledger charges
//! it: every inode once (hard links by inode number), `st_blocks * 512` bytes, its owner uid and
//! the project in its tag (an untagged inode takes its directory's project). With
//! `Mode::Tag` (first mount) every untagged inode is tagged on the way.
//!
//! Directories travel through the work queue as file handles, never as open descriptors, so a
//! tree of any width stays within the open-file limit.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;
use std::os::fd::AsFd;
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

#[derive(Clone, Debug, Default)]
pub struct ScanResult {
    pub usage: BTreeMap<Subject, Usage>,
    pub inodes: u64,
    pub tagged: u64,
    /// Entries that could not be read (each is logged); a scan with errors is not exact.
    pub errors: u64,
    pub duration: Duration,
}

struct Job {
    backing: usize,
    handle: Handle,
    project: u32,
}

struct Queue {
    jobs: Vec<Job>,
    active: usize,
}

struct Shared<'a> {
    backings: &'a [Backing],
    mode: Mode,
    queue: Mutex<Queue>,
    wake: Condvar,
    links: Mutex<HashSet<(usize, u64)>>,
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
    let backing = s.backings.iter().find(|b| b.index.0 as usize == job.backing).expect("job of a scanned backing");
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
                // A tag that did not fit in the inode takes an xattr block: count what is there now.
                charge_into(usage, Charge::of(&after, project));
                s.inodes.fetch_add(1, Ordering::Relaxed);
                return is_dir.then(|| subdir(s, parent, dir, name, project)).flatten();
            }
            Ok(Err(e)) | Err(e) => s.error("cannot tag an inode", e),
        }
    }
    charge_into(usage, Charge::of(&st, project));
    s.inodes.fetch_add(1, Ordering::Relaxed);
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

/// Walks every backing with `threads` workers and returns the usage it counted.
pub fn scan(backings: &[Backing], mode: Mode, threads: usize) -> Result<ScanResult, String> {
    let started = Instant::now();
    let mut jobs = Vec::new();
    let mut usage = BTreeMap::new();
    for b in backings {
        let root = b.root_fd();
        let st = sys::stat_fd(root).map_err(|e| format!("stat backing {}: {e}", b.path.display()))?;
        let mut t = tag::read_fd(root).map_err(|e| format!("read the tag of backing {}: {e}", b.path.display()))?;
        if t.is_none() && mode == Mode::Tag {
            let fresh = Tag { project: 0, birth: 0 };
            tag::write_fd(root, fresh).map_err(|e| format!("tag backing {}: {e}", b.path.display()))?;
            t = Some(fresh);
        }
        let project = t.map_or(0, |t| t.project);
        let st = if mode == Mode::Tag { sys::stat_fd(root).unwrap_or(st) } else { st };
        charge_into(&mut usage, Charge::of(&st, project));
        let handle = sys::fd_to_handle(root).map_err(|e| format!("handle of backing {}: {e}", b.path.display()))?;
        jobs.push(Job { backing: b.index.0 as usize, handle, project });
    }
    let shared = Shared {
        backings,
        mode,
        queue: Mutex::new(Queue { jobs, active: 0 }),
        wake: Condvar::new(),
        links: Mutex::new(HashSet::new()),
        inodes: AtomicU64::new(backings.len() as u64),
        tagged: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    };
    let progress = Mutex::new(Instant::now());
    let partials: Vec<BTreeMap<Subject, Usage>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = BTreeMap::new();
                    while let Some(job) = shared.next() {
                        let subdirs = scan_dir(&shared, &job, &mut mine);
                        shared.done(subdirs);
                        let mut last = progress.lock();
                        if last.elapsed() > Duration::from_secs(5) {
                            *last = Instant::now();
                            tracing::info!(inodes = shared.inodes.load(Ordering::Relaxed), "scan in progress");
                        }
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
) -> Result<(ScanResult, crate::quota::BackingUsage), String> {
    let started = Instant::now();
    let mut total = ScanResult { usage: BTreeMap::new(), inodes: 0, tagged: 0, errors: 0, duration: Duration::ZERO };
    let mut per_backing = BTreeMap::new();
    for b in backings {
        let r = scan(std::slice::from_ref(b), mode, threads)?;
        for (s, u) in &r.usage {
            let e = total.usage.entry(*s).or_default();
            e.bytes += u.bytes;
            e.inodes += u.inodes;
            if b.index.0 != 0 {
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
