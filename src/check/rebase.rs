//! The recount of a routed backing that was written behind the daemon's back (at mount, and
//! by `watch` after outside writes): a rescan of that backing alone, tagging what is untagged,
//! held against the ledger's share of it with usage changes paused.

use crate::ids::BackingIndex;
use crate::ledger::{Beside, Ledger};
use crate::quota::Subject;
use crate::scan::{self, Mode};

/// Recounts routed backing `index` (tagging what was made behind the daemon's back) with
/// usage changes paused, and moves the totals by what differs from the ledger's share of that
/// backing: writes made directly to it are charged exactly, and grace timers follow. Returns
/// the subjects that changed.
pub fn rebase_backing(
    ledger: &Ledger,
    beside: Beside<'_>,
    index: BackingIndex,
    threads: usize,
) -> Result<Vec<Subject>, String> {
    let b = ledger.backings().get(index.as_usize()).ok_or_else(|| format!("no backing {index}"))?;
    ledger.paused(|paused| {
        let mut r = scan::scan(std::slice::from_ref(b), Mode::Tag, threads)?;
        // Pinned files on it are charged until their last close, which takes them off.
        let pinned: Vec<_> = ledger.pinned_charges().into_iter().filter(|(k, _)| *k == index).collect();
        super::count_pinned(&mut r.usage, None, &pinned);
        if r.errors > 0 {
            return Err(format!("{} entries of {} could not be read; not recounted", r.errors, b.path.display()));
        }
        // The scan tagged what was made behind our back: every cached tag may be stale.
        beside.stripes.all_tags_written();
        let changed = ledger.rebase_routed(paused, index, &r.usage);
        for s in &changed {
            beside.quota.settled(ledger.table(), &[*s]);
        }
        Ok(changed)
    })
}
