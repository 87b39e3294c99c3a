//! Structured logs to stderr (journald picks them up under systemd). The filter comes from
//! QUOTAFS_LOG (e.g. `debug`, `quotafs=trace`), default `info,fuser=error` (fuser warns about
//! unmounting an already unmounted file system after every outside `umount`).
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

pub fn init() {
    let (tx, rx) = sync_channel(QUEUE);
    let started = std::thread::Builder::new().name("log".into()).spawn(move || writer(rx)).is_ok();
    if started {
        let _ = LOG_QUEUE.set(Queue { tx, pending: AtomicU64::new(0), dropped: AtomicU64::new(0) });
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUOTAFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fuser=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(QueuedLine::default)
        .with_target(false)
        .log_internal_errors(false)
        .try_init();
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
