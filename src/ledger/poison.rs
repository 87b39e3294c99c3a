//! The ledger's one poison state. A failed write or fdatasync of the activity log, or a failed
//! checkpoint (syncfs of a backing, snapshot commit), leaves the ledger not knowing what is
//! durable: from then on every usage-changing operation is refused until the daemon restarts
//! and recovery re-establishes the truth from what *is* durable (docs/design.md §9.6). Nothing
//! clears it: the log writers of later epochs share it, and a checkpoint refuses to run while it
//! is set, so the poison cannot lapse by the log being rotated.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Poison {
    set: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Poison {
    /// Poisons the ledger; the first reason is kept (later failures follow from it).
    pub fn set(&self, why: String) {
        let mut w = self.why.lock();
        if w.is_none() {
            tracing::error!(reason = %why, "ledger poisoned: usage-changing operations are refused until the daemon is restarted");
            *w = Some(why);
        }
        self.set.store(true, Ordering::Release);
    }

    /// Cheap check for the request path.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Why the ledger is poisoned, if it is.
    pub fn reason(&self) -> Option<String> {
        if !self.is_set() {
            return None;
        }
        self.why.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_stays() {
        let p = Poison::default();
        assert_eq!(p.reason(), None);
        p.set("fdatasync: EIO".into());
        p.set("a later failure".into());
        assert!(p.is_set());
        assert_eq!(p.reason().as_deref(), Some("fdatasync: EIO"));
    }
}
