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
/// In a scan (first mount, `check`), before each directory is listed: slows a walk down so a
/// test can watch its progress.
pub static SCAN_DIR: Pause = Pause::new("QUOTAFS_FAILPOINT_SCAN_DIR_PAUSE_MS");
/// At daemon start, between binding a socket and its being reachable at its final path and mode.
pub static SOCKET_BOUND: Pause = Pause::new("QUOTAFS_FAILPOINT_SOCKET_BOUND_PAUSE_MS");
/// In an open, after the backing file was opened and before the open is counted (an unlink
/// then finds the file closed).
pub static OPEN_COUNTING: Pause = Pause::new("QUOTAFS_FAILPOINT_OPEN_COUNTING_PAUSE_MS");

/// An I/O fault the tests switch on while the daemon runs: with `QUOTAFS_FAILPOINT_<NAME>_FILE`
/// set to a path, every pass through point `<NAME>` while that file exists fails with the errno
/// named in it (`EIO`, `ENOSPC`; anything else reads as EIO). Unset (always, in production), a
/// point costs one load of an initialised `OnceLock`.
pub struct Fault {
    var: &'static str,
    path: OnceLock<Option<std::path::PathBuf>>,
}

impl Fault {
    pub const fn new(var: &'static str) -> Fault {
        Fault { var, path: OnceLock::new() }
    }

    /// `Err` with the configured errno while the trigger file exists.
    pub fn check(&self) -> std::io::Result<()> {
        let path = self.path.get_or_init(|| std::env::var_os(self.var).map(Into::into));
        let Some(path) = path else { return Ok(()) };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let errno = if text.trim() == "ENOSPC" { libc::ENOSPC } else { libc::EIO };
                Err(std::io::Error::from_raw_os_error(errno))
            }
            Err(_) => Ok(()),
        }
    }
}

/// The kernel's INIT: while the trigger file exists, read as if it did not offer
/// FUSE_HAS_RESEND (an older kernel), whatever it offered.
pub static INIT_NO_RESEND: Fault = Fault::new("QUOTAFS_FAILPOINT_INIT_NO_RESEND_FILE");
/// The activity log's fdatasync (after its write).
pub static LOG_SYNC: Fault = Fault::new("QUOTAFS_FAILPOINT_LOG_SYNC_FILE");
/// The snapshot commit to the store at the end of a checkpoint.
pub static SNAPSHOT_COMMIT: Fault = Fault::new("QUOTAFS_FAILPOINT_SNAPSHOT_COMMIT_FILE");
/// A record written to a backing's journal directory (`ledger/journal.rs`): failing it makes
/// the ledger log that record with an fdatasync instead.
pub static JOURNAL_RECORD: Fault = Fault::new("QUOTAFS_FAILPOINT_JOURNAL_RECORD_FILE");

/// Holds a thread at a point while a trigger file exists: with `QUOTAFS_FAILPOINT_<NAME>_FILE`
/// set to a path, every pass through point `<NAME>` waits (up to a minute) until that file is
/// gone, so a test can act (kill the process) while a request is there; it writes
/// `<path>.held` when it starts holding. Unset (always, in
/// production), a point costs one load of an initialised `OnceLock`.
pub struct Hold {
    var: &'static str,
    path: OnceLock<Option<std::path::PathBuf>>,
}

impl Hold {
    pub const fn new(var: &'static str) -> Hold {
        Hold { var, path: OnceLock::new() }
    }

    pub fn hold(&self) {
        let path = self.path.get_or_init(|| std::env::var_os(self.var).map(Into::into));
        let Some(path) = path else { return };
        if !path.exists() {
            return;
        }
        // Says where it holds, for the test to act on.
        let mut held = path.clone().into_os_string();
        held.push(".held");
        let _ = std::fs::write(&held, b"");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// In the FUSE handshake, after the INIT was read and before it is answered.
pub static INIT_REPLY: Hold = Hold::new("QUOTAFS_FAILPOINT_INIT_REPLY_FILE");
/// In a name operation (mknod, mkdir, symlink, link, create, unlink, rmdir, rename), after the
/// backing call and before the reply: a process killed there made the change and never
/// answered, and the kernel resends the request to the next one (docs/design.md §18).
pub static NAME_REPLY: Hold = Hold::new("QUOTAFS_FAILPOINT_NAME_REPLY_FILE");
