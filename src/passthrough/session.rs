//! What a serving process holds that is not on disk: the nodes the kernel was handed, the open
//! files it was handed, and the settings negotiated at INIT (`ServingState`). The operations
//! borrow it (`ops::Ops`); nothing here is written to the backing or the ledger.
//!
//! Each part says, for a new process taking over a live mount (issue #19), whether it can be
//! rebuilt and from what. docs/design.md §1 has the same answers as a table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::ids::InodeRef;
use crate::inode::evict::Evictions;
use crate::inode::handles::{HandleTable, OpenFile, OpenLimits};
use crate::inode::open_table::{OpenRecord, OpenTable};
use crate::inode::{InodeTable, Stripes};

/// The state one serving process holds for the kernel it talks to.
#[derive(Debug)]
pub struct ServingState {
    /// Node id → inode (handle, generation, type), lookup counts, and caches: `O_PATH`
    /// descriptors, tags, route marks; with the stripe locks and tag stamps (`inode`).
    ///
    /// Rebuildable: a plain node id names its inode by itself (backing index and ext4 inode
    /// number; `LOOKUP(id, ".")` reopens one the table does not hold, as NFS export does), and
    /// every cache refills on demand. Not rebuildable: alias node ids (they live only in this
    /// table; a new process answers them ESTALE) and the lookup counts (the kernel's FORGETs
    /// for nodes a new process never handed out must be tolerated, as `forget` does for an
    /// unknown id). The stripe locks and tag stamps start afresh with no cached tag.
    pub nodes: InodeTable,
    /// Open files and what they hold (`OpenFiles`).
    pub opens: OpenFiles,
    /// The settings negotiated at FUSE INIT (`InitSettings`).
    pub init: InitSettings,
    /// Unlinked victims held until the next FORGET or 200 ms tick (`inode::evict`).
    ///
    /// Not rebuildable, nor needed: the descriptors die with the process, and ext4 frees the
    /// inodes then.
    pub evictions: Evictions,
}

impl ServingState {
    /// Empty state: no node but the root (inserted by the caller), no open file. `fd_cache`
    /// bounds the `O_PATH` cache; `stripes` are shared with what changes inodes outside a
    /// request (the ledger's reconcile, the routed recount).
    pub fn new(fd_cache: usize, stripes: Arc<Stripes>, limits: Arc<OpenLimits>) -> ServingState {
        ServingState {
            nodes: InodeTable::new(fd_cache, stripes),
            opens: OpenFiles {
                handles: HandleTable::new(),
                counts: DashMap::new(),
                limits,
                table: OnceLock::new(),
                inherited: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                reopening: Mutex::new(()),
            },
            init: InitSettings { apply_umask: AtomicBool::new(false), adopted: AtomicBool::new(false) },
            evictions: Evictions::default(),
        }
    }
}

/// The open files of this process: FUSE file handle → open file, the number of open handles
/// per inode, and the descriptor budget they count against.
///
fn pending_key(rec: &OpenRecord) -> (InodeRef, bool) {
    (rec.key, rec.flags & libc::O_ACCMODE != libc::O_RDONLY)
}

/// Rebuildable under a supervisor (docs/design.md §18): every open is recorded in the
/// supervisor's open-file table (`table`) under its fh, with the node, the inode's number and
/// generation, the open's flags and the opener's credentials. A new process takes the records
/// over as `inherited` and reopens each by handle on its first use (`Files::file`), through the
/// same path as an open, so the open counts, pins and shares come back with the handles that
/// are used again, and never more descriptors at once than are used. Not rebuildable: the
/// data descriptors die with the process, so an inode unlinked while open, which only those
/// kept alive, is freed by ext4 then; its record's reopen answers ESTALE, and recovery settles
/// its charge as after kill -9 (docs/design.md §9.4). Without a supervisor there is no table
/// and an fh is a counter value.
#[derive(Debug)]
pub struct OpenFiles {
    /// fh → open file, from a successful open or create reply until its release.
    pub handles: HandleTable<OpenFile>,
    /// Open handles per inode, exact under the inode's stripe lock (an unlinked inode stays
    /// charged until its last close: `passthrough/account.rs`).
    counts: DashMap<InodeRef, u32>,
    /// The descriptor budget: per-uid shares and the daemon's data descriptors.
    pub limits: Arc<OpenLimits>,
    /// The supervisor's open-file table, set before serving when there is one.
    pub table: OnceLock<OpenTable>,
    /// Handles an earlier process issued and this one has not reopened yet: fh → record.
    /// Changed through `inherit` and `take_inherited` only.
    pub inherited: Mutex<HashMap<u64, OpenRecord>>,
    /// Inherited handles per inode and access (writable): each such pair holds one data
    /// descriptor set aside (`OpenLimits::set_aside`) until its last handle leaves `inherited`.
    pending: Mutex<HashMap<(InodeRef, bool), usize>>,
    /// Held while an inherited handle is reopened, so that two requests on it reopen it once.
    pub reopening: Mutex<()>,
}

impl OpenFiles {
    /// Takes over the handles an earlier process issued, setting their descriptors aside.
    pub fn inherit(&self, records: Vec<(u64, OpenRecord)>) {
        let mut inherited = self.inherited.lock();
        let mut pending = self.pending.lock();
        for (fh, rec) in records {
            if inherited.insert(fh, rec).is_some() {
                continue;
            }
            let n = pending.entry(pending_key(&rec)).or_insert(0);
            if *n == 0 {
                self.limits.set_aside(1);
            }
            *n += 1;
        }
    }

    /// Removes inherited handle `fh` (reopened or released); the last one of its inode and
    /// access gives its descriptor set aside back.
    pub fn take_inherited(&self, fh: u64) -> Option<OpenRecord> {
        let rec = self.inherited.lock().remove(&fh)?;
        let mut pending = self.pending.lock();
        let key = pending_key(&rec);
        if let Some(n) = pending.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&key);
                self.limits.give_back();
            }
        }
        Some(rec)
    }

    /// True if inode `key` has an open file handle. Exact under the inode's stripe lock.
    pub fn is_open(&self, key: InodeRef) -> bool {
        self.counts.get(&key).is_some_and(|n| *n > 0)
    }

    /// Whether closing one handle of `key` would be its last (None: not open).
    pub fn is_last(&self, key: InodeRef) -> Option<bool> {
        self.counts.get(&key).map(|n| *n <= 1)
    }

    /// One open of `key` more (its stripe lock held).
    pub fn count_open(&self, key: InodeRef) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    /// One open of `key` fewer (its stripe lock held); returns whether it was the last (None:
    /// it was not open).
    pub fn count_close(&self, key: InodeRef) -> Option<bool> {
        let last = self.is_last(key)?;
        if last {
            self.counts.remove(&key);
        } else if let Some(mut n) = self.counts.get_mut(&key) {
            *n -= 1;
        }
        Some(last)
    }
}

/// What the kernel and this process agreed at FUSE INIT and this layer must honour.
///
/// Not rebuildable from the kernel: it sends INIT once per connection, so a new process must
/// be handed these (by its predecessor or the process holding the connection) or negotiate
/// them the same way again. Today: lost with the process.
#[derive(Debug)]
pub struct InitSettings {
    /// Apply the request's umask when creating (set when FUSE_DONT_MASK is negotiated: the
    /// kernel then leaves the umask to the file system).
    apply_umask: AtomicBool,
    /// This process took the connection over from another (docs/design.md §18): the kernel may
    /// name nodes the table never held, which are then resolved from their ids.
    adopted: AtomicBool,
}

impl InitSettings {
    pub fn set_adopted(&self) {
        self.adopted.store(true, Ordering::Relaxed);
    }

    pub fn adopted(&self) -> bool {
        self.adopted.load(Ordering::Relaxed)
    }

    pub fn set_apply_umask(&self, on: bool) {
        self.apply_umask.store(on, Ordering::Relaxed);
    }

    pub fn apply_umask(&self) -> bool {
        self.apply_umask.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BackingIndex;

    #[test]
    fn open_counts_say_which_close_is_the_last() {
        let s = ServingState::new(16, Arc::default(), OpenLimits::new(4, 16));
        let key = InodeRef { backing: BackingIndex(0), ino: 12, generation: 7 };
        assert!(!s.opens.is_open(key));
        assert_eq!(s.opens.count_close(key), None, "a close of an inode never opened counts nothing");
        s.opens.count_open(key);
        s.opens.count_open(key);
        assert_eq!(s.opens.is_last(key), Some(false));
        assert_eq!(s.opens.count_close(key), Some(false));
        assert!(s.opens.is_open(key));
        assert_eq!(s.opens.count_close(key), Some(true));
        assert!(!s.opens.is_open(key));
        assert_eq!(s.opens.is_last(key), None, "the last close forgets the inode");
    }

    #[test]
    fn init_settings_start_with_the_kernel_masking() {
        let s = ServingState::new(16, Arc::default(), OpenLimits::new(4, 16));
        assert!(!s.init.apply_umask(), "until INIT negotiates FUSE_DONT_MASK");
        s.init.set_apply_umask(true);
        assert!(s.init.apply_umask());
    }
}
