//! Stripe locks and tag stamps: one lock and one counter per stripe of inodes. Each backing
//! has stripes of its own (an inode's stripe is its backing's set, then a hash of its ext4
//! number), so an operation stuck in one backing (a frozen or dead Dropbox disk) can hold up
//! only operations on that backing: with one set for all, the 1 in 1,024 inodes of the main
//! tree that shared a stripe with a stuck Dropbox operation stalled (a few hundred creates were
//! enough to meet one; `tests/routed_frozen.rs`).
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

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::ids::BackingIndex;

const STRIPES: usize = 1024;

/// A stripe `Stripes::lock_also` could not take without waiting out of order.
#[derive(Debug, PartialEq, Eq)]
pub struct WouldBlock;

/// One backing's stripes.
#[derive(Debug)]
struct Set {
    locks: Box<[Mutex<()>]>,
    stamps: Box<[AtomicU64]>,
}

impl Set {
    fn new() -> Set {
        Set {
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stamps: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

#[derive(Debug)]
pub struct Stripes {
    /// By backing index; a backing's set is made when first used.
    sets: Box<[OnceLock<Set>]>,
}

impl Default for Stripes {
    fn default() -> Stripes {
        Stripes { sets: (0..=u8::MAX).map(|_| OnceLock::new()).collect() }
    }
}

/// The stripe of ext4 number `ino` within its backing's set: Fibonacci hashing, so that
/// consecutive numbers land far apart.
fn stripe(ino: u64) -> usize {
    (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STRIPES.trailing_zeros())) as usize
}

impl Stripes {
    fn set(&self, backing: BackingIndex) -> &Set {
        self.sets[usize::from(backing.0)].get_or_init(Set::new)
    }

    /// Serialises changes to inode `ino` of `backing` (and the others of its stripe).
    pub fn lock(&self, backing: BackingIndex, ino: u64) -> MutexGuard<'_, ()> {
        self.set(backing).locks[stripe(ino)].lock()
    }

    /// Locks the stripes of several inodes, always in ascending (backing, stripe) order (so
    /// two callers can never wait on each other), each stripe once.
    pub fn lock_many(&self, inos: &[(BackingIndex, u64)]) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<(BackingIndex, usize)> = inos.iter().map(|&(b, i)| (b, stripe(i))).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|(b, i)| self.set(b).locks[i].lock()).collect()
    }

    /// Locks the stripe of inode `next` while the caller holds the stripe of `held` (and
    /// no other): waits for it if it comes after `held`'s in `lock_many`'s order, only tries
    /// it if it comes before (waiting then could deadlock with a caller taking both in
    /// order). `Ok(None)`: the same stripe, already held. `Err(WouldBlock)`: the try failed;
    /// the caller lets go of `held` and takes both with `lock_many`.
    pub fn lock_also(
        &self,
        held: (BackingIndex, u64),
        next: (BackingIndex, u64),
    ) -> Result<Option<MutexGuard<'_, ()>>, WouldBlock> {
        let (h, n) = ((held.0, stripe(held.1)), (next.0, stripe(next.1)));
        let lock = &self.set(next.0).locks[n.1];
        match h.cmp(&n) {
            std::cmp::Ordering::Equal => Ok(None),
            std::cmp::Ordering::Less => Ok(Some(lock.lock())),
            std::cmp::Ordering::Greater => lock.try_lock().map(Some).ok_or(WouldBlock),
        }
    }

    /// The tag stamp of inode `ino`'s stripe (module docs).
    pub fn tag_stamp(&self, backing: BackingIndex, ino: u64) -> u64 {
        self.set(backing).stamps[stripe(ino)].load(Ordering::Acquire)
    }

    /// Call after writing the tag of inode `ino` (module docs).
    pub fn tag_written(&self, backing: BackingIndex, ino: u64) {
        self.set(backing).stamps[stripe(ino)].fetch_add(1, Ordering::AcqRel);
    }

    /// Call after tags were written behind the caches' back (a recount tagging what was made
    /// outside the mount): every cached tag is stale.
    pub fn all_tags_written(&self) {
        for set in self.sets.iter().filter_map(OnceLock::get) {
            for stamp in set.stamps.iter() {
                stamp.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two backings never share a stripe: holding every stripe of one leaves the other's free.
    #[test]
    fn a_backing_held_whole_leaves_the_others_free() {
        let s = Stripes::default();
        let all: Vec<_> = {
            let inos: Vec<(BackingIndex, u64)> = (0..20_000u64).map(|i| (BackingIndex(1), i)).collect();
            s.lock_many(&inos)
        };
        assert_eq!(all.len(), STRIPES, "20,000 numbers cover every stripe of backing 1");
        for ino in 0..20_000u64 {
            assert!(s.set(BackingIndex(0)).locks[stripe(ino)].try_lock().is_some(), "ino {ino} of backing 0");
        }
        let spread: std::collections::BTreeSet<usize> = (2..2050u64).map(stripe).collect();
        assert!(spread.len() > 900, "2048 consecutive numbers on {} stripes", spread.len());
    }

    /// `lock_also` waits only in `lock_many`'s order: a stripe after the held one is taken, a
    /// stripe before it that another thread holds is refused at once, the held one is not
    /// taken twice.
    #[test]
    fn lock_also_never_waits_out_of_order() {
        let s = Stripes::default();
        let b = BackingIndex(0);
        let (lo, hi) = {
            let (x, y) = (2u64, (3u64..).find(|i| stripe(*i) != stripe(2)).unwrap());
            if stripe(x) < stripe(y) { (x, y) } else { (y, x) }
        };
        let same = (lo + 1..).find(|i| stripe(*i) == stripe(lo)).unwrap();
        {
            let _held = s.lock(b, lo);
            assert!(matches!(s.lock_also((b, lo), (b, same)), Ok(None)), "same stripe: nothing more to take");
            assert!(matches!(s.lock_also((b, lo), (b, hi)), Ok(Some(_))), "after the held one: taken");
        }
        let _held = s.lock(b, hi);
        let other = std::thread::scope(|t| {
            let (taken, done) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
            let (s, tx, rx) = (&s, taken.0, done.1);
            t.spawn(move || {
                let _lo = s.lock(b, lo);
                tx.send(()).unwrap();
                let _ = rx.recv();
            });
            taken.1.recv().unwrap();
            let r = s.lock_also((b, hi), (b, lo)).err();
            done.0.send(()).unwrap();
            r
        });
        assert_eq!(other, Some(WouldBlock), "before the held one and held elsewhere: refused, not awaited");
        assert!(matches!(s.lock_also((b, hi), (b, lo)), Ok(Some(_))), "before the held one and free: taken");
    }
}
