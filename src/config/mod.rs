//! Configuration: the TOML file (`--config`) merged with command-line flags (flags win), then
//! validated into a `MountConfig` before anything is mounted or written.
//!
//! Every check here runs before quotafs touches the backing or creates the state dir, so a
//! refused start changes nothing.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backing::{EXT4_MAGIC, fs_type_name, sys};

mod observe;
pub use observe::{DEFAULT_INTERVAL, DEFAULT_MAX_SUBJECTS, DEFAULT_TIMEOUT, MetricsConfig, NotifyConfig};
use observe::{validate_metrics, validate_notify};

/// A config file, flag or value that quotafs refuses: bad input (exit status 2). Display is the
/// whole message, naming what to change.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<String> for ConfigError {
    fn from(message: String) -> ConfigError {
        ConfigError(message)
    }
}

impl From<crate::backing::BackingError> for ConfigError {
    fn from(e: crate::backing::BackingError) -> ConfigError {
        ConfigError(e.to_string())
    }
}

impl From<crate::route::PatternError> for ConfigError {
    fn from(e: crate::route::PatternError) -> ConfigError {
        ConfigError(e.to_string())
    }
}

impl From<&str> for ConfigError {
    fn from(message: &str) -> ConfigError {
        ConfigError(message.to_string())
    }
}

/// Default state directory: ledger, lock and control socket live here.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/quotafs";

/// Default of `opens_per_uid`.
pub const DEFAULT_OPENS_PER_UID: usize = 4096;

/// The TOML file. Unknown keys are an error (with the line), so a typo never silently falls
/// back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The ext4 directory served at the mount root. Required (here or `--backing`).
    pub backing: Option<PathBuf>,
    /// Where the ledger and the daemon's socket live. Default: /var/lib/quotafs.
    pub state_dir: Option<PathBuf>,
    /// Where to mount. Required (here or as the positional argument).
    pub mountpoint: Option<PathBuf>,
    /// FUSE worker threads. Default: 2 per CPU, at least 4.
    pub threads: Option<usize>,
    /// Seconds the kernel may cache a name lookup (also negative ones). Default: 10.
    pub entry_ttl: Option<f64>,
    /// Seconds the kernel may cache attributes. Default: 10.
    pub attr_ttl: Option<f64>,
    /// Descriptors kept open in the inode fd cache. Default: 8192.
    pub fd_cache: Option<usize>,
    /// Ignored, accepted so that existing files still load: every open is served through
    /// the page cache (FUSE passthrough cannot coexist with quota-checked writers; design §4).
    pub passthrough: Option<bool>,
    /// Files one uid other than root may hold open through the mount; past it its opens
    /// fail with EMFILE, other tenants unaffected. Default: 4096.
    pub opens_per_uid: Option<usize>,
    /// Negotiate POSIX ACLs with the kernel. Default: true.
    pub acl: Option<bool>,
    /// Largest write request in bytes. Default: 1 MiB.
    pub max_write: Option<u32>,
    /// How FUSE requests travel: `auto` (io_uring where the kernel offers it), `uring`
    /// (refuse to start without it) or `classic` (/dev/fuse reads). Default: auto.
    pub transport: Option<String>,
    /// Serve through a supervisor that holds the FUSE connection and starts a new serving
    /// process when one dies (docs/design.md §18). Default: false.
    pub supervise: Option<bool>,
    /// Under `supervise`: the crash-loop bound, `"DEATHS/SECSs"`: a serving process that dies
    /// DEATHS times within SECS seconds is not started again, and the mount answers EIO until
    /// unmounted. Default: "5/60s".
    pub restart_limit: Option<String>,
    /// Seconds between ledger checkpoints (snapshot + new activity log). Default: 30.
    pub checkpoint_interval: Option<f64>,
    /// Uids never refused for quota (root always is); their usage is still counted.
    /// Default: none.
    pub exempt_uids: Option<Vec<u32>>,
    /// `[[route]]` tables: a path pattern whose subtrees live on another backing.
    pub route: Option<Vec<RouteConfig>>,
    /// Serve routed backings from the main worker threads instead of pools of their own
    /// (no load isolation; for comparison). Default: false.
    pub shared_pool: Option<bool>,
    /// Detect writes made directly to routed backings (fanotify) and charge them by
    /// recounting that backing; routed backings are also recounted at every mount.
    /// Default: false.
    pub watch_routes: Option<bool>,
    /// Worker threads of each routed backing's pool. Default: as many as `threads`.
    pub route_threads: Option<usize>,
    /// `ADDR:PORT` to serve Prometheus metrics on (HTTP, `/metrics`). Default: none.
    pub metrics_listen: Option<String>,
    /// Allow `metrics_listen` on an address other than loopback. Default: false.
    pub metrics_allow_remote: Option<bool>,
    /// A file rewritten every 15 s with the metrics (node_exporter's textfile collector).
    pub metrics_textfile: Option<PathBuf>,
    /// Per-subject series for at most this many users and projects. Default: 10000.
    pub metrics_max_subjects: Option<usize>,
    /// Local uids besides root allowed to read the metrics over HTTP. Default: none.
    pub metrics_allow_uids: Option<Vec<u32>>,
    /// argv of a command run on quota events (soft limit passed, grace over, refusal).
    pub notify_command: Option<Vec<String>>,
    /// Seconds between two notifications of one subject and kind of event. Default: 3600.
    pub notify_interval: Option<f64>,
    /// Seconds a notification command may run before it is killed. Default: 30.
    pub notify_timeout: Option<f64>,
    /// A root-only directory outside the mount where each export connection is mounted
    /// (`projects/<name or id>`, `users/<name or uid>`), for NFS exports whose `df` shows the
    /// binding quota. Default: none (no export connections).
    pub exports_dir: Option<PathBuf>,
    /// Mount an export connection for each project with a top directory. Default: false.
    pub export_projects: Option<bool>,
    /// Mount an export connection for each user home (top-level directory of a non-root
    /// owner). Default: false.
    pub export_users: Option<bool>,
}

/// One `[[route]]` table: `pattern = "/home/*/Dropbox"`, `backing = "/srv/dropbox"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub pattern: String,
    pub backing: PathBuf,
}

impl RouteConfig {
    /// `--route PATTERN=DIR`.
    pub fn parse_flag(s: &str) -> Result<RouteConfig, ConfigError> {
        match s.split_once('=') {
            Some((p, d)) if !d.is_empty() => Ok(RouteConfig { pattern: p.to_string(), backing: PathBuf::from(d) }),
            _ => Err(ConfigError(format!(
                "--route {s:?}: expected PATTERN=DIR, e.g. --route '/home/*/Dropbox=/srv/dropbox'"
            ))),
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
    }
}

/// Everything `quotafs mount` needs, validated.
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub backing: PathBuf,
    pub state_dir: PathBuf,
    pub mountpoint: PathBuf,
    pub threads: usize,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    pub fd_cache: usize,
    pub opens_per_uid: usize,
    pub acl: bool,
    pub max_write: u32,
    pub transport: Transport,
    pub supervise: bool,
    pub restart_limit: RestartLimit,
    pub checkpoint_interval: Duration,
    pub exempt_uids: Vec<u32>,
    /// Validated routes: pattern and the ext4 directory its subtrees live on.
    pub routes: Vec<(crate::route::Pattern, PathBuf)>,
    pub shared_pool: bool,
    pub watch_routes: bool,
    pub route_threads: usize,
    pub metrics: MetricsConfig,
    pub notify: Option<NotifyConfig>,
    /// Export connections to mount beside the main one (docs/design.md §12.3).
    pub exports: Option<ExportsConfig>,
}

/// Where export connections are mounted, and for which trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportsConfig {
    pub dir: PathBuf,
    pub projects: bool,
    pub users: bool,
}

/// The crash-loop bound of a supervised mount: `deaths` deaths of the serving process within
/// `window` end the restarts (docs/design.md §18). Written `"DEATHS/SECSs"`, e.g. `"5/60s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub deaths: usize,
    pub window: Duration,
}

impl Default for RestartLimit {
    fn default() -> RestartLimit {
        RestartLimit { deaths: 5, window: Duration::from_secs(60) }
    }
}

impl RestartLimit {
    pub fn parse(text: &str) -> Result<RestartLimit, ConfigError> {
        let bad = || {
            ConfigError(format!(
                "restart_limit {text:?} is not DEATHS/SECSs with 1-1000 deaths in 1-86400 seconds (e.g. \"5/60s\")"
            ))
        };
        let (deaths, secs) = text.trim().split_once('/').ok_or_else(bad)?;
        let deaths: usize = deaths.trim().parse().map_err(|_| bad())?;
        let secs: u64 = secs.trim().strip_suffix('s').unwrap_or(secs.trim()).parse().map_err(|_| bad())?;
        if !(1..=1000).contains(&deaths) || !(1..=86_400).contains(&secs) {
            return Err(bad());
        }
        Ok(RestartLimit { deaths, window: Duration::from_secs(secs) })
    }
}

/// How FUSE requests travel between the kernel and the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// io_uring where the kernel offers it, else /dev/fuse reads.
    Auto,
    /// io_uring, or refuse to start.
    Uring,
    /// /dev/fuse reads and writes.
    Classic,
}

impl Transport {
    pub fn parse(s: &str) -> Result<Transport, ConfigError> {
        match s {
            "auto" => Ok(Transport::Auto),
            "uring" | "io_uring" => Ok(Transport::Uring),
            "classic" => Ok(Transport::Classic),
            _ => Err(ConfigError(format!("transport must be auto, uring or classic, got {s:?}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Uring => "uring",
            Transport::Classic => "classic",
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).max(4)
}

fn ttl(name: &str, secs: Option<f64>) -> Result<Duration, ConfigError> {
    let secs = secs.unwrap_or(10.0);
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(ConfigError(format!("{name} must be between 0 and 86400 seconds, got {secs}")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves `path` to an absolute, symlink-free path even if its last components do not
/// exist yet (the state dir may be created later).
fn resolve_lenient(path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?.join(path)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(abs),
        }
    }
}

fn within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// The environment through which a supervisor hands its connection to the serving process it
/// starts (docs/design.md §18): the descriptors (comma-separated numbers), the file of the INIT
/// agreement, and the mount point it validated and mounted (which the serving process must not
/// stat: nothing answers there until it does).
pub const SUPERVISED_FDS: &str = "QUOTAFS_SUPERVISED_FDS";
pub const SUPERVISED_INIT: &str = "QUOTAFS_SUPERVISED_INIT";
pub const SUPERVISED_MOUNTPOINT: &str = "QUOTAFS_SUPERVISED_MOUNTPOINT";
/// The descriptor of the supervisor's open-file table (`inode::open_table`).
pub const SUPERVISED_OPENS: &str = "QUOTAFS_SUPERVISED_OPENS";

fn existing_dir(what: &str, path: &Path, hint: &str) -> Result<PathBuf, ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => path.canonicalize().map_err(|e| ConfigError(format!("{what} {}: {e}", path.display()))),
        Ok(_) => Err(ConfigError(format!("{what} {} is not a directory", path.display()))),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(ConfigError(format!(
            "{what} {} is a FUSE mount whose daemon has died; run `umount {}` first",
            path.display(),
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ConfigError(format!("{what} {} does not exist; {hint}", path.display())))
        }
        Err(e) => Err(ConfigError(format!("{what} {}: {e}", path.display()))),
    }
}

/// An existing directory on ext4, canonicalized.
fn ext4_dir(what: &str, path: &Path, hint: &str) -> Result<PathBuf, ConfigError> {
    let dir = existing_dir(what, path, hint)?;
    let root = sys::open_path(&crate::backing::cstring(&dir)?, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| format!("cannot open {what} {}: {e}", dir.display()))?;
    let fs = sys::statfs_fd(std::os::fd::AsFd::as_fd(&root)).map_err(|e| format!("statfs {}: {e}", dir.display()))?;
    if fs.f_type as i64 != EXT4_MAGIC {
        return Err(ConfigError(format!(
            "{what} {} is on {}, not ext4: quotafs needs ext4 (stable file handles and i_generation)",
            dir.display(),
            fs_type_name(fs.f_type as i64)
        )));
    }
    Ok(dir)
}

/// Validates the routes against each other and against the main backing, mountpoint and state
/// dir: every route's backing an ext4 directory of its own, no pattern overlapping another.
fn validate_routes(
    routes: Vec<RouteConfig>,
    backing: &Path,
    mountpoint: &Path,
    state_dir: &Path,
) -> Result<Vec<(crate::route::Pattern, PathBuf)>, ConfigError> {
    let mut out: Vec<(crate::route::Pattern, PathBuf)> = Vec::new();
    if routes.len() > 200 {
        return Err(ConfigError(format!("at most 200 routes, got {}", routes.len())));
    }
    for r in routes {
        let pattern = crate::route::Pattern::parse(&r.pattern)?;
        let dir = ext4_dir(
            &format!("route {:?}: backing", r.pattern),
            &r.backing,
            "create it (on an ext4 file system of its own) or fix the route",
        )?;
        let mut others: Vec<(String, &Path)> = vec![("the main backing".into(), backing)];
        for (p, d) in &out {
            others.push((format!("the backing of route {:?}", p.text), d.as_path()));
        }
        for (what, other) in others {
            if within(&dir, other) || within(other, &dir) {
                return Err(ConfigError(format!(
                    "route {:?}: backing {} is the same as, inside, or around {what} ({}); give each route a directory of its own, outside the others",
                    r.pattern,
                    dir.display(),
                    other.display()
                )));
            }
        }
        if within(mountpoint, &dir) || within(&dir, mountpoint) || within(state_dir, &dir) {
            return Err(ConfigError(format!(
                "route {:?}: backing {} contains or lies inside the mountpoint or state dir; put it elsewhere",
                r.pattern,
                dir.display()
            )));
        }
        if let Some((p, _)) = out.iter().find(|(p, _)| p.overlaps(&pattern)) {
            return Err(ConfigError(format!(
                "route pattern {:?} overlaps {:?}: a path could match both, or one routed directory would lie inside the other",
                pattern.text, p.text
            )));
        }
        out.push((pattern, dir));
    }
    Ok(out)
}

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo paths.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file-system type and source of the mount sitting exactly at `path`, if any.
pub fn mount_at(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let mp = unescape_mountinfo(fields.get(4)?);
        if mp != want {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        Some((fields.get(dash + 1)?.to_string(), unescape_mountinfo(fields.get(dash + 2)?)))
    })
}

/// Merges file and flags and checks everything that can be checked before mounting.
pub fn validate_mount(file: FileConfig, flags: FileConfig) -> Result<MountConfig, ConfigError> {
    if sys::effective_uid() != 0 {
        return Err(ConfigError::from(
            "quotafs mount must run as root: it mounts with allow_other and acts with each \
                    tenant's credentials (run it as root, e.g. from the systemd unit in fixtures/)",
        ));
    }
    let metrics = validate_metrics(&file, &flags)?;
    let notify = validate_notify(&file)?;
    let backing = flags
        .backing
        .or(file.backing)
        .ok_or("no backing directory: pass --backing DIR or set `backing` in the config file")?;
    let mountpoint = flags
        .mountpoint
        .or(file.mountpoint)
        .ok_or("no mountpoint: pass MOUNTPOINT or set `mountpoint` in the config file")?;
    let state_dir = flags.state_dir.or(file.state_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));

    let backing = ext4_dir("backing", &backing, "create it (on an ext4 file system) or fix --backing")?;
    let handed_over = std::env::var_os(SUPERVISED_FDS).zip(std::env::var_os(SUPERVISED_MOUNTPOINT));
    let mountpoint = match &handed_over {
        Some((_, mp)) => PathBuf::from(mp),
        None => existing_dir("mountpoint", &mountpoint, "create it with mkdir")?,
    };
    if handed_over.is_none()
        && let Some((fstype, source)) = mount_at(&mountpoint)
        && fstype.starts_with("fuse")
    {
        return Err(ConfigError(format!(
            "{} is already mounted there ({fstype} from {source}); unmount it first with `umount {}`",
            mountpoint.display(),
            mountpoint.display()
        )));
    }
    if within(&mountpoint, &backing) {
        return Err(ConfigError(format!(
            "mountpoint {} is inside the backing {}: the mount would cover its own backing store; mount elsewhere",
            mountpoint.display(),
            backing.display()
        )));
    }
    if within(&backing, &mountpoint) {
        return Err(ConfigError(format!(
            "backing {} is inside the mountpoint {}: the mount would hide its own backing store; use a mountpoint outside it",
            backing.display(),
            mountpoint.display()
        )));
    }
    let state_dir = resolve_lenient(&state_dir)?;
    if state_dir.components().any(|c| c == Component::ParentDir) {
        return Err(ConfigError(format!("state dir {} must not contain `..`", state_dir.display())));
    }
    if within(&state_dir, &backing) {
        return Err(ConfigError(format!(
            "state dir {} is inside the backing {}: tenants could reach the ledger; put it elsewhere (default {DEFAULT_STATE_DIR})",
            state_dir.display(),
            backing.display()
        )));
    }
    if within(&state_dir, &mountpoint) {
        return Err(ConfigError(format!(
            "state dir {} is inside the mountpoint {}; put it elsewhere",
            state_dir.display(),
            mountpoint.display()
        )));
    }
    if state_dir.exists() && !state_dir.is_dir() {
        return Err(ConfigError(format!("state dir {} exists and is not a directory", state_dir.display())));
    }

    if file.passthrough == Some(true) {
        tracing::warn!("config key `passthrough` is ignored: every open is served through the page cache");
    }
    let threads = flags.threads.or(file.threads).unwrap_or_else(default_threads);
    if !(1..=256).contains(&threads) {
        return Err(ConfigError(format!("threads must be between 1 and 256, got {threads}")));
    }
    let fd_cache = flags.fd_cache.or(file.fd_cache).unwrap_or(8192);
    if !(16..=1_000_000).contains(&fd_cache) {
        return Err(ConfigError(format!("fd_cache must be between 16 and 1000000, got {fd_cache}")));
    }
    let max_write = flags.max_write.or(file.max_write).unwrap_or(1 << 20);
    if !(4096..=(16 << 20)).contains(&max_write) {
        return Err(ConfigError(format!("max_write must be between 4096 and 16777216 bytes, got {max_write}")));
    }
    let exports = validate_exports(
        flags.exports_dir.clone().or(file.exports_dir.clone()),
        flags.export_projects.or(file.export_projects).unwrap_or(false),
        flags.export_users.or(file.export_users).unwrap_or(false),
        flags.supervise.or(file.supervise).unwrap_or(false),
        [("mountpoint", &*mountpoint), ("backing", &*backing), ("state dir", &*state_dir)],
    )?;
    let routes = {
        let mut routes = file.route.unwrap_or_default();
        routes.extend(flags.route.unwrap_or_default());
        validate_routes(routes, &backing, &mountpoint, &state_dir)?
    };
    Ok(MountConfig {
        backing,
        state_dir,
        mountpoint,
        threads,
        entry_ttl: ttl("entry_ttl", flags.entry_ttl.or(file.entry_ttl))?,
        attr_ttl: ttl("attr_ttl", flags.attr_ttl.or(file.attr_ttl))?,
        fd_cache,
        opens_per_uid: {
            let n = flags.opens_per_uid.or(file.opens_per_uid).unwrap_or(DEFAULT_OPENS_PER_UID);
            if !(1..=1_000_000).contains(&n) {
                return Err(ConfigError(format!("opens_per_uid must be between 1 and 1000000, got {n}")));
            }
            n
        },
        acl: flags.acl.or(file.acl).unwrap_or(true),
        max_write,
        transport: match flags.transport.or(file.transport) {
            Some(t) => Transport::parse(&t)?,
            None => Transport::Auto,
        },
        supervise: flags.supervise.or(file.supervise).unwrap_or(false),
        restart_limit: match flags.restart_limit.or(file.restart_limit) {
            Some(t) => RestartLimit::parse(&t)?,
            None => RestartLimit::default(),
        },
        checkpoint_interval: {
            let secs = flags.checkpoint_interval.or(file.checkpoint_interval).unwrap_or(30.0);
            if !(0.1..=86_400.0).contains(&secs) {
                return Err(ConfigError(format!(
                    "checkpoint_interval must be between 0.1 and 86400 seconds, got {secs}"
                )));
            }
            Duration::from_secs_f64(secs)
        },
        exempt_uids: flags.exempt_uids.or(file.exempt_uids).unwrap_or_default(),
        routes,
        shared_pool: flags.shared_pool.or(file.shared_pool).unwrap_or(false),
        watch_routes: flags.watch_routes.or(file.watch_routes).unwrap_or(false),
        route_threads: {
            let n = flags.route_threads.or(file.route_threads).unwrap_or(threads);
            if !(1..=256).contains(&n) {
                return Err(ConfigError(format!("route_threads must be between 1 and 256, got {n}")));
            }
            n
        },
        metrics,
        notify,
        exports,
    })
}

/// `exports_dir` with `export_projects` / `export_users`: an absolute directory outside the
/// mount, the backing and the state dir (ganesha must not find the export connections inside
/// the main mount's tree), and not with `--supervise`, whose supervisor holds one connection.
fn validate_exports(
    dir: Option<PathBuf>,
    projects: bool,
    users: bool,
    supervise: bool,
    others: [(&str, &Path); 3],
) -> Result<Option<ExportsConfig>, ConfigError> {
    let dir = match (dir, projects || users) {
        (None, false) => return Ok(None),
        (None, true) => {
            return Err(ConfigError::from(
                "export_projects / export_users need exports_dir (--exports-dir DIR): a root-only directory \
                 outside the mount where the export connections are mounted",
            ));
        }
        (Some(d), false) => {
            return Err(ConfigError(format!(
                "exports_dir {} is set but neither export_projects nor export_users: say which trees to \
                 export (--export-projects, --export-users)",
                d.display()
            )));
        }
        (Some(d), true) => d,
    };
    if supervise {
        return Err(ConfigError::from(
            "--supervise does not hold export connections yet (exports_dir): its supervisor keeps one FUSE \
             connection; run without --supervise to serve NFS exports with their own df",
        ));
    }
    let dir = resolve_lenient(&dir)?;
    if !dir.is_absolute() || dir.components().any(|c| c == Component::ParentDir) {
        return Err(ConfigError(format!("exports_dir {} must be an absolute path without `..`", dir.display())));
    }
    for (what, other) in others {
        if within(&dir, other) || within(other, &dir) {
            return Err(ConfigError(format!(
                "exports_dir {} and the {what} {} contain one another: put the export connections in a \
                 directory of their own outside the mount (ganesha would take them for parts of the mount's \
                 file system), e.g. /srv/quotafs-exports",
                dir.display(),
                other.display()
            )));
        }
    }
    Ok(Some(ExportsConfig { dir, projects, users }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_limit_reads_deaths_per_window() {
        assert_eq!(RestartLimit::parse("5/60s").unwrap(), RestartLimit::default());
        assert_eq!(
            RestartLimit::parse(" 30 / 10s ").unwrap(),
            RestartLimit { deaths: 30, window: Duration::from_secs(10) }
        );
        for bad in ["", "5", "0/60s", "5/0s", "5/60m", "x/60s", "5/-1s"] {
            let e = RestartLimit::parse(bad).unwrap_err().to_string();
            assert!(e.contains("DEATHS/SECSs"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = toml::from_str::<FileConfig>("backing = \"/srv\"\nbakcing = \"/x\"\n").unwrap_err().to_string();
        assert!(err.contains("bakcing"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert!(toml::from_str::<FileConfig>("threads = \"many\"\n").is_err());
    }

    #[test]
    fn exports_need_a_dir_and_a_kind_and_stay_outside_the_mount_and_supervise() {
        let (b, m, st) = (Path::new("/srv/b"), Path::new("/srv/m"), Path::new("/var/lib/q"));
        let others = [("mountpoint", m), ("backing", b), ("state dir", st)];
        let dir = || Some(PathBuf::from("/srv/exports"));
        assert_eq!(validate_exports(None, false, false, false, others).unwrap(), None);
        assert!(validate_exports(None, true, false, false, others).unwrap_err().0.contains("exports_dir"));
        assert!(validate_exports(dir(), false, false, false, others).unwrap_err().0.contains("--export-projects"));
        assert!(validate_exports(dir(), true, false, true, others).unwrap_err().0.contains("--supervise"));
        let inside = validate_exports(Some(PathBuf::from("/srv/m/x")), true, true, false, others).unwrap_err().0;
        assert!(inside.contains("mountpoint"), "{inside}");
        let ok = validate_exports(dir(), true, true, false, others).unwrap().unwrap();
        assert_eq!(ok, ExportsConfig { dir: PathBuf::from("/srv/exports"), projects: true, users: true });
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn within_is_by_component() {
        assert!(within(Path::new("/srv/a/b"), Path::new("/srv/a")));
        assert!(within(Path::new("/srv/a"), Path::new("/srv/a")));
        assert!(!within(Path::new("/srv/ab"), Path::new("/srv/a")));
    }

    #[test]
    fn metrics_listen_is_loopback_unless_allowed() {
        let with = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        let none = FileConfig::default();
        let ok = validate_metrics(&with("metrics_listen = \"127.0.0.1:9746\""), &none).unwrap();
        assert_eq!(ok.listen, Some("127.0.0.1:9746".parse().unwrap()));
        assert!(validate_metrics(&with("metrics_listen = \"[::1]:9746\""), &none).is_ok());
        let err = validate_metrics(&with("metrics_listen = \"0.0.0.0:9746\""), &none).unwrap_err().to_string();
        assert!(err.contains("not a loopback address") && err.contains("metrics_allow_remote"), "{err}");
        let remote = with("metrics_listen = \"0.0.0.0:9746\"\nmetrics_allow_remote = true");
        assert!(validate_metrics(&remote, &none).is_ok());
        assert!(
            validate_metrics(&with("metrics_listen = \"localhost\""), &none).unwrap_err().to_string().contains("e.g.")
        );
        let err = validate_metrics(&with("metrics_textfile = \"rel.prom\""), &none).unwrap_err().to_string();
        assert!(err.contains("absolute"), "{err}");
        assert!(validate_metrics(&with("metrics_textfile = \"/nonexistent-dir/q.prom\""), &none).is_err());
        assert_eq!(validate_metrics(&none, &none).unwrap().max_subjects, DEFAULT_MAX_SUBJECTS);
    }

    #[test]
    fn notify_command_is_an_absolute_executable() {
        let with = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        assert!(validate_notify(&FileConfig::default()).unwrap().is_none());
        let ok =
            validate_notify(&with("notify_command = [\"/bin/true\", \"x\"]\nnotify_timeout = 5")).unwrap().unwrap();
        assert_eq!(ok.command, ["/bin/true", "x"]);
        assert_eq!(ok.timeout, Duration::from_secs(5));
        for bad in [
            "notify_command = []",
            "notify_command = [\"true\"]",
            "notify_command = [\"/etc/passwd\"]",
            "notify_command = [\"/bin/true\"]\nnotify_timeout = 0",
            "notify_interval = 60",
        ] {
            assert!(validate_notify(&with(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttl_bounds() {
        assert!(ttl("entry_ttl", Some(-1.0)).is_err());
        assert_eq!(ttl("entry_ttl", None).unwrap(), Duration::from_secs(10));
    }
}
