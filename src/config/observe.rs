//! The configuration of what quotafs tells the outside about itself: the Prometheus metrics
//! (`admin::metrics`) and the quota-event notification command (`admin::notify`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, FileConfig};

/// Where the metrics go, validated from the configuration (served by `admin::metrics`).
#[derive(Clone, Debug, Default)]
pub struct MetricsConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub textfile: Option<PathBuf>,
    pub max_subjects: usize,
    /// Local uids besides root whose connections are answered (`metrics_allow_uids`).
    pub allow_uids: Vec<u32>,
}

/// Default of `metrics_max_subjects`.
pub const DEFAULT_MAX_SUBJECTS: usize = 10_000;

/// The soft-limit notification command, validated from the configuration (run by
/// `admin::notify`).
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// argv: the program (an absolute path) and its arguments.
    pub command: Vec<String>,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
}

/// Default of `notify_interval`.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Default of `notify_timeout`.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The metrics keys, validated: a listen address on loopback unless `metrics_allow_remote`,
/// a textfile path whose directory exists.
pub(super) fn validate_metrics(file: &FileConfig, flags: &FileConfig) -> Result<MetricsConfig, ConfigError> {
    let listen = match flags.metrics_listen.as_ref().or(file.metrics_listen.as_ref()) {
        None => None,
        Some(text) => {
            let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                format!("metrics_listen {text:?} is not an address and port, e.g. 127.0.0.1:9746 or [::1]:9746")
            })?;
            let remote_ok = flags.metrics_allow_remote.or(file.metrics_allow_remote).unwrap_or(false);
            if !addr.ip().is_loopback() && !remote_ok {
                return Err(ConfigError(format!(
                    "metrics_listen {addr} is not a loopback address: the metrics name every user's and project's \
                     usage and limits, unauthenticated. Listen on 127.0.0.1 (a local Prometheus or node_exporter, or \
                     a proxy with TLS and authentication, reaches it there), or set metrics_allow_remote = true"
                )));
            }
            Some(addr)
        }
    };
    let textfile = match flags.metrics_textfile.as_ref().or(file.metrics_textfile.as_ref()) {
        None => None,
        Some(path) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if !path.is_absolute() || path.file_name().is_none() || !dir.is_some_and(Path::is_dir) {
                return Err(ConfigError(format!(
                    "metrics_textfile {} must be an absolute file path in an existing directory, e.g. \
                     /var/lib/prometheus/node-exporter/quotafs.prom",
                    path.display()
                )));
            }
            Some(path.clone())
        }
    };
    let max_subjects = flags.metrics_max_subjects.or(file.metrics_max_subjects).unwrap_or(DEFAULT_MAX_SUBJECTS);
    if max_subjects > 10_000_000 {
        return Err(ConfigError(format!("metrics_max_subjects must be at most 10000000, got {max_subjects}")));
    }
    let allow_uids = flags.metrics_allow_uids.clone().or(file.metrics_allow_uids.clone()).unwrap_or_default();
    Ok(MetricsConfig { listen, textfile, max_subjects, allow_uids })
}

/// The notification keys, validated: an absolute, executable program, sane intervals.
pub(super) fn validate_notify(file: &FileConfig) -> Result<Option<NotifyConfig>, ConfigError> {
    let Some(command) = file.notify_command.clone() else {
        if file.notify_interval.is_some() || file.notify_timeout.is_some() {
            return Err(ConfigError::from("notify_interval and notify_timeout need notify_command"));
        }
        return Ok(None);
    };
    let Some(program) = command.first() else {
        return Err(ConfigError::from(
            "notify_command is empty: give the program and its arguments, e.g. \
                    [\"/usr/local/sbin/quota-warn\", \"--mail\"]",
        ));
    };
    let md = std::fs::metadata(program);
    if !Path::new(program).is_absolute()
        || !md.as_ref().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    {
        return Err(ConfigError(format!(
            "notify_command: {program:?} must be the absolute path of an executable file (it is run without a shell)"
        )));
    }
    let secs = |name: &str, v: Option<f64>, default: Duration, range: std::ops::RangeInclusive<f64>| match v {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(Duration::from_secs_f64(v)),
        Some(v) => {
            Err(ConfigError(format!("{name} must be between {} and {} seconds, got {v}", range.start(), range.end())))
        }
    };
    Ok(Some(NotifyConfig {
        command,
        interval: secs("notify_interval", file.notify_interval, DEFAULT_INTERVAL, 0.0..=2_592_000.0)?,
        timeout: secs("notify_timeout", file.notify_timeout, DEFAULT_TIMEOUT, 0.1..=3600.0)?,
    }))
}
