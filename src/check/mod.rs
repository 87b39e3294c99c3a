//! `quotafs check`: a full parallel rescan of the backings, compared with the ledger.

pub mod scan;

use std::collections::BTreeMap;

use crate::quota::{Subject, Usage};

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
