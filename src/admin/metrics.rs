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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

pub use crate::config::{DEFAULT_MAX_SUBJECTS, MetricsConfig};
use crate::ledger::Ledger;
use crate::quota::Subject;
use crate::quota::limits::LimitKey;

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

/// Who may read the metrics over HTTP.
#[derive(Clone, Debug)]
struct Access {
    /// Local uids besides root.
    uids: Vec<u32>,
    /// Connections from no local socket (other hosts) are answered: the listener is off
    /// loopback, which `metrics_allow_remote` allowed.
    remote: bool,
}

impl Access {
    /// Whether the client at `peer`, connected to our `ours`, may read the metrics: the
    /// owner of its socket if it is local (any local user can reach a loopback port), else
    /// only if remote clients are allowed.
    fn allows(&self, peer: SocketAddr, ours: SocketAddr) -> Result<(), String> {
        let owners = local_socket_owners(peer, ours);
        if owners.is_empty() {
            return match self.remote {
                true => Ok(()),
                false => Err("no local socket is connected from there".into()),
            };
        }
        match owners.iter().find(|&&u| u != 0 && !self.uids.contains(&u)) {
            Some(uid) => Err(format!(
                "uid {uid} may not read the metrics (they show every user's usage); root may, and the uids in \
                 metrics_allow_uids"
            )),
            None => Ok(()),
        }
    }
}

/// A socket address as /proc/net/tcp{,6} prints it: the address's bytes as native-endian
/// 32-bit hex words, then the port in hex.
fn proc_net_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        bytes.extend_from_slice(&u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// The uids owning the live local TCP sockets whose local end is `peer` and remote end `ours`
/// (normally one; none for a client on another host), from `table`'s lines.
fn owners_in(table: &str, peer: SocketAddr, ours: SocketAddr) -> Vec<u32> {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (peer, ours) = (canon(peer), canon(ours));
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // TIME_WAIT (06), CLOSE (07) and LISTEN (0A) entries are no live client.
            if f.len() < 8 || ["06", "07", "0A"].contains(&f[3]) {
                return None;
            }
            (proc_net_addr(f[1])? == peer && proc_net_addr(f[2])? == ours).then(|| f[7].parse().ok())?
        })
        .collect()
}

fn local_socket_owners(peer: SocketAddr, ours: SocketAddr) -> Vec<u32> {
    let mut owners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            owners.extend(owners_in(&text, peer, ours));
        }
    }
    owners
}

/// Starts what `cfg` asks for. The listener is bound here (a taken port fails the start).
pub fn start(cfg: &MetricsConfig, source: Arc<Source>, stop: Arc<AtomicBool>) -> Result<(), String> {
    if let Some(addr) = cfg.listen {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}; pick a free port with --metrics-listen"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<(TcpStream, Instant)>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let access = Arc::new(Access { uids: cfg.allow_uids.clone(), remote: !addr.ip().is_loopback() });
        for n in 0..WORKERS {
            let (rx, source, access) = (Arc::clone(&rx), Arc::clone(&source), Arc::clone(&access));
            std::thread::Builder::new()
                .name(format!("metrics-{n}"))
                .spawn(move || handler(&rx, &source, &access))
                .map_err(|e| format!("cannot start a metrics thread: {e}"))?;
        }
        std::thread::Builder::new()
            .name("metrics-accept".into())
            .spawn(move || accept(&listener, &tx))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        tracing::info!(%addr, "metrics served over HTTP at /metrics");
    }
    if let Some(path) = cfg.textfile.clone() {
        write_textfile(&path, &source.exposition())?;
        std::thread::Builder::new()
            .name("metrics-textfile".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() >= TEXTFILE_INTERVAL {
                        if let Err(e) = write_textfile(&path, &source.exposition()) {
                            tracing::warn!(error = %e, "cannot write the metrics textfile");
                        }
                        last = Instant::now();
                    }
                }
            })
            .map_err(|e| format!("cannot start the metrics textfile thread: {e}"))?;
    }
    Ok(())
}

/// Replaces `path` atomically (a temporary file beside it, then rename), so that
/// node_exporter never reads half a file. The temporary file is created anew (`O_EXCL`,
/// `O_NOFOLLOW`: a link planted in a directory others may write is never followed), mode 0644
/// whatever the umask: who may read the figures is decided by the directory.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write metrics textfile {}: {e}", path.display()))
}

fn accept(listener: &TcpListener, tx: &SyncSender<(TcpStream, Instant)>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => match tx.try_send((stream, Instant::now() + DEADLINE)) {
                Ok(()) => {}
                // Every handler busy and the queue full: the connection is closed unanswered.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            },
            // EMFILE and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn handler(rx: &Mutex<Receiver<(TcpStream, Instant)>>, source: &Source, access: &Access) {
    loop {
        let (stream, deadline) = match rx.lock().recv() {
            Ok(s) => s,
            Err(_) => return,
        };
        let _ = answer(stream, deadline, source, access);
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics { head: bool },
    Index,
    NotFound,
    BadMethod,
    Bad,
}

/// Parses an HTTP request line (the first line of `req`).
fn parse(req: &[u8]) -> Asked {
    let line_end = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
    let Ok(line) = std::str::from_utf8(&req[..line_end]) else { return Asked::Bad };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Asked::Bad;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => return Asked::BadMethod,
        _ => return Asked::Bad,
    };
    match target.split('?').next() {
        Some("/metrics") => Asked::Metrics { head },
        Some("/") => Asked::Index,
        _ => Asked::NotFound,
    }
}

/// Reads one request until `deadline` (counted from the accept: time spent queued counts) and
/// answers it.
fn answer(mut stream: TcpStream, deadline: Instant, source: &Source, access: &Access) -> std::io::Result<()> {
    stream.set_write_timeout(Some(DEADLINE))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // Read until the end of the headers, the size cap, or the deadline (then dropped).
    // Where the blank line may start in what has arrived (bytes before it were searched).
    let mut searched = 0;
    let complete = loop {
        let tail = &req[searched..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        searched = req.len().saturating_sub(3);
        if req.len() >= MAX_REQUEST {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break !req.is_empty(),
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(_) => return Ok(()),
        }
    };
    let (status, body, head) = if !complete {
        ("431 Request Header Fields Too Large", Arc::new("request too large\n".to_string()), false)
    } else {
        match parse(&req) {
            // Asked once the request is complete: the client's socket is live.
            Asked::Metrics { head } => match access.allows(stream.peer_addr()?, stream.local_addr()?) {
                Ok(()) => ("200 OK", source.exposition(), head),
                Err(why) => ("403 Forbidden", Arc::new(format!("{why}\n")), false),
            },
            Asked::Index => ("200 OK", Arc::new("quotafs metrics: /metrics\n".to_string()), false),
            Asked::NotFound => ("404 Not Found", Arc::new("not found; metrics are at /metrics\n".to_string()), false),
            Asked::BadMethod => ("405 Method Not Allowed", Arc::new("only GET and HEAD\n".to_string()), false),
            Asked::Bad => ("400 Bad Request", Arc::new("bad request\n".to_string()), false),
        }
    };
    let content_type = if status.starts_with("200") && body.starts_with('#') {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let header = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Asked::Metrics { head: false });
        assert_eq!(parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Asked::Metrics { head: true });
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n"), Asked::Index);
        assert_eq!(parse(b"GET /etc/passwd HTTP/1.0\r\n\r\n"), Asked::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.0\r\n\r\n"), Asked::BadMethod);
        assert_eq!(parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), Asked::Bad);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Asked::Bad);
        assert_eq!(parse(b"GET  /metrics HTTP/1.0\r\n\r\n"), Asked::Bad);
    }

    #[test]
    fn proc_net_tcp_lines_name_the_socket_owner() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
            1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
            2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
            3: 0100007F:D432 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        let (ours, peer) = ("127.0.0.1:8080".parse().unwrap(), "127.0.0.1:54321".parse().unwrap());
        assert_eq!(owners_in(table, peer, ours), [1000]);
        assert!(owners_in(table, "127.0.0.1:54322".parse().unwrap(), ours).is_empty(), "TIME_WAIT is no client");
        assert!(owners_in(table, "10.0.0.1:54321".parse().unwrap(), ours).is_empty(), "remote");
        let v6 = "sl local remote\n 0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1F90 01 0:0 0:0 0 107 0 5\n";
        let (ours6, peer6) = ("[::1]:8080".parse().unwrap(), "[::1]:54321".parse().unwrap());
        assert_eq!(owners_in(v6, peer6, ours6), [107]);
        let mapped = "sl local remote\n 0: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:1F90 01 0:0 0:0 0 5 0 5\n";
        assert_eq!(owners_in(mapped, peer, ours), [5], "v4-mapped is the same client");
        let access = Access { uids: vec![107], remote: false };
        assert!(access.allows("10.0.0.1:1".parse().unwrap(), ours).is_err(), "loopback listener: no remote");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
