//! Open files: FUSE file handles ↔ backing descriptors.
//!
//! A file handle (`fh`) lives from a successful open/create reply until the matching release; it owns the backing descriptor for that time, which is what keeps an
//! unlinked-but-open file usable until its last close.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::backing::Errno;

/// An open regular file (or other openable inode).
#[derive(Debug)]
pub struct OpenFile {
    pub node: u64,
    /// The inode it was opened on. Not looked up again by node id: if the file is unlinked
    /// while open and ext4 gives its number to a new file, the node id then names the new
    /// file, but this handle still writes to the old one.
    pub inode: std::sync::Arc<super::Inode>,
    pub fd: OwnedFd,
    pub writable: bool,
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
