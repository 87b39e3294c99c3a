//! Metrics in the Prometheus text exposition format (version 0.0.4): served over HTTP on a
//! configured address (`metrics_listen`) and/or written to a file for node_exporter's textfile
//! collector (`metrics_textfile`).
//!
//! The HTTP responder is deliberately small and bounded, so that nothing that can reach the
//! port can take the daemon down or hold up its requests: one accept thread, `WORKERS`
//! handler threads fed through a queue of `QUEUE` connections (a connection past it is closed
//! at once), requests of at most `MAX_REQUEST` bytes read within `DEADLINE` (else dropped),
//! answers written within `DEADLINE`, one request per connection (HTTP/1.0, `Connection:
//! close`). Rendering reads counters and one snapshot of the usage table; no lock of the
//! request path is held while a client is written to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

pub use crate::config::{DEFAULT_MAX_SUBJECTS, MetricsConfig};
use crate::ledger::Ledger;
use crate::quota::Subject;
use crate::quota::limits::LimitKey;

mod http;
pub use http::{start, write_textfile};

/// Handler threads of the HTTP endpoint.
const WORKERS: usize = 2;
/// Accepted connections waiting for a handler; past it a connection is closed unanswered.
const QUEUE: usize = 16;
/// Largest request (request line and headers) read; a longer one is answered 431.
const MAX_REQUEST: usize = 8192;
/// Time a client has from its accept to send its request, and then to take the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Interval between rewrites of the textfile.
pub const TEXTFILE_INTERVAL: Duration = Duration::from_secs(15);

/// Checkpoint figures since the daemon started (the ledger keeps only the time of the last).
#[derive(Default)]
pub struct Checkpoints {
    pub count: AtomicU64,
    pub failures: AtomicU64,
    pub last_micros: AtomicU64,
    pub sum_micros: AtomicU64,
}

impl Checkpoints {
    /// `ledger.checkpoint(beside)`, timed and counted.
    pub fn run(&self, ledger: &Ledger, beside: crate::ledger::Beside<'_>) -> Result<u64, crate::ledger::LedgerError> {
        let started = Instant::now();
        let result = ledger.checkpoint(beside);
        let micros = started.elapsed().as_micros() as u64;
        match result {
            Ok(_) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                self.last_micros.store(micros, Ordering::Relaxed);
                self.sum_micros.fetch_add(micros, Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

/// What the exposition is made of.
pub struct Source {
    pub ledger: Arc<Ledger>,
    /// The limits in force, grace timers and refusals.
    pub quota: Arc<crate::quota::enforce::Enforcer>,
    pub pools: Arc<crate::fuse::pool::Pools>,
    pub checkpoints: Arc<Checkpoints>,
    /// Per-subject series are written for at most this many subjects (by id order); the rest
    /// are counted in `quotafs_metrics_subjects_omitted`.
    pub max_subjects: usize,
    /// Notifications queued, run, and dropped (queue full), when notifications are on.
    pub notify: Option<Arc<crate::admin::notify::Counters>>,
    /// The last exposition and when it was made: reused for `CACHE_TTL`, so that however
    /// often the port is asked, the usage table is copied at most once a second.
    pub cache: Mutex<Option<(Instant, Arc<String>)>>,
}

/// How long one rendering is served.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// Escapes a label value (backslash, double quote, newline), as the format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            self.0.push('{');
            self.0.push_str(&parts.join(","));
            self.0.push('}');
        }
        self.0.push_str(&format!(" {value}\n"));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

fn unix(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

impl Source {
    /// The exposition, at most `CACHE_TTL` old.
    pub fn exposition(&self) -> Arc<String> {
        let mut slot = self.cache.lock();
        if let Some((at, text)) = &*slot
            && at.elapsed() < CACHE_TTL
        {
            return Arc::clone(text);
        }
        let text = Arc::new(self.render());
        *slot = Some((Instant::now(), Arc::clone(&text)));
        text
    }

    /// The whole exposition, now.
    fn render(&self) -> String {
        let mut o = Out(String::with_capacity(4096));
        let st = self.ledger.status();
        let e = &self.quota;
        o.one(
            "quotafs_poisoned",
            "gauge",
            "1 if the ledger is poisoned (usage no longer durable; restart the daemon)",
            u8::from(st.poisoned.is_some()),
        );
        o.one("quotafs_epoch", "gauge", "Current ledger epoch", st.epoch);
        o.one(
            "quotafs_log_fsyncs_total",
            "counter",
            "fdatasyncs of the activity log since the daemon started",
            st.log_syncs_total,
        );
        o.one(
            "quotafs_log_records_total",
            "counter",
            "Records written to the activity log since the daemon started",
            st.log_records_total,
        );
        o.one(
            "quotafs_journal_records_total",
            "counter",
            "Records made in the backings' journal directories (no fdatasync) since the daemon started",
            st.journal_records_total,
        );
        o.one("quotafs_log_bytes", "gauge", "Bytes in the current epoch's activity log", st.log_bytes);
        let c = &self.checkpoints;
        o.one(
            "quotafs_checkpoints_total",
            "counter",
            "Checkpoints committed since the daemon started",
            c.count.load(Ordering::Relaxed),
        );
        o.one(
            "quotafs_checkpoint_failures_total",
            "counter",
            "Checkpoints that failed since the daemon started",
            c.failures.load(Ordering::Relaxed),
        );
        o.one(
            "quotafs_checkpoint_last_duration_seconds",
            "gauge",
            "Duration of the last committed checkpoint",
            secs(c.last_micros.load(Ordering::Relaxed)),
        );
        o.one(
            "quotafs_checkpoint_duration_seconds_sum",
            "counter",
            "Total duration of committed checkpoints",
            secs(c.sum_micros.load(Ordering::Relaxed)),
        );
        o.one(
            "quotafs_last_checkpoint_timestamp_seconds",
            "gauge",
            "Unix time of the last checkpoint",
            unix(st.last_checkpoint),
        );
        let r = &st.last_recovery;
        o.one(
            "quotafs_recovery_duration_seconds",
            "gauge",
            "Duration of the recovery (or first-mount count) at start",
            r.duration.as_secs_f64(),
        );
        o.one("quotafs_recovery_records", "gauge", "Activity log records replayed at start", r.records);
        o.one(
            "quotafs_recovery_initial_scan",
            "gauge",
            "1 if the start counted the whole tree (first mount)",
            u8::from(r.initial_scan),
        );

        self.requests(&mut o);

        let refusals = e.refusals();
        o.one(
            "quotafs_refusals_all_total",
            "counter",
            "Allocations refused with EDQUOT since the daemon started",
            refusals.values().sum::<u64>(),
        );
        if let Some(n) = &self.notify {
            o.one(
                "quotafs_notifications_total",
                "counter",
                "Notification commands started",
                n.run.load(Ordering::Relaxed),
            );
            o.one(
                "quotafs_notifications_failed_total",
                "counter",
                "Notification commands that failed to start, exited non-zero or were killed at their timeout",
                n.failed.load(Ordering::Relaxed),
            );
            o.one(
                "quotafs_notifications_dropped_total",
                "counter",
                "Notifications dropped because the queue was full",
                n.dropped.load(Ordering::Relaxed),
            );
        }

        // Per subject: every subject with usage or limits of its own, bounded.
        let usage = self.ledger.table().snapshot();
        let limits = e.all_limits();
        let grace = e.grace_snapshot();
        let mut subjects: std::collections::BTreeSet<Subject> = usage.keys().copied().collect();
        subjects.extend(limits.keys().filter_map(|k| if let LimitKey::Subject(s) = k { Some(*s) } else { None }));
        subjects.extend(refusals.keys().copied());
        let total = subjects.len();
        let shown: Vec<Subject> = subjects.into_iter().take(self.max_subjects).collect();
        o.one("quotafs_subjects", "gauge", "Users and projects with usage, limits or refusals", total);
        o.one(
            "quotafs_metrics_subjects_omitted",
            "gauge",
            "Subjects left out of the per-subject series (metrics_max_subjects)",
            total - shown.len(),
        );
        let ids: Vec<(Subject, String)> = shown.iter().map(|s| (*s, s.id().to_string())).collect();
        let labels = |s: &Subject, id: &'_ str| -> [(&'static str, String); 2] {
            [("kind", s.kind().to_string()), ("id", id.to_string())]
        };
        let mut per =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(Subject) -> Vec<(Option<&'static str>, u64)>| {
                o.family(name, kind, help);
                for (s, id) in &ids {
                    for (extra, v) in value(*s) {
                        let [(k1, v1), (k2, v2)] = labels(s, id);
                        let mut l: Vec<(&str, &str)> = vec![(k1, &v1), (k2, &v2)];
                        if let Some(t) = extra {
                            l.push(("type", t));
                        }
                        o.sample(name, &l, v);
                    }
                }
            };
        per("quotafs_usage_bytes", "gauge", "Bytes charged (st_blocks * 512, as du counts)", &|s| {
            vec![(None, usage.get(&s).map_or(0, |u| u.bytes))]
        });
        per("quotafs_usage_inodes", "gauge", "Inodes charged", &|s| {
            vec![(None, usage.get(&s).map_or(0, |u| u.inodes))]
        });
        per("quotafs_limit_bytes", "gauge", "Byte limits in force (own, else the default of the kind)", &|s| {
            let l = e.effective(s).unwrap_or_default();
            [("soft", l.bytes_soft), ("hard", l.bytes_hard)]
                .into_iter()
                .filter_map(|(t, v)| Some((Some(t), v?)))
                .collect()
        });
        per("quotafs_limit_inodes", "gauge", "Inode limits in force (own, else the default of the kind)", &|s| {
            let l = e.effective(s).unwrap_or_default();
            [("soft", l.inodes_soft), ("hard", l.inodes_hard)]
                .into_iter()
                .filter_map(|(t, v)| Some((Some(t), v?)))
                .collect()
        });
        per(
            "quotafs_grace_expires_timestamp_seconds",
            "gauge",
            "Unix time a running grace period ends (type bytes or inodes)",
            &|s| {
                [("bytes", false), ("inodes", true)]
                    .into_iter()
                    .filter_map(|(t, inodes)| {
                        let since = grace.get(&(s, inodes))?;
                        let secs = e.effective(s).map_or(crate::quota::limits::DEFAULT_GRACE_SECS, |l| l.grace_secs());
                        Some((Some(t), since + secs))
                    })
                    .collect()
            },
        );
        per("quotafs_refusals_total", "counter", "Allocations of this subject refused with EDQUOT", &|s| {
            vec![(None, refusals.get(&s).copied().unwrap_or(0))]
        });
        o.0
    }
}

/// Reads one figure of a backing's counters.
type CounterOf = fn(&crate::fuse::pool::Counters) -> u64;

impl Source {
    /// Requests per backing: counts, queue, in progress, and the latency histogram.
    fn requests(&self, o: &mut Out) {
        use crate::fuse::pool::LATENCY_BOUNDS_US;
        let backings: Vec<(String, &str, &crate::fuse::pool::Counters)> =
            self.pools.backings().map(|(i, p, c)| (i.to_string(), p, c)).collect();
        let gauges: [(&str, &str, &str, CounterOf); 3] = [
            ("quotafs_requests_total", "counter", "FUSE requests per backing", |c| c.requests.load(Ordering::Relaxed)),
            ("quotafs_requests_queued", "gauge", "Requests waiting for a routed backing's worker threads", |c| {
                c.queued.load(Ordering::Relaxed)
            }),
            ("quotafs_requests_in_progress", "gauge", "Requests being served per backing", |c| {
                c.busy.load(Ordering::Relaxed)
            }),
        ];
        for (name, kind, help, get) in gauges {
            o.family(name, kind, help);
            for (i, p, c) in &backings {
                o.sample(name, &[("backing", i), ("path", p)], get(c));
            }
        }
        let name = "quotafs_request_duration_seconds";
        o.family(
            name,
            "histogram",
            "Latency of FUSE requests per backing, from arrival (queueing included) to the reply",
        );
        for (i, p, c) in &backings {
            let mut cumulative = 0;
            for (n, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
                cumulative += c.latency[n].load(Ordering::Relaxed);
                let le = secs(*bound).to_string();
                o.sample(&format!("{name}_bucket"), &[("backing", i), ("path", p), ("le", &le)], cumulative);
            }
            cumulative += c.latency[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
            o.sample(&format!("{name}_bucket"), &[("backing", i), ("path", p), ("le", "+Inf")], cumulative);
            o.sample(
                &format!("{name}_sum"),
                &[("backing", i), ("path", p)],
                secs(c.latency_us.load(Ordering::Relaxed)),
            );
            o.sample(&format!("{name}_count"), &[("backing", i), ("path", p)], cumulative);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
