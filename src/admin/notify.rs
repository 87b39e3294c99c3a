//! Quota notifications, like warnquota: the operator's `notify_command` is run when a subject
//! goes over a soft limit, when its grace period has run out, and when an allocation of it is
//! refused, at most once per `notify_interval` for each subject and kind of event.
//!
//! The request path only checks the rate limit and queues the event (a bounded queue: when
//! it is full the event is dropped and counted); one worker thread runs the commands, one at a
//! time, each without a shell (argv from the configuration), as root (the daemon's user: it
//! is the operator's own command, from root's configuration), in a process group of its own,
//! with stdin, stdout and stderr on /dev/null, an environment of PATH and the QUOTAFS_*
//! variables only, and `notify_timeout` to finish before the whole group is killed.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::AdminError;
pub use crate::config::{DEFAULT_INTERVAL, DEFAULT_TIMEOUT, NotifyConfig};
use crate::ledger::Ledger;
use crate::quota::Subject;
use crate::quota::enforce::{Event, EventKind};

/// Events waiting for the worker; past it they are dropped (and counted).
const QUEUE: usize = 256;

/// Notification figures, for the metrics.
#[derive(Default)]
pub struct Counters {
    pub run: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Installs the hook on the enforcer and starts the worker (which names subjects through the
/// ledger's store).
pub fn start(
    cfg: NotifyConfig,
    quota: &crate::quota::enforce::Enforcer,
    ledger: &Arc<Ledger>,
    mountpoint: String,
) -> Result<Arc<Counters>, AdminError> {
    let counters = Arc::new(Counters::default());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(QUEUE);
    let names_ledger = Arc::clone(ledger);
    let (worker_counters, worker_cfg) = (Arc::clone(&counters), cfg.clone());
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || worker(&rx, &worker_cfg, &names_ledger, &mountpoint, &worker_counters))
        .map_err(AdminError::thread("notification"))?;
    let limiter = Limiter { interval: cfg.interval, last: Mutex::new(HashMap::new()) };
    let hook_counters = Arc::clone(&counters);
    quota.set_hook(Box::new(move |ev: Event| queue(&limiter, &tx, &hook_counters, ev)));
    Ok(counters)
}

struct Limiter {
    interval: Duration,
    last: Mutex<HashMap<(Subject, EventKind), Instant>>,
}

impl Limiter {
    /// Whether an event of `kind` for `s` may go out now (and, if so, records it).
    fn due(&self, s: Subject, kind: EventKind) -> bool {
        let mut last = self.last.lock();
        let now = Instant::now();
        match last.get(&(s, kind)) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            _ => {
                last.insert((s, kind), now);
                true
            }
        }
    }
}

/// On the request path: rate limit, then queue without blocking.
fn queue(limiter: &Limiter, tx: &SyncSender<Event>, counters: &Counters, ev: Event) {
    if !limiter.due(ev.subject, ev.kind) {
        return;
    }
    match tx.try_send(ev) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The command's environment for `ev`.
pub fn environment(ev: &Event, name: Option<String>, mountpoint: &str) -> Vec<(&'static str, String)> {
    let (soft, hard) = match ev.inodes {
        true => (ev.limits.inodes_soft, ev.limits.inodes_hard),
        false => (ev.limits.bytes_soft, ev.limits.bytes_hard),
    };
    vec![
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("QUOTAFS_EVENT", ev.kind.as_str().into()),
        ("QUOTAFS_SUBJECT_KIND", ev.subject.kind().into()),
        ("QUOTAFS_SUBJECT_ID", ev.subject.id().to_string()),
        ("QUOTAFS_SUBJECT_NAME", name.unwrap_or_default()),
        ("QUOTAFS_RESOURCE", if ev.inodes { "inodes" } else { "bytes" }.into()),
        ("QUOTAFS_USAGE", ev.usage.to_string()),
        ("QUOTAFS_SOFT_LIMIT", opt(soft)),
        ("QUOTAFS_HARD_LIMIT", opt(hard)),
        ("QUOTAFS_GRACE_SECS", ev.limits.grace_secs().to_string()),
        ("QUOTAFS_GRACE_EXPIRES", opt(ev.grace_expires)),
        ("QUOTAFS_CALLER_UID", opt(ev.caller_uid.map(u64::from))),
        ("QUOTAFS_MOUNTPOINT", mountpoint.into()),
    ]
}

fn worker(rx: &Receiver<Event>, cfg: &NotifyConfig, ledger: &Ledger, mountpoint: &str, counters: &Counters) {
    while let Ok(ev) = rx.recv() {
        let name = match ev.subject {
            Subject::User(uid) => super::names::user_name(uid),
            Subject::Project(id) => ledger.project_names().get(&id).cloned(),
        };
        counters.run.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = run_one(cfg, &environment(&ev, name, mountpoint)) {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(command = %cfg.command.join(" "), event = ev.kind.as_str(), subject = ?ev.subject,
                error = %e, "notification command failed");
        }
    }
}

/// How a notification command failed (logged; the next event runs it again).
#[derive(Debug)]
enum CommandFailed {
    Spawn(std::io::Error),
    Status(std::process::ExitStatus),
    /// Still running at `notify_timeout`: its process group was killed.
    Timeout(Duration),
    Wait(std::io::Error),
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandFailed::Spawn(e) => write!(f, "cannot start it: {e}"),
            CommandFailed::Status(status) => write!(f, "it ended with {status}"),
            CommandFailed::Timeout(t) => write!(f, "killed after notify_timeout ({} s)", t.as_secs_f64()),
            CommandFailed::Wait(e) => write!(f, "cannot wait for it: {e}"),
        }
    }
}

/// Runs the command once with `env`; Err says how it failed.
fn run_one(cfg: &NotifyConfig, env: &[(&'static str, String)]) -> Result<(), CommandFailed> {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = cfg.command.split_first() else { return Ok(()) };
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(CommandFailed::Spawn)?;
    let deadline = Instant::now() + cfg.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(CommandFailed::Status(status)),
            Ok(None) if Instant::now() >= deadline => {
                // The whole group: whatever it started goes too.
                let _ = crate::backing::sys::kill_group(child.id(), libc::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandFailed::Timeout(cfg.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(CommandFailed::Wait(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_one_event_per_subject_and_kind_through_per_interval() {
        let l = Limiter { interval: Duration::from_secs(3600), last: Mutex::new(HashMap::new()) };
        assert!(l.due(Subject::User(1), EventKind::Refused));
        assert!(!l.due(Subject::User(1), EventKind::Refused));
        assert!(l.due(Subject::User(1), EventKind::SoftExceeded));
        assert!(l.due(Subject::User(2), EventKind::Refused));
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_timeout() {
        let cfg = NotifyConfig {
            command: vec!["/bin/sh".into(), "-c".into(), "sleep 30 & sleep 30".into()],
            interval: DEFAULT_INTERVAL,
            timeout: Duration::from_millis(300),
        };
        let err = run_one(&cfg, &[]).unwrap_err();
        assert!(matches!(err, CommandFailed::Timeout(_)), "{err}");
    }
}
