//! Structured logs to stderr (journald picks them up under systemd). The filter comes from
//! QUOTAFS_LOG (e.g. `debug`, `quotafs=trace`), default `info`; a filter that does not parse
//! refuses the start. Lines are text, with colours only when stderr is a
//! terminal (a journal or a file gets none), or one JSON object per line with
//! `--log-format json`, for log shippers.
//!
//! No thread waits for, or fails on, the log: each line goes into a bounded queue (`QUEUE`
//! lines) that one `log` thread writes to stderr. A line that does not fit (stderr stalled: a
//! journal or a pipe reader that stopped reading) is dropped and counted, and the count is
//! logged once the writer catches up; a line that cannot be written (a pipe whose reader is
//! gone, a full disk) is dropped. Nothing panics for want of a log: the fmt layer's own error
//! reports (`eprintln!`, which panics on a broken stderr) are off and never triggered.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Lines waiting for the `log` thread at most.
pub const QUEUE: usize = 4096;

struct Queue {
    tx: SyncSender<Vec<u8>>,
    /// Lines queued and not yet written (or given up on).
    pending: AtomicU64,
    /// Lines dropped because the queue was full, since the last report.
    dropped: AtomicU64,
}

static LOG_QUEUE: OnceLock<Queue> = OnceLock::new();

/// One log line being formatted; queued when the fmt layer drops it.
#[derive(Default)]
pub struct QueuedLine(Vec<u8>);

impl Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        match LOG_QUEUE.get() {
            Some(q) => {
                q.pending.fetch_add(1, Ordering::SeqCst);
                match q.tx.try_send(line) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        q.pending.fetch_sub(1, Ordering::SeqCst);
                        q.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // No log thread (it could not be started): write here, dropping on failure.
            None => {
                let _ = std::io::stderr().write_all(&line);
            }
        }
    }
}

fn writer(rx: Receiver<Vec<u8>>) {
    let mut err = std::io::stderr();
    for line in rx {
        if let Some(q) = LOG_QUEUE.get() {
            let dropped = q.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let _ = writeln!(err, "quotafs: {dropped} log lines dropped (stderr did not keep up)");
            }
        }
        let _ = err.write_all(&line);
        if let Some(q) = LOG_QUEUE.get() {
            q.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    // Plain comments, not doc comments: clap would list described values in a long help
    // layout that every subcommand's --help then takes.
    // One human-readable line per event (colours only on a terminal).
    #[default]
    Text,
    // One JSON object per line (timestamp, level, fields), for log shippers.
    Json,
}

/// The filter QUOTAFS_LOG asks for, or the default; an error names what does not parse.
fn filter() -> Result<tracing_subscriber::EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    // `fuser` is no longer a dependency; filters written for it still load.
    const TARGETS: [&str; 3] = ["quotafs", "fuser", "redb"];
    let v = match std::env::var("QUOTAFS_LOG") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => return Ok(tracing_subscriber::EnvFilter::new("info")),
    };
    let wrong = |why: String| {
        format!(
            "QUOTAFS_LOG={v:?} is not a log filter ({why}); use a level (error, warn, info, debug, trace) \
             or directives such as `info,redb=warn` or `quotafs=debug`"
        )
    };
    // A bare word that is no level names a target; one that is none of ours is a typo
    // (`debgu`) that would silently log nothing.
    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty() && !d.contains(['=', '['])) {
        let known = LEVELS.contains(&d.to_ascii_lowercase().as_str())
            || matches!(d, "0" | "1" | "2" | "3" | "4" | "5")
            || TARGETS.iter().any(|t| d == *t || d.starts_with(&format!("{t}::")));
        if !known {
            return Err(wrong(format!("{d:?} is neither a level nor one of quotafs's targets")));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| wrong(e.to_string()))
}

/// Starts the log thread and the subscriber. Fails only for a QUOTAFS_LOG that does not parse.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = filter()?;
    let (tx, rx) = sync_channel(QUEUE);
    let started = std::thread::Builder::new().name("log".into()).spawn(move || writer(rx)).is_ok();
    if started {
        let _ = LOG_QUEUE.set(Queue { tx, pending: AtomicU64::new(0), dropped: AtomicU64::new(0) });
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(QueuedLine::default)
        .with_target(false)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    Ok(())
}

/// Waits (at most `timeout`) until the queued lines are written: before the process exits.
pub fn flush(timeout: Duration) {
    let Some(q) = LOG_QUEUE.get() else { return };
    let deadline = Instant::now() + timeout;
    while q.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Prints one line to stderr, dropping it if stderr cannot take it (unlike `eprintln!`).
pub fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n"));
}
