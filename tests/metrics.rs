//! Metrics: a tenant writes past its soft limit and is refused at its hard limit; a scrape of
//! `--metrics-listen` over HTTP (parsed as the Prometheus text format) shows that tenant's
//! usage as the ledger has it, its limits, its running grace period and its refusals, the
//! activity log's fsyncs and requests per backing; the textfile (`--metrics-textfile`) holds the
//! same exposition, with per-subject series capped by `metrics_max_subjects`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{BIN, Fixture, report, run_ok};

/// A port that was free a moment ago on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.0: (status line, content type, body).
fn get(port: u16, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head.lines().next().unwrap().to_string();
    let ctype = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap_or_default().to_string();
    (status, ctype, body.to_string())
}

/// Series name and labels (as written) → value. Panics on any line that is not valid
/// exposition format, or on a sample whose family has no `# TYPE` line before it.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "family {name} typed twice");
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    typed.insert(format!("{name}{suffix}"));
                }
            }
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && name.starts_with("quotafs_"),
            "metric name {name:?}"
        );
        assert!(typed.contains(name), "{name} sampled before its # TYPE");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
        assert!(out.insert(series.to_string(), v).is_none(), "series {series} twice");
    }
    out
}

fn user(m: &BTreeMap<String, f64>, metric: &str, uid: u32, ty: Option<&str>) -> Option<f64> {
    let key = match ty {
        Some(t) => format!("{metric}{{kind=\"user\",id=\"{uid}\",type=\"{t}\"}}"),
        None => format!("{metric}{{kind=\"user\",id=\"{uid}\"}}"),
    };
    m.get(&key).copied()
}

#[test]
fn a_scrape_shows_what_a_tenant_did() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut f = Fixture::with_args("metrics", &["--metrics-listen", &listen]);
    f.home("u", 1000, 1000);
    f.home("v", 1001, 1001);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-soft", "512K", "--bytes-hard", "1M"]);
    // Over the soft limit (grace starts), then refused at the hard one.
    f.sh_ok(1000, 1000, "head -c 700000 /dev/zero > u/a && sync u/a");
    let out = f.sh_as(1000, 1000, "head -c 2000000 /dev/zero > u/b");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"), "{out:?}");
    f.sh_ok(1001, 1001, "head -c 100000 /dev/zero > v/c");

    let (status, ctype, body) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse(&body);
    let ledger = report(&f.state);
    for uid in [1000, 1001] {
        let (bytes, inodes) = ledger[&("user".to_string(), uid)];
        assert_eq!(user(&m, "quotafs_usage_bytes", uid, None), Some(bytes as f64), "uid {uid}:\n{body}");
        assert_eq!(user(&m, "quotafs_usage_inodes", uid, None), Some(inodes as f64), "uid {uid}");
    }
    assert!(user(&m, "quotafs_usage_bytes", 1000, None).unwrap() > 700_000.0);
    assert_eq!(user(&m, "quotafs_limit_bytes", 1000, Some("hard")), Some(1048576.0));
    assert_eq!(user(&m, "quotafs_limit_bytes", 1000, Some("soft")), Some(524288.0));
    assert_eq!(user(&m, "quotafs_limit_bytes", 1001, Some("hard")), None, "1001 has no limits");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
    let ends = user(&m, "quotafs_grace_expires_timestamp_seconds", 1000, Some("bytes")).expect("grace running");
    assert!(ends > now + 6.0 * 86400.0 && ends <= now + 7.0 * 86400.0 + 1.0, "grace ends {ends}");
    assert!(user(&m, "quotafs_refusals_total", 1000, None).unwrap() >= 1.0, "refused");
    assert_eq!(user(&m, "quotafs_refusals_total", 1001, None), Some(0.0));
    assert_eq!(m["quotafs_refusals_all_total"], user(&m, "quotafs_refusals_total", 1000, None).unwrap());
    assert_eq!(m["quotafs_poisoned"], 0.0);
    // The new files' directories were recorded, in the backing's journal directory (no
    // fdatasync, nothing in the activity log while the backing has room).
    assert!(m["quotafs_journal_records_total"] >= 1.0, "the new files were recorded");
    assert_eq!(m["quotafs_log_fsyncs_total"], 0.0);
    assert_eq!(m["quotafs_log_records_total"], 0.0);
    let main = format!("quotafs_requests_total{{backing=\"0\",path=\"{}\"}}", f.backing().display());
    assert!(m[&main] > 10.0, "requests of the main backing counted:\n{body}");
    // Every request finished is in the latency histogram, whose buckets are cumulative.
    let labels = format!("backing=\"0\",path=\"{}\"", f.backing().display());
    let count = m[&format!("quotafs_request_duration_seconds_count{{{labels}}}")];
    let busy = m[&format!("quotafs_requests_in_progress{{{labels}}}")];
    assert!(count <= m[&main] && count >= m[&main] - busy, "{count} timed of {} requests", m[&main]);
    let buckets: Vec<f64> = ["0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"]
        .iter()
        .map(|le| m[&format!("quotafs_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}")])
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets[6] == count, "{buckets:?}");
    assert!(m[&format!("quotafs_request_duration_seconds_sum{{{labels}}}")] > 0.0);
    assert!(m.contains_key("quotafs_recovery_duration_seconds"));
    assert_eq!(m["quotafs_metrics_subjects_omitted"], 0.0);

    // A checkpoint is counted and timed.
    f.quotafs(&["checkpoint"]);
    // (A scrape may be served from the last second's rendering.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let m = loop {
        let m = parse(&get(port, "/metrics").2);
        if m["quotafs_checkpoints_total"] >= 1.0 || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(m["quotafs_checkpoints_total"] >= 1.0);
    assert!(m["quotafs_checkpoint_last_duration_seconds"] > 0.0);
    // Anything but /metrics is 404.
    assert_eq!(get(port, "/other").0, "HTTP/1.0 404 Not Found");

    // The textfile, with per-subject series capped at one subject.
    f.signal("TERM");
    assert!(f.wait_exit().success());
    let prom = f.scratch.dir.join("quotafs.prom");
    let config = f.scratch.dir.join("metrics.toml");
    std::fs::write(&config, format!("metrics_textfile = \"{}\"\nmetrics_max_subjects = 1\n", prom.display())).unwrap();
    // A link planted where the temporary file goes (the directory may be another user's).
    let victim = f.scratch.dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, f.scratch.dir.join("quotafs.prom.tmp")).unwrap();
    f.start(&["--config", config.to_str().unwrap()]);
    let m = parse(&std::fs::read_to_string(&prom).expect("textfile written at start"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep", "the planted link was followed");
    let mode = std::fs::symlink_metadata(&prom).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777, 0o644, "whatever the daemon's umask");
    let subjects = m["quotafs_subjects"];
    assert!(subjects >= 3.0, "1000, 1001, project 0 at least: {subjects}");
    assert_eq!(m["quotafs_metrics_subjects_omitted"], subjects - 1.0);
    assert_eq!(m.keys().filter(|k| k.starts_with("quotafs_usage_bytes{")).count(), 1);
    // The listener is gone with the flag.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let _ = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("status"));
}
