//! Stripe locks and tag stamps: one lock and one counter per stripe of inode numbers (an
//! inode's stripe is its ext4 inode number modulo `STRIPES`, whatever its backing).
//!
//! * The lock serialises every change to the inodes of a stripe: a usage-changing operation
//!   holds the stripes of the inodes it changes from its log record to its settle, and so does
//!   the ledger's reconcile of one file, so the before/after pairs of two changes never
//!   interleave.
//! * The stamp counts the tag writes to inodes of the stripe. A tag cache reads the stamp
//!   *before* reading the tag from disk and keeps it with the tag; every tag writer calls
//!   `tag_written` *after* writing. A cached tag whose stamp still matches was read after the
//!   last write to any inode of that stripe, however the reader and the writer interleaved, and
//!   without either holding the stripe lock.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

const STRIPES: usize = 1024;

#[derive(Debug)]
pub struct Stripes {
    locks: Box<[Mutex<()>]>,
    stamps: Box<[AtomicU64]>,
}

impl Default for Stripes {
    fn default() -> Stripes {
        Stripes {
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stamps: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn stripe(ino: u64) -> usize {
    (ino as usize) % STRIPES
}

impl Stripes {
    /// Serialises changes to inode `ino` (and the others of its stripe).
    pub fn lock(&self, ino: u64) -> MutexGuard<'_, ()> {
        self.locks[stripe(ino)].lock()
    }

    /// Locks the stripes of several inodes, always in ascending stripe order (so two callers
    /// can never wait on each other), each stripe once.
    pub fn lock_many(&self, inos: &[u64]) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = inos.iter().map(|i| stripe(*i)).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| self.locks[i].lock()).collect()
    }

    /// The tag stamp of inode `ino`'s stripe (module docs).
    pub fn tag_stamp(&self, ino: u64) -> u64 {
        self.stamps[stripe(ino)].load(Ordering::Acquire)
    }

    /// Call after writing the tag of inode `ino` (module docs).
    pub fn tag_written(&self, ino: u64) {
        self.stamps[stripe(ino)].fetch_add(1, Ordering::AcqRel);
    }

    /// Call after tags were written behind the caches' back (a recount tagging what was made
    /// outside the mount): every cached tag is stale.
    pub fn all_tags_written(&self) {
        for stamp in self.stamps.iter() {
            stamp.fetch_add(1, Ordering::AcqRel);
        }
    }
}
