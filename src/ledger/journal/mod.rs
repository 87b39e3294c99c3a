//! Records that ride in the backing's own journal (docs/design.md §16).
//!
//! A `Touch` or `DirDirty` must be durable before the backing change it guards. Written to the
//! activity log, that takes an fdatasync per record. Appended to a pack (an xattr of a file in a
//! directory on the same file system as the inode it names, `pack`), it takes one metadata
//! operation and no sync: ext4 commits metadata operations to its journal in the order
//! they were made (every operation joins the running transaction or a later one, and
//! transactions commit whole and in order), so after any crash a change made after the marker
//! is durable only if the marker is (with `fast_commit`: Linux 5.17 or later, docs/design.md
//! §9.9). The activity log remains the fallback for a marker that
//! cannot be made (a full backing, an I/O error), and stays the format of record for it.
//!
//! # Layout (on every backing)
//! ```text
//! <backing root>/.quotafs-journal/          mode 0700, xattr trusted.quotafs.journal = "1"
//!     <epoch:016>/                          one directory per epoch, made at its start
//!         p.<n>                                 a pack: records in an xattr (`pack`)
//!         t.<ino>.<gen>.<uid>.<project>.<bytes>.<birth>   Touch (all decimal), an empty file
//!         d.<ino>.<gen>                                    DirDirty
//! ```
//! Records are written to packs; the empty files whose name is a record are what versions
//! before packs wrote, and are still read (a journal left by one is recovered as it was).
//! The backing is the one the directory is on. An epoch's directory is removed (entries, then
//! the directory) once a snapshot of a later epoch is committed; recovery reads the directories
//! of the epochs from its snapshot on, and refuses a name it cannot parse rather than guess.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

pub mod pack;

use super::error::LedgerError;
use super::wal::Record;
use crate::backing::{Backing, Errno, JOURNAL_DIR, sys};
use crate::ids::{BackingIndex, InodeRef};

/// Marks a journal directory as quotafs's (a tenant's directory of the same name is refused).
const MARK_XATTR: &CStr = c"trusted.quotafs.journal";
/// The name under which a journal directory is made and marked before it is put in place.
const NEW_DIR: &CStr = c".quotafs-journal.new";

/// The file name of record `rec` (its backing is the directory's).
pub fn record_name(rec: &Record) -> CString {
    let s = match rec {
        Record::Touch { inode, uid, project, bytes, birth } => {
            format!("t.{}.{}.{uid}.{project}.{bytes}.{birth}", inode.ino, inode.generation)
        }
        Record::DirDirty { dir } => format!("d.{}.{}", dir.ino, dir.generation),
    };
    CString::new(s).expect("digits and dots have no NUL")
}

/// The record a file name in a journal directory of backing `backing` stands for.
pub fn parse_record(backing: BackingIndex, name: &[u8]) -> Option<Record> {
    let s = std::str::from_utf8(name).ok()?;
    let mut parts = s.split('.');
    let kind = parts.next()?;
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        // Canonical decimal only: a name is written one way, so it is read back one way.
        (!p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
            .then(|| p.parse().ok())
            .flatten()
    };
    let inode = |ino: u64, generation: u64| -> Option<InodeRef> {
        Some(InodeRef { backing, ino, generation: u32::try_from(generation).ok()? })
    };
    let rec = match kind {
        "t" => {
            let (ino, generation, uid, project, bytes, birth) = (next()?, next()?, next()?, next()?, next()?, next()?);
            Record::Touch {
                inode: inode(ino, generation)?,
                uid: u32::try_from(uid).ok()?,
                project: u32::try_from(project).ok()?,
                bytes,
                birth,
            }
        }
        "d" => {
            let (ino, generation) = (next()?, next()?);
            Record::DirDirty { dir: inode(ino, generation)? }
        }
        _ => return None,
    };
    parts.next().is_none().then_some(rec)
}

fn epoch_dir_name(epoch: u64) -> CString {
    CString::new(format!("{epoch:016}")).expect("digits have no NUL")
}

fn epoch_of_dir(name: &[u8]) -> Option<u64> {
    (name.len() == 16 && name.iter().all(u8::is_ascii_digit)).then(|| std::str::from_utf8(name).ok()?.parse().ok())?
}

/// The names in directory `dir`, without `.` and `..`.
fn names(dir: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let batch = sys::read_dir(dir, &mut buf)?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch.into_iter().map(|e| e.name).filter(|n| n.as_bytes() != b"." && n.as_bytes() != b".."));
    }
}

struct Dir {
    fd: OwnedFd,
    ino: u64,
    path: PathBuf,
}

/// What `Journal::read_from` found.
pub struct Found {
    /// (epoch, record), in epoch order.
    pub records: Vec<(u64, Record)>,
    /// The newest epoch with a directory on any backing.
    pub newest: Option<u64>,
}

/// The journal directories of every backing (indexed like the backings).
pub struct Journal {
    dirs: Vec<Dir>,
}

impl Journal {
    /// Opens (making it on first use) the journal directory of every backing.
    pub fn open(backings: &[Backing]) -> Result<Journal, LedgerError> {
        let mut dirs = Vec::with_capacity(backings.len());
        for b in backings {
            let path = b.path.join(std::ffi::OsStr::from_bytes(JOURNAL_DIR.to_bytes()));
            let fail = |what: &str, e: Errno| {
                LedgerError::Journal(format!("cannot {what} the ledger's journal directory {}: {e}", path.display()))
            };
            let root = b.root_fd();
            match sys::stat_at(root, JOURNAL_DIR) {
                Ok(_) => {}
                Err(Errno(libc::ENOENT)) => {
                    // Made and marked under another name, then put in place: a crash leaves
                    // either no journal directory or a marked one.
                    match sys::unlink_at(root, NEW_DIR, libc::AT_REMOVEDIR) {
                        Ok(()) | Err(Errno(libc::ENOENT)) => {}
                        Err(e) => return Err(fail("clear a half-made", e)),
                    }
                    sys::mkdir_at(root, NEW_DIR, 0o700).map_err(|e| fail("make", e))?;
                    let new =
                        sys::openat_beneath(root, NEW_DIR, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                            .map_err(|e| fail("open", e))?;
                    sys::set_xattr(new.as_fd(), MARK_XATTR, b"1", 0).map_err(|e| fail("mark", e))?;
                    sys::rename_at(root, NEW_DIR, root, JOURNAL_DIR, libc::RENAME_NOREPLACE)
                        .map_err(|e| fail("put in place", e))?;
                }
                Err(e) => return Err(fail("stat", e)),
            }
            let fd = sys::openat_beneath(root, JOURNAL_DIR, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                .map_err(|e| {
                LedgerError::Journal(format!(
                    "{} is not a directory quotafs can use as its journal ({e}); it is hidden from the mount: \
                         move it out of the backing and start again",
                    path.display()
                ))
            })?;
            let st = sys::stat_fd(fd.as_fd()).map_err(|e| fail("stat", e))?;
            let mut mark = [0u8; 4];
            let marked = matches!(sys::get_xattr(fd.as_fd(), MARK_XATTR, &mut mark), Ok(1) if mark[0] == b'1');
            if !marked || st.st_uid != 0 || st.st_dev != b.dev {
                return Err(LedgerError::Journal(format!(
                    "{} exists but was not made by quotafs (no {} mark, or not owned by root); it is hidden \
                     from the mount: move it out of the backing and start again",
                    path.display(),
                    MARK_XATTR.to_string_lossy()
                )));
            }
            dirs.push(Dir { fd, ino: st.st_ino, path });
        }
        Ok(Journal { dirs })
    }

    /// The inode number of backing `backing`'s journal directory.
    pub fn dir_ino(&self, backing: BackingIndex) -> Option<u64> {
        self.dirs.get(backing.as_usize()).map(|d| d.ino)
    }

    /// The epochs with a directory on some backing. `strict`: a name that is not an epoch
    /// directory is an error (recovery); else it is skipped with a warning (cleaning).
    fn epochs(&self, strict: bool) -> Result<Vec<(usize, u64, CString)>, LedgerError> {
        let mut out = Vec::new();
        for (i, d) in self.dirs.iter().enumerate() {
            // A descriptor of its own: a directory's read position is per open file.
            let listed = sys::openat_beneath(d.fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                .and_then(|fd| names(fd.as_fd()))
                .map_err(|e| LedgerError::Journal(format!("cannot list {}: {e}", d.path.display())))?;
            for name in listed {
                match epoch_of_dir(name.as_bytes()) {
                    Some(e) => out.push((i, e, name)),
                    None => {
                        let why = format!(
                            "{}/{} is not a quotafs journal entry: quotafs makes only epoch directories \
                             there, and cannot tell what this one holds. Remove it by hand, then \
                             start again",
                            d.path.display(),
                            name.to_string_lossy()
                        );
                        if strict {
                            return Err(LedgerError::Journal(why));
                        }
                        tracing::warn!("{why}");
                    }
                }
            }
        }
        Ok(out)
    }

    /// The records of every epoch `≥ from`, by epoch, and the newest epoch with a directory.
    pub fn read_from(&self, from: u64) -> Result<Found, LedgerError> {
        let mut out = Vec::new();
        let mut newest = None;
        for (i, epoch, name) in self.epochs(true)? {
            newest = newest.max(Some(epoch));
            if epoch < from {
                continue;
            }
            let d = &self.dirs[i];
            let path = d.path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            let fd = sys::openat_beneath(d.fd.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                .map_err(|e| LedgerError::Journal(format!("cannot open {}: {e}", path.display())))?;
            let listed =
                names(fd.as_fd()).map_err(|e| LedgerError::Journal(format!("cannot list {}: {e}", path.display())))?;
            let backing = BackingIndex(i as u8);
            for n in listed {
                let foreign = || {
                    LedgerError::Journal(format!(
                        "{}/{} is not a quotafs journal record; the ledger cannot be recovered exactly \
                         with it. Remove it if it was put there by hand; otherwise run `quotafs check --repair`",
                        path.display(),
                        n.to_string_lossy()
                    ))
                };
                if pack::is_pack(n.as_bytes()) {
                    let recs = read_pack(fd.as_fd(), &n, backing)
                        .map_err(|e| {
                            LedgerError::Journal(format!("cannot read {}/{}: {e}", path.display(), n.to_string_lossy()))
                        })?
                        .ok_or_else(foreign)?;
                    out.extend(recs.into_iter().map(|r| (epoch, r)));
                } else {
                    out.push((epoch, parse_record(backing, n.as_bytes()).ok_or_else(foreign)?));
                }
            }
        }
        out.sort_by_key(|(e, _)| *e);
        Ok(Found { records: out, newest })
    }

    /// Makes the directories of epoch `epoch` and returns what writes its records. A backing
    /// whose directory cannot be made gets none: its records then go to the activity log.
    pub fn begin_epoch(&self, epoch: u64) -> EpochMarks {
        let name = epoch_dir_name(epoch);
        let dirs = self
            .dirs
            .iter()
            .map(|d| {
                let made = match sys::mkdir_at(d.fd.as_fd(), &name, 0o700) {
                    Ok(()) | Err(Errno(libc::EEXIST)) => {
                        sys::openat_beneath(d.fd.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    }
                    Err(e) => Err(e),
                };
                made.inspect_err(|e| {
                    tracing::warn!(dir = %d.path.display(), epoch, error = %e, "cannot make the journal directory of an epoch; its records go to the activity log (one fdatasync each)");
                })
                .ok()
                .map(|dir| Mutex::new(Packs { dir, open: None, next: 0 }))
            })
            .collect();
        EpochMarks { dirs, written: AtomicU64::new(0), fell_back: AtomicBool::new(false) }
    }

    /// Removes the directories of the epochs before `epoch` (a committed snapshot holds them).
    pub fn remove_before(&self, epoch: u64) {
        let Ok(epochs) = self.epochs(false).inspect_err(|e| tracing::warn!(error = %e, "cannot clean the journal"))
        else {
            return;
        };
        for (i, e, name) in epochs {
            if e >= epoch {
                continue;
            }
            let d = &self.dirs[i];
            let removed =
                sys::openat_beneath(d.fd.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    .and_then(|fd| {
                        for n in names(fd.as_fd())? {
                            match sys::unlink_at(fd.as_fd(), &n, 0) {
                                Ok(()) | Err(Errno(libc::ENOENT)) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        sys::unlink_at(d.fd.as_fd(), &name, libc::AT_REMOVEDIR)
                    });
            if let Err(err) = removed {
                tracing::warn!(dir = %d.path.display(), epoch = e, error = %err, "cannot remove an old epoch's journal directory; retried at the next checkpoint");
            }
        }
    }
}

/// The pack being written on one backing, and its epoch directory.
struct Packs {
    dir: OwnedFd,
    open: Option<OpenPack>,
    /// The number of the next pack file.
    next: u64,
}

struct OpenPack {
    fd: OwnedFd,
    buf: pack::PackBuf,
}

/// Reads the records of pack `name` in epoch directory `dir`. Ok(None): the value is not a
/// pack's. A pack with no value (a crash between its create and its first record) is empty.
fn read_pack(dir: BorrowedFd<'_>, name: &CStr, backing: BackingIndex) -> Result<Option<Vec<Record>>, Errno> {
    // O_NONBLOCK: something that is not a pack (a FIFO put there by hand) must not hang recovery.
    let fd = sys::openat_beneath(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
    let mut buf = vec![0u8; 64 * 1024];
    match sys::get_xattr(fd.as_fd(), pack::XATTR, &mut buf) {
        Ok(n) => Ok(pack::decode(backing, &buf[..n])),
        Err(Errno(libc::ENODATA)) => Ok(Some(Vec::new())),
        Err(e) => Err(e),
    }
}

/// Writes the records of one epoch (see the module comment).
pub struct EpochMarks {
    dirs: Vec<Option<Mutex<Packs>>>,
    written: AtomicU64,
    fell_back: AtomicBool,
}

impl Packs {
    /// Adds `rec` to the open pack, starting a new pack when there is none, it is full, or the
    /// file system refuses a longer value.
    fn write(&mut self, rec: &Record) -> Result<(), Errno> {
        loop {
            if self.open.is_none() {
                self.open = Some(self.new_pack()?);
            }
            let p = self.open.as_mut().expect("just made");
            let before = p.buf.len();
            let first = p.buf.is_empty();
            let Some(value) = p.buf.push(rec) else {
                if first {
                    // Longer than a pack can hold (no record is): never loop making packs.
                    return Err(Errno(libc::E2BIG));
                }
                // Full: the next pack takes it.
                self.open = None;
                continue;
            };
            match sys::set_xattr(p.fd.as_fd(), pack::XATTR, &value, 0) {
                Ok(()) => return Ok(()),
                // Too long for this file system's xattr space: end the pack here, unless the
                // record alone does not fit.
                Err(Errno(libc::ENOSPC | libc::E2BIG | libc::ERANGE)) if !first => {
                    p.buf.pop(before);
                    self.open = None;
                }
                Err(e) => {
                    p.buf.pop(before);
                    return Err(e);
                }
            }
        }
    }

    fn new_pack(&mut self) -> Result<OpenPack, Errno> {
        loop {
            let name = pack::name(self.next);
            self.next += 1;
            match sys::openat_beneath(
                self.dir.as_fd(),
                &name,
                libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            ) {
                Ok(fd) => return Ok(OpenPack { fd, buf: pack::PackBuf::default() }),
                // A pack an earlier process of this epoch left: never appended to.
                Err(Errno(libc::EEXIST)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl EpochMarks {
    /// Makes record `rec` durable with whatever the backing of the inode it names makes
    /// durable after it. Err: it could not be made (the caller logs it instead).
    pub fn write(&self, rec: &Record) -> Result<(), Errno> {
        let backing = match rec {
            Record::Touch { inode, .. } => inode.backing,
            Record::DirDirty { dir } => dir.backing,
        };
        let result = (|| {
            let packs = self.dirs.get(backing.as_usize()).and_then(Option::as_ref).ok_or(Errno(libc::ENOENT))?;
            crate::failpoint::JOURNAL_RECORD.check().map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
            packs.lock().write(rec)
        })();
        match result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if !self.fell_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(backing = backing.0, error = %e, "cannot write a record to the backing's journal directory; logging it with an fdatasync instead (said once per epoch)");
                }
                Err(e)
            }
        }
    }

    /// Records written in this epoch.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let i = InodeRef { backing: BackingIndex(2), ino: 123_456_789, generation: u32::MAX };
        for rec in [
            Record::Touch { inode: i, uid: 1001, project: 0, bytes: u64::MAX, birth: 7 },
            Record::Touch { inode: i, uid: 0, project: u32::MAX, bytes: 0, birth: 0 },
            Record::DirDirty { dir: i },
        ] {
            let name = record_name(&rec);
            assert!(name.as_bytes().len() < 255);
            assert_eq!(parse_record(BackingIndex(2), name.as_bytes()), Some(rec));
        }
    }

    #[test]
    fn foreign_names_are_refused() {
        for bad in [
            "",
            "t",
            "d.1",
            "d.1.2.3",
            "x.1.2",
            "t.1.2.3.4.5",
            "t.1.2.3.4.5.6.7",
            "d.01.2",
            "d.+1.2",
            "d.1.4294967296",
            "t.1.2.4294967296.4.5.6",
            "d.1.2 ",
            "d..2",
            "d.1.2\n",
        ] {
            assert_eq!(parse_record(BackingIndex(0), bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(epoch_of_dir(b"0000000000000012"), Some(12));
        assert_eq!(epoch_of_dir(b"12"), None);
        assert_eq!(epoch_of_dir(b"000000000000001x"), None);
    }
}
