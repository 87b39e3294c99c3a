//! Recovery at mount: from the newest snapshot `S`, every activity log of epoch `≥ S` and the
//! backings' journal directories of those epochs, re-examining only what the records name
//! (docs/design.md §9.3, §16). On a first mount (no snapshot
//! yet) the backings are counted and tagged by a full parallel scan instead.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::RecoveryReport;
use super::error::LedgerError;
use super::journal::Journal;
use super::store::{Snapshot, Store};
use super::wal::{self, LogError, Record};
use crate::backing::{Backing, Errno, Handle, sys};
use crate::ids::{BackingIndex, InodeRef};
use crate::quota::{Charge, UsageTable};
use crate::scan::{self, Mode};
use crate::tag;

/// Activity logs in `dir`, by epoch.
pub fn list_logs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut logs = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| LedgerError::Io(format!("cannot list state dir {}: {e}", dir.display())))?;
    for e in entries.flatten() {
        if let Some(epoch) = e.file_name().to_str().and_then(wal::epoch_of) {
            logs.push((epoch, e.path()));
        }
    }
    logs.sort();
    Ok(logs)
}

/// Removes the logs of epochs before `epoch` (their content is in the snapshot).
pub fn remove_logs_before(dir: &Path, epoch: u64) {
    let Ok(logs) = list_logs(dir) else { return };
    let mut removed = false;
    for (e, path) in logs {
        if e < epoch {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove an old activity log");
            }
            removed = true;
        }
    }
    if removed {
        let _ = wal::sync_dir(dir);
    }
}

fn scan_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).clamp(2, 16)
}

/// What a logged inode is now.
enum Now {
    Gone,
    Tagged(Charge),
    /// Exists without a tag: its tag write was lost with the crash (possible when the state
    /// dir is on another file system than the backing, docs/design.md §9.9), or someone
    /// removed the tag on the backing.
    Untagged {
        fd: std::os::fd::OwnedFd,
        st: libc::stat,
    },
}

/// The inode `r` now.
fn now(backings: &[Backing], r: InodeRef) -> Result<Now, LedgerError> {
    let Some(b) = backings.get(r.backing.as_usize()) else {
        return Err(LedgerError::Io(format!(
            "the activity log names backing {} but only {} are configured",
            r.backing,
            backings.len()
        )));
    };
    let handle = Handle::ext4(r.ino as u32, r.generation);
    let fd = match b.open_handle(&handle, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno(libc::ESTALE | libc::ENOENT)) => return Ok(Now::Gone),
        Err(e) => {
            return Err(LedgerError::Io(format!("cannot open inode {} on backing {}: {e}", r.ino, b.path.display())));
        }
    };
    let st = sys::stat_fd(fd.as_fd()).map_err(|e| LedgerError::Io(format!("stat inode {}: {e}", r.ino)))?;
    if st.st_nlink == 0 {
        return Ok(Now::Gone);
    }
    Ok(match tag::read_fd(fd.as_fd()).map_err(|e| LedgerError::Io(format!("tag of inode {}: {e}", r.ino)))? {
        Some(t) => Now::Tagged(Charge::of(&st, t.project)),
        None => Now::Untagged { fd, st },
    })
}

/// The project of directory `dir`: its tag's, or for a directory whose tag was lost, the
/// nearest tagged ancestor's, as `check` counts it (an untagged inode takes its directory's
/// project).
fn dir_project(b: &Backing, dir: BorrowedFd<'_>) -> Result<u32, LedgerError> {
    let read =
        |fd: BorrowedFd<'_>| tag::read_fd(fd).map_err(|e| LedgerError::Io(format!("tag of a logged directory: {e}")));
    if let Some(t) = read(dir)? {
        return Ok(t.project);
    }
    let mut cur = sys::stat_fd(dir).map_err(|e| LedgerError::Io(format!("stat a logged directory: {e}")))?;
    let mut fd = None::<std::os::fd::OwnedFd>;
    while cur.st_ino != b.root_ino {
        let up = sys::open_dotdot(fd.as_ref().map_or(dir, |f| f.as_fd()), libc::O_PATH)
            .map_err(|e| LedgerError::Io(format!("parent of a logged directory: {e}")))?;
        let st = sys::stat_fd(up.as_fd()).map_err(|e| LedgerError::Io(format!("stat a parent directory: {e}")))?;
        if st.st_ino == cur.st_ino || st.st_dev != b.dev {
            break; // the file system's root, outside the backing
        }
        if let Some(t) = read(up.as_fd())? {
            return Ok(t.project);
        }
        (cur, fd) = (st, Some(up));
    }
    Ok(0)
}

struct Walk<'a> {
    backings: &'a [Backing],
    from_epoch: u64,
    /// Inodes already charged (by the touched pass or earlier in the listing): hard links and
    /// touched inodes are charged once.
    seen: HashSet<(BackingIndex, u64)>,
    table: &'a UsageTable,
    /// Directories already listed (a logged directory can also be reached by descent).
    listed_set: HashSet<(BackingIndex, u64)>,
    listed: usize,
    new_inodes: usize,
}

impl Walk<'_> {
    /// Lists directory `dir` (project `project`) and charges every child born since the
    /// snapshot (or untagged: created just before the crash), descending into new directories.
    fn list(&mut self, backing: BackingIndex, dir: BorrowedFd<'_>, project: u32) -> Result<(), LedgerError> {
        self.listed += 1;
        let b = &self.backings[backing.as_usize()];
        let dir_ino = sys::stat_fd(dir).map_err(|e| LedgerError::Io(format!("stat a listed directory: {e}")))?.st_ino;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let batch =
                sys::read_dir(dir, &mut buf).map_err(|e| LedgerError::Io(format!("cannot list a directory: {e}")))?;
            if batch.is_empty() {
                return Ok(());
            }
            for e in batch {
                let name: &CStr = &e.name;
                if name == c"." || name == c".." || b.is_private(dir_ino, name) {
                    continue;
                }
                let st = match sys::stat_at(dir, name) {
                    Ok(st) => st,
                    Err(Errno(libc::ENOENT)) => continue,
                    Err(err) => return Err(LedgerError::Io(format!("stat during recovery: {err}"))),
                };
                if st.st_dev != b.dev {
                    continue;
                }
                let t = tag::read_at(dir, name).map_err(|e| LedgerError::Io(format!("tag during recovery: {e}")))?;
                tracing::trace!(ino = st.st_ino, ?t, "recovery: child of a listed directory");
                if t.is_some_and(|t| t.birth < self.from_epoch) {
                    continue; // in the snapshot; if it changed since, a Touch names it
                }
                let child_project = t.map_or(project, |t| t.project);
                // Charged once: by the touched pass, or here the first time it is seen (hard
                // links). But a new directory is always descended into, charged or not: what
                // was created in it is only reachable this way.
                let counted = !self.seen.insert((backing, st.st_ino));
                if !counted {
                    if t.is_none() {
                        // Created just before the crash: finish what creation would have done.
                        let fd = sys::open_entry(dir, name)
                            .map_err(|e| LedgerError::Io(format!("open during recovery: {e}")))?;
                        let tag = tag::Tag { project: child_project, birth: self.from_epoch };
                        tag::write_fd(fd.as_fd(), tag)
                            .map_err(|e| LedgerError::Io(format!("tag during recovery: {e}")))?;
                    }
                    let st = sys::stat_at(dir, name).unwrap_or(st);
                    self.table.apply(backing, None, Some(Charge::of(&st, child_project)));
                    self.new_inodes += 1;
                }
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR && self.listed_set.insert((backing, st.st_ino)) {
                    let handle = sys::name_to_handle(dir, name)
                        .map_err(|e| LedgerError::Io(format!("handle during recovery: {e}")))?;
                    let sub = b
                        .open_handle(&handle, libc::O_RDONLY | libc::O_DIRECTORY)
                        .map_err(|e| LedgerError::Io(format!("open a new directory during recovery: {e}")))?;
                    self.list(backing, sub.as_fd(), child_project)?;
                }
            }
        }
    }
}

/// Brings the ledger up to date with the backings and commits a fresh snapshot; returns it.
pub fn recover(
    state_dir: &Path,
    store: &Store,
    backings: &[Backing],
    journal: &Journal,
) -> Result<(Snapshot, RecoveryReport), LedgerError> {
    let started = Instant::now();
    let logs = list_logs(state_dir)?;
    let snapshot = store.load()?;
    // The records on the backings, of every epoch a recovery from the snapshot replays (on a
    // first mount they are leftovers of an earlier ledger: the scan counts everything).
    let from = snapshot.as_ref().map_or(u64::MAX, |s| s.epoch);
    let super::journal::Found { records: marks, newest: newest_mark } = journal.read_from(from)?;
    let newest = logs.last().map(|(e, _)| *e).max(newest_mark);
    let Some(snapshot) = snapshot else {
        tracing::info!(backings = backings.len(), "first mount: counting and tagging every inode (once)");
        let (result, per_backing) =
            scan::scan_split(backings, Mode::Tag, scan_threads()).map_err(|e| LedgerError::Scan(e.to_string()))?;
        if result.errors > 0 {
            return Err(LedgerError::Scan(format!(
                "the first-mount scan could not read {} entries (see the log); fix them and mount again",
                result.errors
            )));
        }
        sync_backings(backings)?;
        let epoch = newest.map_or(1, |e| e + 1);
        let snap = Snapshot { epoch, usage: result.usage, grace: None, per_backing };
        store.commit_counting(&snap, &backings.iter().map(|b| b.index).collect::<Vec<_>>())?;
        tracing::info!(
            inodes = result.inodes,
            tagged = result.tagged,
            secs = result.duration.as_secs_f64(),
            "first-mount scan done"
        );
        let report = RecoveryReport {
            from_epoch: 0,
            initial_scan: true,
            scanned_inodes: result.inodes,
            duration: started.elapsed(),
            ..RecoveryReport::default()
        };
        return Ok((snap, report));
    };

    let mut report = RecoveryReport { from_epoch: snapshot.epoch, ..RecoveryReport::default() };
    let mut touched: HashMap<InodeRef, Option<Charge>> = HashMap::new();
    let mut dirty: BTreeSet<InodeRef> = BTreeSet::new();
    let relevant: Vec<_> = logs.iter().filter(|(e, _)| *e >= snapshot.epoch).collect();
    let mut last_epoch = snapshot.epoch.max(newest_mark.unwrap_or(0));
    // Records by epoch: the first record of an inode (in epoch order, a log's in its own order)
    // holds its charge at the snapshot. An inode has one record per epoch, in the log or in
    // its backing's journal directory, never both.
    let mut by_epoch: std::collections::BTreeMap<u64, Vec<Record>> = std::collections::BTreeMap::new();
    report.journal_records = marks.len();
    report.records += marks.len();
    for (i, (epoch, path)) in relevant.iter().enumerate() {
        last_epoch = last_epoch.max(*epoch);
        let contents = match wal::read(path) {
            Ok(c) => c,
            // The newest log may have been cut before its header was durable: nothing in it
            // can have been relied on.
            Err(LogError::BadHeader { .. }) if i + 1 == relevant.len() => {
                tracing::warn!(path = %path.display(), "newest activity log has no valid header; treating it as empty");
                continue;
            }
            Err(e) => return Err(LedgerError::Log(e)),
        };
        if let Some(torn) = &contents.torn {
            tracing::warn!(path = %path.display(), offset = torn.offset, bytes = torn.bytes, "cut a torn tail off the activity log");
            report.torn_bytes += torn.bytes;
        }
        report.logs += 1;
        report.records += contents.records.len();
        by_epoch.entry(*epoch).or_default().extend(contents.records);
    }
    for (epoch, rec) in marks {
        by_epoch.entry(epoch).or_default().push(rec);
    }
    for rec in by_epoch.into_values().flatten() {
        match rec {
            Record::Touch { inode, uid, project, bytes, birth } => {
                // Born after the snapshot: the snapshot never charged it, so there is no
                // "before" to take back; it is counted whole if it still exists.
                let before = (birth < snapshot.epoch).then_some(Charge { uid, project, bytes });
                touched.entry(inode).or_insert(before);
            }
            Record::DirDirty { dir } => {
                dirty.insert(dir);
            }
        }
    }
    report.touched = touched.len();
    report.dirty_dirs = dirty.len();

    // After a daemon crash without a reboot the page cache still holds what it wrote, and ext4
    // allocates some blocks (extent-index blocks of fragmented files) only at writeback: flush
    // first, or the inodes re-examined below are charged short of blocks that appear later.
    sync_backings(backings)?;
    let table = UsageTable::from_parts(snapshot.usage, snapshot.per_backing);
    // Inode numbers already charged, so the listing below counts each live inode once. A
    // touched inode that is gone does not count: ext4 reuses inode numbers at once, and the
    // new inode under the same number (another generation) must still be found.
    let mut seen = HashSet::new();
    for (r, before) in &touched {
        match (now(backings, *r)?, *before) {
            (Now::Gone, before) => table.apply(r.backing, before, None),
            (Now::Tagged(charge), before) => {
                table.apply(r.backing, before, Some(charge));
                seen.insert((r.backing, r.ino));
            }
            // Born after the snapshot, whose checkpoint synced every earlier tag: it lies in a
            // directory the log names, whose listing charges it and tags it with that
            // directory's project.
            (Now::Untagged { .. }, None) => {}
            (Now::Untagged { fd, st }, Some(before)) => {
                // Older than the snapshot yet untagged: no crash makes that (the tag was
                // removed on the backing). Keep the project the ledger had, and say so.
                tracing::warn!(ino = r.ino, project = before.project, "a logged inode lost its tag; tagging it again");
                let t = tag::Tag { project: before.project, birth: 0 };
                tag::write_fd(fd.as_fd(), t).map_err(|e| LedgerError::Io(format!("tag during recovery: {e}")))?;
                let st = sys::stat_fd(fd.as_fd()).unwrap_or(st);
                table.apply(r.backing, Some(before), Some(Charge::of(&st, before.project)));
                seen.insert((r.backing, r.ino));
            }
        }
    }
    let mut walk = Walk {
        backings,
        from_epoch: snapshot.epoch,
        seen,
        table: &table,
        listed_set: HashSet::new(),
        listed: 0,
        new_inodes: 0,
    };
    for d in &dirty {
        let Some(b) = backings.get(d.backing.as_usize()) else { continue };
        let handle = Handle::ext4(d.ino as u32, d.generation);
        let fd = match b.open_handle(&handle, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno(libc::ESTALE | libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(e) => {
                return Err(LedgerError::Io(format!("cannot open a logged directory on {}: {e}", b.path.display())));
            }
        };
        if !walk.listed_set.insert((d.backing, d.ino)) {
            continue; // already listed as a new subdirectory of another logged directory
        }
        let project = dir_project(b, fd.as_fd())?;
        walk.list(d.backing, fd.as_fd(), project)?;
    }
    report.listed_dirs = walk.listed;
    report.new_inodes = walk.new_inodes;

    // A backing the ledger has never counted (a route added since the last mount): count and
    // tag it now, once; the store records it with the snapshot that includes it.
    let counted = store.counted_backings()?;
    let fresh: Vec<&Backing> = backings.iter().filter(|b| !counted.contains(&b.index)).collect();
    for b in &fresh {
        tracing::info!(backing = %b.path.display(), "a new backing: counting and tagging every inode (once)");
        let result = scan::scan(std::slice::from_ref(*b), Mode::Tag, scan_threads())
            .map_err(|e| LedgerError::Scan(e.to_string()))?;
        if result.errors > 0 {
            return Err(LedgerError::Scan(format!(
                "the scan of new backing {} could not read {} entries (see the log); fix them and mount again",
                b.path.display(),
                result.errors
            )));
        }
        table.rebase_backing(b.index, &result.usage);
        report.scanned_inodes += result.inodes;
    }
    sync_backings(backings)?;
    let snap =
        Snapshot { epoch: last_epoch + 1, usage: table.snapshot(), grace: None, per_backing: table.routed_snapshot() };
    store.commit_counting(&snap, &fresh.iter().map(|b| b.index).collect::<Vec<_>>())?;
    report.duration = started.elapsed();
    tracing::info!(
        from_epoch = report.from_epoch,
        logs = report.logs,
        records = report.records,
        touched = report.touched,
        dirty_dirs = report.dirty_dirs,
        new_inodes = report.new_inodes,
        ms = report.duration.as_millis() as u64,
        "ledger recovered"
    );
    Ok((snap, report))
}

fn sync_backings(backings: &[Backing]) -> Result<(), LedgerError> {
    for b in backings {
        sys::syncfs(b.root_fd())
            .map_err(|e| LedgerError::Io(format!("syncfs of backing {}: {e}", b.path.display())))?;
    }
    Ok(())
}
