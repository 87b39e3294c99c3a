//! The recount of a routed backing that was written behind the daemon's back (at mount, and
//! by `watch` after outside writes): a rescan of that backing alone, tagging what is untagged,
//! held against the ledger's share of it with usage changes paused.

use crate::ids::BackingIndex;
use crate::ledger::{Beside, Ledger};
use crate::quota::Subject;
use crate::scan::{self, Mode, ScanError};

/// Why a routed backing was not recounted. The ledger is unchanged in every case.
#[derive(Debug)]
pub enum RebaseError {
    /// The ledger has no backing with this index.
    NoBacking(BackingIndex),
    /// The scan could not start (its root could not be read).
    Scan(ScanError),
    /// The scan ran, but `errors` entries of backing `path` could not be read: a partial count
    /// would be wrong, so none is applied. A later recount (the next outside write, or the next
    /// mount) tries again.
    Unreadable { errors: u64, path: std::path::PathBuf },
    /// No quiet moment came within the bounded wait (an operation stuck in a backing that
    /// does not answer): nothing was counted; the caller tries again later.
    Deferred(crate::ledger::LedgerError),
}

impl std::fmt::Display for RebaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebaseError::NoBacking(index) => write!(f, "no backing {index}"),
            RebaseError::Scan(e) => e.fmt(f),
            RebaseError::Unreadable { errors, path } => {
                write!(f, "{errors} entries of {} could not be read; not recounted", path.display())
            }
            RebaseError::Deferred(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RebaseError {}

impl From<ScanError> for RebaseError {
    fn from(e: ScanError) -> RebaseError {
        RebaseError::Scan(e)
    }
}

/// Recounts routed backing `index` (tagging what was made behind the daemon's back) with
/// usage changes paused, and moves the totals by what differs from the ledger's share of that
/// backing: writes made directly to it are charged exactly, and grace timers follow. Returns
/// the subjects that changed.
pub fn rebase_backing(
    ledger: &Ledger,
    beside: Beside<'_>,
    index: BackingIndex,
    threads: usize,
) -> Result<Vec<Subject>, RebaseError> {
    let b = ledger.backings().get(index.as_usize()).ok_or(RebaseError::NoBacking(index))?;
    let recount = ledger.paused_within(Ledger::ROTATION_WAIT, "the recount of a watched backing", |paused| {
        let mut r = scan::scan(std::slice::from_ref(b), Mode::Tag, threads)?;
        // Pinned files on it are charged until their last close, which takes them off.
        let pinned: Vec<_> = ledger.pinned_charges().into_iter().filter(|(k, _)| *k == index).collect();
        super::count_pinned(&mut r.usage, None, &pinned);
        if r.errors > 0 {
            return Err(RebaseError::Unreadable { errors: r.errors, path: b.path.clone() });
        }
        // The scan tagged what was made behind our back: every cached tag may be stale.
        beside.stripes.all_tags_written();
        let changed = ledger.rebase_routed(paused, index, &r.usage);
        for s in &changed {
            beside.quota.settled(ledger.table(), &[*s]);
        }
        Ok(changed)
    });
    recount.map_err(RebaseError::Deferred)?
}
