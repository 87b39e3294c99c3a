//! Rescans held against the ledger: `quotafs check` (a full rescan compared with the ledger's
//! table) and the recount of a routed backing written behind the daemon's back (`rebase`).
//! The walk itself is `crate::scan`.

pub mod rebase;

use std::collections::BTreeMap;

use crate::ids::BackingIndex;
use crate::quota::{BackingUsage, Charge, Subject, Usage};

/// One subject whose ledger figures differ from the rescan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub subject: Subject,
    pub expected: Usage,
    pub found: Usage,
}

/// Subjects where `ledger` differs from `rescan` (`expected` = rescan, `found` = ledger).
pub fn compare(rescan: &BTreeMap<Subject, Usage>, ledger: &BTreeMap<Subject, Usage>) -> Vec<Drift> {
    let mut subjects: Vec<Subject> = rescan.keys().chain(ledger.keys()).copied().collect();
    subjects.sort();
    subjects.dedup();
    subjects
        .into_iter()
        .filter_map(|s| {
            let expected = rescan.get(&s).copied().unwrap_or_default();
            let found = ledger.get(&s).copied().unwrap_or_default();
            (expected != found).then_some(Drift { subject: s, expected, found })
        })
        .collect()
}

/// Adds to a rescan's figures (`usage`, and `per_backing`: the routed backings' shares) the
/// files it cannot see: pinned files, which have no name but are held open, each with its
/// backing and the charge the ledger holds for it, which their last close takes off. Counted
/// so, the ledger and the rescan agree while such files are open, and a repair keeps their
/// charge for the close to release.
pub fn count_pinned(
    usage: &mut BTreeMap<Subject, Usage>,
    mut per_backing: Option<&mut BackingUsage>,
    pinned: &[(BackingIndex, Charge)],
) {
    for (backing, c) in pinned {
        for s in [Subject::User(c.uid), Subject::Project(c.project)] {
            let u = usage.entry(s).or_default();
            u.bytes += c.bytes;
            u.inodes += 1;
            if !backing.is_main()
                && let Some(pb) = per_backing.as_deref_mut()
            {
                let u = pb.entry((*backing, s)).or_default();
                u.bytes += c.bytes;
                u.inodes += 1;
            }
        }
    }
}
