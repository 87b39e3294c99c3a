//! `quotafs status` as JSON: the ledger's figures (`Ledger::status`) with the serving layer's.

use std::time::SystemTime;

use crate::ledger::Ledger;
use crate::passthrough::Passthrough;

/// The ledger's status, the refusals of the quota enforcer and the nodes the kernel holds. The
/// caller adds the pools, the mountpoint and the pid.
pub fn status_json(ledger: &Ledger, ops: &Passthrough) -> serde_json::Value {
    let s = ledger.status();
    let secs =
        |t: Option<SystemTime>| t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs());
    let r = &s.last_recovery;
    serde_json::json!({
        "epoch": s.epoch,
        "log": s.log_path.display().to_string(),
        "log_bytes": s.log_bytes,
        "log_records": s.log_records,
        "log_fsyncs": s.log_syncs,
        "log_records_total": s.log_records_total,
        "log_fsyncs_total": s.log_syncs_total,
        "journal_records": s.journal_records,
        "journal_records_total": s.journal_records_total,
        "last_checkpoint_unix": secs(s.last_checkpoint),
        "poisoned": s.poisoned,
        "last_recovery": {
            "initial_scan": r.initial_scan,
            "scanned_inodes": r.scanned_inodes,
            "from_epoch": r.from_epoch,
            "logs": r.logs,
            "records": r.records,
            "journal_records": r.journal_records,
            "touched_inodes": r.touched,
            "dirty_dirs": r.dirty_dirs,
            "listed_dirs": r.listed_dirs,
            "new_inodes": r.new_inodes,
            "torn_bytes": r.torn_bytes,
            "millis": r.duration.as_millis() as u64,
        },
        "inodes_cached": ops.cached_inodes(),
        "refusals": ops.quota().refusals().iter().map(|(s, n)| serde_json::json!({"kind": s.kind(), "id": s.id(), "refused": n})).collect::<Vec<_>>(),
        "subjects": ledger.table().snapshot().len(),
    })
}
