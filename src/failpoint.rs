//! Pauses at the points where a crash or a race matters, for the tests that reproduce them
//! deterministically: `QUOTAFS_FAILPOINT_<NAME>_PAUSE_MS=<ms>` in the daemon's environment
//! makes every pass through point `<NAME>` sleep that long. Unset (always, in production),
//! a point costs one load of an initialised `OnceLock`.

use std::sync::OnceLock;
use std::time::Duration;

pub struct Pause {
    var: &'static str,
    ms: OnceLock<Option<u64>>,
}

impl Pause {
    pub const fn new(var: &'static str) -> Pause {
        Pause { var, ms: OnceLock::new() }
    }

    pub fn hit(&self) {
        let ms = *self.ms.get_or_init(|| std::env::var(self.var).ok().and_then(|v| v.parse().ok()));
        if let Some(ms) = ms {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

/// In a checkpoint, between the log rotation and the snapshot commit (a crash there recovers
/// from two logs).
pub static CHECKPOINT: Pause = Pause::new("QUOTAFS_FAILPOINT_CHECKPOINT_PAUSE_MS");
/// In a checkpoint, just after the snapshot commit, before the old log is removed.
pub static CHECKPOINT_COMMITTED: Pause = Pause::new("QUOTAFS_FAILPOINT_CHECKPOINT_COMMITTED_PAUSE_MS");
/// In a creation, after the backing call made the inode and before it is tagged.
pub static CREATE_UNTAGGED: Pause = Pause::new("QUOTAFS_FAILPOINT_CREATE_UNTAGGED_PAUSE_MS");
/// In `project assign`, after a directory was re-tagged and before it is listed.
pub static ASSIGN_LISTING: Pause = Pause::new("QUOTAFS_FAILPOINT_ASSIGN_LISTING_PAUSE_MS");
/// In `project assign`, after an entry was listed and opened, before it is re-tagged.
pub static ASSIGN_RETAG: Pause = Pause::new("QUOTAFS_FAILPOINT_ASSIGN_RETAG_PAUSE_MS");
/// At daemon start, between binding a socket and its being reachable at its final path and mode.
pub static SOCKET_BOUND: Pause = Pause::new("QUOTAFS_FAILPOINT_SOCKET_BOUND_PAUSE_MS");
