//! The daemon's side of `quotafs quota dump` and `restore`: every limit and project name,
//! read or replaced at once.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, LedgerError};
use crate::quota::enforce::Enforcer;
use crate::quota::limits::{LimitError, LimitKey, Limits};

/// Why a restore changed nothing: the dump names a key no subject has, or the store refused
/// the transaction (then neither the store nor the limits in force changed).
#[derive(Debug)]
pub enum RestoreError {
    Limits(LimitError),
    Ledger(LedgerError),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreError::Limits(e) => e.fmt(f),
            RestoreError::Ledger(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RestoreError {}

impl From<LimitError> for RestoreError {
    fn from(e: LimitError) -> RestoreError {
        RestoreError::Limits(e)
    }
}

impl From<LedgerError> for RestoreError {
    fn from(e: LedgerError) -> RestoreError {
        RestoreError::Ledger(e)
    }
}

/// Every limit (by `LimitKey::key()`, own and default) and every project name. On the
/// control socket each map is a list of `[key, value]` pairs (integer keys survive the
/// internally tagged `Request`, which JSON object keys would not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsDump {
    #[serde(with = "pairs")]
    pub limits: BTreeMap<u64, Limits>,
    #[serde(with = "pairs")]
    pub names: BTreeMap<u32, String>,
}

/// A map as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(m: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl LimitsDump {
    /// The limits by subject; a key that names no subject is refused.
    pub fn keyed(&self) -> Result<HashMap<LimitKey, Limits>, LimitError> {
        self.limits.iter().map(|(k, l)| LimitKey::from_key(*k).map(|k| (k, *l)).ok_or(LimitError::BadKey(*k))).collect()
    }
}

/// The ledger's limits and project names.
pub fn dump(ledger: &Ledger, quota: &Enforcer) -> LimitsDump {
    LimitsDump {
        limits: quota.all_limits().into_iter().map(|(k, l)| (k.key(), l)).collect(),
        names: ledger.project_names(),
    }
}

/// Replaces every limit and project name with `d`'s: in the store in one transaction (so all
/// or nothing, durable on return), then in force; grace timers start or stop at once.
pub fn restore(ledger: &Ledger, quota: &Enforcer, d: &LimitsDump) -> Result<String, RestoreError> {
    let limits = d.keyed()?;
    ledger.store().replace_limits_and_names(&limits, &d.names)?;
    let e = quota;
    for k in e.all_limits().keys() {
        if !limits.contains_key(k) {
            e.set(*k, None);
        }
    }
    for (k, l) in &limits {
        e.set(*k, Some(*l));
    }
    let subjects: Vec<_> = ledger.table().snapshot().into_keys().collect();
    e.settled(ledger.table(), &subjects);
    Ok(format!("restored {} limit entries and {} project names", limits.len(), d.names.len()))
}
