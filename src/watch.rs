//! Writes made directly to a routed backing (a client pointed at the backing, not the mount):
//! detected with a fanotify mark on its file system and charged exactly by a recount of that
//! backing (`check::rebase::rebase_backing`); then `changed` runs, which drops the kernel's cached
//! pages of that backing (they are kept across opens only while every change goes through
//! the mount). Opt-in (`watch_routes`): the recount costs a scan of
//! the routed backing, with usage changes paused, after each burst of outside writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backing::{Errno, sys};
use crate::ids::BackingIndex;
use crate::inode::Stripes;
use crate::ledger::{Beside, Ledger};
use crate::quota::enforce::Enforcer;

/// After outside events stop for this long, recount (a burst is charged once).
const QUIET: Duration = Duration::from_millis(300);
/// Under continuous outside writes, recount at least this often.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Why backing `index` cannot be watched. Nothing was started.
#[derive(Debug)]
pub enum WatchError {
    /// The ledger has no backing with this index.
    NoBacking(BackingIndex),
    /// The kernel refused the fanotify mark (no fanotify, or a file system that does not
    /// report the events): outside writes to this backing would go unseen.
    Fanotify { path: String, errno: Errno },
    /// The watcher thread could not be started.
    Thread { path: String, error: std::io::Error },
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::NoBacking(index) => write!(f, "no backing {index}"),
            WatchError::Fanotify { path, errno } => write!(
                f,
                "cannot watch backing {path} with fanotify: {errno}; mount without watch_routes \
                 (writes made directly to it then show as drift in `quotafs check`)"
            ),
            WatchError::Thread { path, error } => write!(f, "cannot start the watcher of {path}: {error}"),
        }
    }
}

impl std::error::Error for WatchError {}

/// Watches backing `index`; returns once the watch is in place (or why it cannot be).
pub fn spawn(
    ledger: Arc<Ledger>,
    stripes: Arc<Stripes>,
    quota: Arc<Enforcer>,
    index: BackingIndex,
    threads: usize,
    stop: Arc<AtomicBool>,
    changed: Box<dyn Fn() + Send>,
) -> Result<std::thread::JoinHandle<()>, WatchError> {
    let b = ledger.backings().get(index.as_usize()).ok_or(WatchError::NoBacking(index))?;
    let path = b.path.display().to_string();
    let group =
        sys::fanotify_watch_fs(b.root_fd()).map_err(|errno| WatchError::Fanotify { path: path.clone(), errno })?;
    let name = path.clone();
    std::thread::Builder::new()
        .name(format!("watch{}", index.0))
        .spawn(move || {
            let me = std::process::id() as i32;
            let mut buf = vec![0u8; 64 * 1024];
            let mut dirty: Option<(Instant, Instant)> = None; // (first, last) outside event
            while !stop.load(Ordering::SeqCst) {
                let pids = match sys::fanotify_pids(std::os::fd::AsFd::as_fd(&group), &mut buf, 100) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(backing = %path, error = %e, "fanotify read failed; outside writes are no longer watched");
                        return;
                    }
                };
                let now = Instant::now();
                if pids.iter().any(|p| *p != me) {
                    dirty = Some((dirty.map_or(now, |d| d.0), now));
                }
                if let Some((first, last)) = dirty
                    && (now - last >= QUIET || now - first >= MAX_DELAY)
                {
                    dirty = None;
                    let beside = Beside { stripes: &stripes, quota: &quota };
                    match crate::check::rebase::rebase_backing(&ledger, beside, index, threads) {
                        Ok(changed) if !changed.is_empty() => {
                            tracing::info!(backing = %path, subjects = changed.len(), "charged writes made directly to the backing");
                        }
                        Ok(_) => {}
                        // Not counted: the next turn tries again.
                        Err(e @ crate::check::rebase::RebaseError::Deferred(_)) => {
                            tracing::warn!(backing = %path, error = %e, "recount after outside writes");
                            dirty = Some((now, now));
                        }
                        Err(e) => tracing::warn!(backing = %path, error = %e, "recount after outside writes failed"),
                    }
                    changed();
                }
            }
        })
        .map_err(|error| WatchError::Thread { path: name, error })
}
