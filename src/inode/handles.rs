//! Open files: FUSE file handles ↔ backing descriptors, and the descriptor budget.
//!
//! A file handle (`fh`) lives from a successful open/create reply until the matching release.
//! It records the opener's credentials and flags and holds the inode's shared *data
//! descriptor* for its access mode ([`DataFd`]): all read-only opens of one inode share one
//! backing descriptor, and all writable opens share another. Holding it is what keeps an
//! unlinked-but-open file alive on ext4 until its last close.
//!
//! # Descriptor budget
//! A tenant must not be able to starve the daemon of descriptors. [`OpenLimits`] answers:
//! * `EMFILE` to an opener (other than root) who already holds `per_uid` files open through
//!   the mount: that tenant's share; others are unaffected;
//! * `ENFILE` when the daemon's data descriptors would leave fewer than `reserve` descriptors
//!   free of its open-file limit after the `O_PATH` cache (`fd_cache`): that reserve is for
//!   the ledger (activity log, checkpoints), the control sockets and the file system's own
//!   lookups.
//!
//! Root is exempt from the per-uid share (nfs-ganesha opens as root for all its clients) but
//! not from the reserve.
//!
//! Under a supervisor, the data descriptors of the handles an earlier process issued
//! (inherited, reopened on first use) are *set aside* from the moment the next process takes
//! over: one per inode and access the inherited handles hold. New opens count them as held,
//! so other tenants opening files right after a takeover cannot take the descriptors of the
//! files that were open before it; a reopen may use them (`Budget::Inherited`). A unit is
//! given back when the last inherited handle of its inode and access is reopened or released.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::backing::Errno;
use crate::backing::creds::Caller;

/// Descriptors the daemon keeps free of open files, beyond the `O_PATH` cache: the ledger
/// (activity log, checkpoints, store), control sockets, lookups, the FUSE channels and the
/// removals' held victims (`evict::MAX_HELD`).
pub const RESERVED_FDS: usize = 1024;

/// A backing descriptor opened for reading or for reading and writing, shared by the opens
/// of one inode with that access. Counted against the daemon's budget while it lives.
#[derive(Debug)]
pub struct DataFd {
    fd: OwnedFd,
    limits: Arc<OpenLimits>,
}

impl AsFd for DataFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for DataFd {
    fn drop(&mut self) {
        self.limits.data_fds.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An open regular file (or other openable inode).
#[derive(Debug)]
pub struct OpenFile {
    pub node: u64,
    /// The inode it was opened on. Not looked up again by node id: if the file is unlinked
    /// while open and ext4 gives its number to a new file, the node id then names the new
    /// file, but this handle still writes to the old one.
    pub inode: Arc<super::Inode>,
    /// The inode's shared data descriptor for this open's access.
    pub fd: Arc<DataFd>,
    pub writable: bool,
    /// `RWF_APPEND` / `RWF_SYNC` / `RWF_DSYNC` for writes, from the open's flags (the shared
    /// descriptor carries none of them).
    pub write_flags: i32,
    /// Who opened it. Every write through this handle (including the kernel's writeback of a
    /// shared mapping, which arrives as uid 0) is charged, checked and performed as the opener.
    pub opener: Caller,
    _share: Share,
}

impl OpenFile {
    pub fn new(
        inode: Arc<super::Inode>,
        fd: Arc<DataFd>,
        writable: bool,
        write_flags: i32,
        opener: Caller,
        share: Share,
    ) -> OpenFile {
        OpenFile { node: inode.id, inode, fd, writable, write_flags, opener, _share: share }
    }
}

/// The descriptor budget of one mount (see the module docs).
#[derive(Debug)]
pub struct OpenLimits {
    /// Files one non-root uid may hold open through the mount.
    pub per_uid: usize,
    /// Data descriptors the daemon may hold in all.
    pub max_data_fds: usize,
    by_uid: DashMap<u32, usize>,
    data_fds: AtomicUsize,
    /// Data descriptors set aside for inherited handles not reopened yet.
    set_aside: AtomicUsize,
    refused: AtomicU64,
}

/// Which descriptors a data descriptor may be opened from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// A new open: not from those set aside for inherited handles.
    Open,
    /// The reopen of an inherited handle: from those set aside too.
    Inherited,
}

/// One open counted against its opener's share; given back when dropped.
#[derive(Debug)]
pub struct Share {
    uid: u32,
    limits: Arc<OpenLimits>,
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.uid != 0 {
            self.limits.by_uid.remove_if_mut(&self.uid, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

impl OpenLimits {
    pub fn new(per_uid: usize, max_data_fds: usize) -> Arc<OpenLimits> {
        Arc::new(OpenLimits {
            per_uid,
            max_data_fds,
            by_uid: DashMap::new(),
            data_fds: AtomicUsize::new(0),
            set_aside: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Counts one more open by `uid`; EMFILE if that passes the uid's share.
    pub fn take_share(self: &Arc<Self>, uid: u32) -> Result<Share, Errno> {
        if uid != 0 {
            let mut n = self.by_uid.entry(uid).or_insert(0);
            if *n >= self.per_uid {
                drop(n);
                self.refuse(uid, "its share of open files is used up", libc::EMFILE);
                return Err(Errno(libc::EMFILE));
            }
            *n += 1;
        }
        Ok(Share { uid, limits: Arc::clone(self) })
    }

    /// Opens a data descriptor with `open` unless that would eat into the reserve (ENFILE), or,
    /// for a new open, into the descriptors set aside for inherited handles.
    pub fn open_data(
        self: &Arc<Self>,
        uid: u32,
        budget: Budget,
        open: impl FnOnce() -> Result<OwnedFd, Errno>,
    ) -> Result<Arc<DataFd>, Errno> {
        let kept = match budget {
            Budget::Open => self.set_aside.load(Ordering::Relaxed),
            Budget::Inherited => 0,
        };
        if self.data_fds.fetch_add(1, Ordering::Relaxed) + kept >= self.max_data_fds {
            self.data_fds.fetch_sub(1, Ordering::Relaxed);
            self.refuse(uid, "the daemon's descriptors left for open files are used up", libc::ENFILE);
            return Err(Errno(libc::ENFILE));
        }
        match open() {
            Ok(fd) => Ok(Arc::new(DataFd { fd, limits: Arc::clone(self) })),
            Err(e) => {
                self.data_fds.fetch_sub(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn refuse(&self, uid: u32, why: &str, errno: i32) {
        // One line per 4096 refusals: a tenant looping on open must not flood the log.
        if self.refused.fetch_add(1, Ordering::Relaxed) % 4096 == 0 {
            tracing::warn!(uid, errno, "open refused: {why}");
        }
    }

    /// Sets `n` more data descriptors aside for inherited handles.
    pub fn set_aside(&self, n: usize) {
        self.set_aside.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back one descriptor set aside.
    pub fn give_back(&self) {
        let _ = self.set_aside.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Data descriptors held now.
    pub fn data_fds(&self) -> usize {
        self.data_fds.load(Ordering::Relaxed)
    }

    /// Files `uid` holds open now.
    pub fn opens_of(&self, uid: u32) -> usize {
        self.by_uid.get(&uid).map_or(0, |n| *n)
    }

    /// Opens refused so far (EMFILE and ENFILE).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// fh → open object. A handle this table numbers itself (`insert`) is never reused within one
/// daemon run; those start at `open_table::FIRST_UNRECORDED`, above every fh the open-file
/// table issues (`insert_at`).
#[derive(Debug)]
pub struct HandleTable<T> {
    map: DashMap<u64, Arc<T>>,
    next: AtomicU64,
}

impl<T> HandleTable<T> {
    pub fn new() -> Self {
        HandleTable { map: DashMap::new(), next: AtomicU64::new(super::open_table::FIRST_UNRECORDED) }
    }

    pub fn insert(&self, value: T) -> (u64, Arc<T>) {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let value = Arc::new(value);
        self.map.insert(fh, Arc::clone(&value));
        (fh, value)
    }

    /// Inserts `value` as `fh`, a handle numbered elsewhere (the open-file table's slot).
    pub fn insert_at(&self, fh: u64, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.map.insert(fh, Arc::clone(&value));
        value
    }

    pub fn get(&self, fh: u64) -> Result<Arc<T>, Errno> {
        self.map.get(&fh).map(|v| Arc::clone(&v)).ok_or(Errno(libc::EBADF))
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map.remove(&fh).map(|(_, v)| v)
    }

    /// Handles held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Handles this table numbered itself (`insert`): none of them is in the open-file table.
    pub fn unrecorded(&self) -> usize {
        self.map.iter().filter(|e| *e.key() >= super::open_table::FIRST_UNRECORDED).count()
    }
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_per_uid_and_given_back() {
        let l = OpenLimits::new(2, 100);
        let a = l.take_share(1000).unwrap();
        let _b = l.take_share(1000).unwrap();
        assert_eq!(l.take_share(1000).unwrap_err(), Errno(libc::EMFILE));
        let _other = l.take_share(1001).expect("another uid has its own share");
        let _root = (0..10).map(|_| l.take_share(0).unwrap()).collect::<Vec<_>>();
        drop(a);
        assert!(l.take_share(1000).is_ok(), "a close gives the share back");
    }

    #[test]
    fn data_fds_stop_at_the_reserve() {
        let l = OpenLimits::new(10, 1);
        let open = || crate::backing::sys::open_path(c"/", libc::O_RDONLY);
        let held = l.open_data(1000, Budget::Open, open).unwrap();
        assert_eq!(l.open_data(1000, Budget::Open, open).unwrap_err(), Errno(libc::ENFILE));
        drop(held);
        assert!(l.open_data(1000, Budget::Open, open).is_ok());
        assert_eq!(l.data_fds(), 0);
    }

    #[test]
    fn descriptors_set_aside_are_for_inherited_handles_only() {
        let l = OpenLimits::new(10, 2);
        let open = || crate::backing::sys::open_path(c"/", libc::O_RDONLY);
        l.set_aside(1);
        let a = l.open_data(1000, Budget::Open, open).unwrap();
        assert_eq!(l.open_data(1001, Budget::Open, open).unwrap_err(), Errno(libc::ENFILE));
        let b = l.open_data(1002, Budget::Inherited, open).expect("an inherited handle's reopen");
        l.give_back();
        drop((a, b));
        assert!(l.open_data(1001, Budget::Open, open).is_ok());
    }
}
