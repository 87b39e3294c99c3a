//! `quotafs status` as JSON: the ledger's figures (`Ledger::status`) with the serving layer's.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::scan::{self, ProgressReading};

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
        "in_progress": scan::running(),
    })
}

/// The file in the state dir where a starting daemon says how far it is (JSON, see
/// [`Starting`]); replaced atomically about every second, removed once the daemon serves.
pub const STARTING_FILE: &str = "starting.json";

/// Where a starting daemon is: `status --json` shows it as `starting`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Starting {
    /// `first-mount count` (counting and tagging every inode), `recovering the ledger`
    /// (replaying the log), or the name of another walk.
    pub phase: String,
    pub inodes: u64,
    pub tagged: u64,
    pub bytes: u64,
    pub dirs_queued: u64,
    /// Seconds since the daemon started.
    pub secs: u64,
}

/// The phase a starting daemon is in, from the walks running in it.
fn phase_of(walk: Option<&ProgressReading>) -> String {
    match walk {
        Some(w) if w.task == scan::TAG_TASK => "first-mount count".into(),
        Some(w) => w.task.clone(),
        None => "recovering the ledger".into(),
    }
}

/// Reads the progress file of a starting daemon in `state_dir`, if there is one.
pub fn read_starting(state_dir: &Path) -> Option<Starting> {
    let text = std::fs::read_to_string(state_dir.join(STARTING_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_starting(state_dir: &Path, s: &Starting) -> std::io::Result<()> {
    let tmp = state_dir.join(format!("{STARTING_FILE}.new"));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(serde_json::to_string(s).unwrap_or_default().as_bytes())?;
    std::fs::rename(&tmp, state_dir.join(STARTING_FILE))
}

/// How often the daemon logs the walks it runs.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The daemon's progress reporter: logs each running walk (first-mount count, `check`,
/// `project assign`) every 10 s, and until [`Reporter::serving`] keeps the state dir's
/// progress file up to date for `quotafs status` (and systemd's `STATUS=` while a walk runs). Dropping it stops the thread and removes
/// the file.
pub struct Reporter {
    state_dir: PathBuf,
    /// True until the daemon serves; held while the file is written, so that once
    /// `serving` has removed it no write brings it back.
    starting: Arc<parking_lot::Mutex<bool>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// `tell` passes a line to the service manager (the daemon's `sd_notify`).
    pub fn spawn(state_dir: &Path, tell: fn(&str)) -> Result<Reporter, super::AdminError> {
        let starting = Arc::new(parking_lot::Mutex::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, starting_t, stop_t) = (state_dir.to_path_buf(), Arc::clone(&starting), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let began = Instant::now();
                let mut logged = Instant::now();
                let mut warned = false;
                while !stop_t.load(Ordering::SeqCst) {
                    let walks = scan::running();
                    let still_starting = starting_t.lock();
                    if *still_starting {
                        let w = walks.last();
                        let s = Starting {
                            phase: phase_of(w),
                            inodes: w.map_or(0, |w| w.inodes),
                            tagged: w.map_or(0, |w| w.tagged),
                            bytes: w.map_or(0, |w| w.bytes),
                            dirs_queued: w.map_or(0, |w| w.dirs_queued),
                            secs: began.elapsed().as_secs(),
                        };
                        // `systemctl status` shows it too (nothing without $NOTIFY_SOCKET).
                        if let Some(w) = w {
                            tell(&format!(
                                "STATUS=starting, {}: {} inodes, {} s",
                                s.phase,
                                scan::grouped(w.inodes),
                                w.secs
                            ));
                        }
                        if let Err(e) = write_starting(&dir, &s)
                            && !std::mem::replace(&mut warned, true)
                        {
                            tracing::warn!(error = %e, "cannot write the progress file; `quotafs status` shows no progress");
                        }
                    }
                    drop(still_starting);
                    if logged.elapsed() >= LOG_EVERY {
                        logged = Instant::now();
                        for w in &walks {
                            tracing::info!(
                                task = %w.task,
                                inodes = w.inodes,
                                tagged = w.tagged,
                                bytes = w.bytes,
                                dirs_queued = w.dirs_queued,
                                secs = w.secs,
                                "in progress: {}",
                                w.line()
                            );
                        }
                    }
                    // Checks `stop` every 100 ms; writes the file every second.
                    for _ in 0..10 {
                        if stop_t.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .map_err(super::AdminError::thread("progress"))?;
        Ok(Reporter { state_dir: state_dir.to_path_buf(), starting, stop, thread: Some(thread) })
    }

    /// The daemon answers on its control socket now: no more progress file.
    pub fn serving(&self) {
        *self.starting.lock() = false;
        let _ = std::fs::remove_file(self.state_dir.join(STARTING_FILE));
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(self.state_dir.join(STARTING_FILE));
        let _ = std::fs::remove_file(self.state_dir.join(format!("{STARTING_FILE}.new")));
    }
}
