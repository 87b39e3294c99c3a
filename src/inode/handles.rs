//! Open files and directories: FUSE file handles ↔ backing descriptors.
//!
//! A file handle (`fh`) lives from a successful open/create/opendir reply until the matching
//! release/releasedir; it owns the backing descriptor for that time, which is what keeps an
//! unlinked-but-open file usable until its last close.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::backing::Errno;
use crate::backing::sys::DirEntry;

/// An open regular file (or other openable inode).
#[derive(Debug)]
pub struct OpenFile {
    pub node: u64,
    pub fd: OwnedFd,
    pub writable: bool,
}

/// Position of a directory stream: the backing `d_off` cookie after the last entry returned,
/// and entries read from the backing but not yet returned.
#[derive(Debug, Default)]
pub struct DirStream {
    pub pos: i64,
    pub pending: VecDeque<DirEntry>,
    pub eof: bool,
}

/// An open directory.
#[derive(Debug)]
pub struct OpenDir {
    pub node: u64,
    pub fd: OwnedFd,
    pub stream: Mutex<DirStream>,
}

/// fh → open object. Handles are never reused within one daemon run.
#[derive(Debug)]
pub struct HandleTable<T> {
    map: DashMap<u64, Arc<T>>,
    next: AtomicU64,
}

impl<T> HandleTable<T> {
    pub fn new() -> Self {
        HandleTable { map: DashMap::new(), next: AtomicU64::new(1) }
    }

    pub fn insert(&self, value: T) -> (u64, Arc<T>) {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let value = Arc::new(value);
        self.map.insert(fh, Arc::clone(&value));
        (fh, value)
    }

    pub fn get(&self, fh: u64) -> Result<Arc<T>, Errno> {
        self.map.get(&fh).map(|v| Arc::clone(&v)).ok_or(Errno(libc::EBADF))
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map.remove(&fh).map(|(_, v)| v)
    }
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        Self::new()
    }
}
