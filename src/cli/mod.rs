//! The command line: one file per subcommand. Arguments become a validated config before
//! anything runs; errors are printed once, by `main`.

mod check;
mod demo;
mod dump;
mod mount;
mod nfs;
mod progress;
mod project;
mod quota;
mod report;
mod rquotad;
mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::FileConfig;

/// A failed command: what to print and the exit status (2 for bad input, 1 for failures).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: 2 }
    }
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: 1 }
    }
}

/// Every refused config file, flag or value is bad input: exit status 2.
impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> CliError {
        CliError::usage(e.to_string())
    }
}

/// A refused limit (a flag, a dump line) is bad input: exit status 2.
impl From<crate::quota::limits::LimitError> for CliError {
    fn from(e: crate::quota::limits::LimitError) -> CliError {
        CliError::usage(e.to_string())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "quotafs",
    version,
    about = "A FUSE file system over ext4 that keeps exact, crash-safe per-user and per-project disk quotas",
    long_about = "quotafs serves an ext4 backing directory through FUSE, as root, beneath untrusted \
                  tenants. Every subcommand finds the daemon's state (ledger, socket) through \
                  --state-dir, or the `state_dir` key of --config."
)]
pub struct Cli {
    /// TOML config file; command-line flags override its keys (see quotafs.toml(5)).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory holding the ledger and the daemon's socket [default: /var/lib/quotafs].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log lines as text (colours only on a terminal) or one JSON object per line. The filter
    /// is QUOTAFS_LOG (e.g. `debug`, `info,redb=warn`).
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a backing directory and serve it in the foreground until unmounted or signalled.
    Mount(MountArgs),
    /// Run quotafs on a built-in example: an ext4 image, a mount, a tenant writing, cleanup.
    Demo(DemoArgs),
    /// Usage per user and per project, one row each.
    Report(ReportArgs),
    /// The ledger's state: epoch, activity log, last checkpoint, last recovery.
    Status(StatusArgs),
    /// Rescan the backings in full and compare with the ledger (exit 1 on drift).
    Check(CheckArgs),
    /// Snapshot the ledger now (e.g. before backing up the state dir); needs the daemon.
    Checkpoint,
    /// Replace the serving process of a `mount --supervise` with the binary now installed at
    /// the path the mount was started from (an upgrade in place): the new binary checks that
    /// it reads the state dir first; the mount stays, tenants see a pause.
    Restart,
    /// Limits: set, get or clear a user's, a project's or the default limits.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Directory-tree quotas: assign, list, clear project ids.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Serve the rquota RPC service (program 100011) so that `quota` on NFS clients shows
    /// their quotas from the running daemon's ledger; registers with the local rpcbind.
    Rquotad(RquotadArgs),
    /// NFS (nfs-ganesha) configuration for exporting the mount.
    #[command(subcommand)]
    Nfs(NfsCommand),
}

#[derive(Debug, Subcommand)]
pub enum NfsCommand {
    /// Print nfs-ganesha EXPORT blocks (FSAL VFS) for the mount root and, on request, one per
    /// project (/projects/NAME) and one per user home (/users/NAME), with stable export ids.
    Exports(NfsExportsArgs),
}

#[derive(Debug, Args)]
pub struct NfsExportsArgs {
    /// One export per project with a top directory, pseudo path /projects/<name, else id>,
    /// Export_Id 1 + project id (ids 1 to 32766).
    #[arg(long)]
    pub projects: bool,
    /// One export per user home (a top-level directory of the mount owned by that non-root
    /// user), pseudo path /users/<name, else uid>, Export_Id 32768 + uid (uids 1 to 32767).
    #[arg(long)]
    pub users: bool,
    /// The mount's path as ganesha sees it [default: where the running daemon mounted it].
    #[arg(long, value_name = "DIR")]
    pub mountpoint: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RquotadArgs {
    /// UDP and TCP port to listen on [default: any free port; rpcbind tells clients which].
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,
    /// An address from which root may ask about any user or project (repeatable)
    /// [default: 127.0.0.1 and ::1]. Everyone else sees only their own figures.
    #[arg(long, value_name = "ADDR")]
    pub trusted: Vec<std::net::IpAddr>,
    /// Do not register with rpcbind (clients must be told the port).
    #[arg(long)]
    pub no_register: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// One JSON list of objects, one per row, with 13 keys: kind, id, name, bytes_used,
    /// inodes_used, bytes_soft, bytes_hard, inodes_soft, inodes_hard, grace_expires,
    /// inodes_grace_expires, grace_expires_unix, inodes_grace_expires_unix (see quotafs(8)).
    #[arg(long, conflicts_with_all = ["no_header", "parsable"])]
    pub json: bool,
    /// Sizes in bytes instead of human units.
    #[arg(long)]
    pub bytes: bool,
    /// Exact numbers: sizes in bytes, grace left in seconds (as `zfs userspace -p`).
    #[arg(short = 'p', long)]
    pub parsable: bool,
    /// No header line; fields separated by one tab (for scripts).
    #[arg(short = 'H', long)]
    pub no_header: bool,
    /// Only this user (a uid or a name known to NSS), or `all` users. An unknown name is an error.
    #[arg(long, value_name = "UID|NAME|all")]
    pub user: Option<String>,
    /// Only this project (an id or a name), or `all` projects. An unknown name is an error.
    #[arg(long, value_name = "ID|NAME|all")]
    pub project: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Replace the ledger's figures with the rescan's (the mount may stay up).
    #[arg(long)]
    pub repair: bool,
    /// The backing directory, when no daemon is running (or `backing` in --config).
    #[arg(long, value_name = "DIR")]
    pub backing: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Whose limits: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A user, by uid or name.
    #[arg(long, value_name = "UID|NAME")]
    pub user: Option<String>,
    /// A project, by id or name.
    #[arg(long, value_name = "ID|NAME")]
    pub project: Option<String>,
    /// The limits of users that have none of their own.
    #[arg(long)]
    pub default_user: bool,
    /// The limits of projects that have none of their own.
    #[arg(long)]
    pub default_project: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set limits (fields not given keep their value). Sizes: bytes or K/M/G/T (powers of
    /// 1024); durations: 30s, 15m, 12h, 7d, 2w. Durable and in force when this returns.
    Set {
        #[command(flatten)]
        target: Target,
        /// Bytes usage may pass for the grace period (e.g. 10G).
        #[arg(long, value_name = "SIZE")]
        bytes_soft: Option<String>,
        /// Bytes usage may never pass (e.g. 12G).
        #[arg(long, value_name = "SIZE")]
        bytes_hard: Option<String>,
        /// Inodes (files, directories, symlinks...) usage may pass for the grace period (e.g. 100k).
        #[arg(long, value_name = "N")]
        inodes_soft: Option<String>,
        /// Inodes usage may never pass (e.g. 1M).
        #[arg(long, value_name = "N")]
        inodes_hard: Option<String>,
        /// How long usage may stay over a soft limit [default: 7d].
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Show the limits in force (and whether they are the subject's own or a default), the
    /// grace period, and usage.
    Get {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove limits (a subject then falls back to the defaults, if any).
    Clear {
        #[command(flatten)]
        target: Target,
    },
    /// Write every limit, grace period and project name as text (one line per subject, see
    /// quotafs(8)), to FILE or standard output.
    Dump {
        /// Where to write [default: standard output].
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Make the limits, grace periods and project names exactly those of a dump: all or
    /// nothing; a bad line is named and nothing changes. With or without a running daemon.
    Restore {
        /// The dump to read (`-` for standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Your own usage and limits, and those of the projects whose top directory you own.
    /// For any user; needs no root.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Make PATH (a directory seen through the mount) and everything in it project ID.
    Assign {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Project id (1 to 4294967295; 0 is the default project).
        #[arg(long, value_name = "N")]
        id: u32,
        /// A name for the project, shown by `report` and `project list`: unique, 1 to 64 of
        /// A-Z a-z 0-9 . _ - and not only digits.
        #[arg(long)]
        name: Option<String>,
        /// Also move inodes of other projects found in the tree into this one (without it, a
        /// tree holding another project's inodes is refused).
        #[arg(long)]
        absorb: bool,
    },
    /// Projects with their usage.
    List {
        /// Print one JSON list of objects (id, name, bytes_used, inodes_used).
        #[arg(long)]
        json: bool,
    },
    /// Return PATH's tree to the default project 0.
    Clear {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Also return inodes of projects nested in the tree to project 0 (without it, a tree
        /// holding another project than its own is refused).
        #[arg(long)]
        absorb: bool,
    },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount (or `mountpoint` in the config file).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,
    /// The ext4 directory to serve at the mount root.
    #[arg(long, value_name = "DIR")]
    pub backing: Option<PathBuf>,
    /// FUSE worker threads [default: 2 per CPU, at least 4].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Seconds the kernel may cache names, negative lookups included [default: 10].
    #[arg(long, value_name = "SECS")]
    pub entry_ttl: Option<f64>,
    /// Seconds the kernel may cache attributes [default: 10].
    #[arg(long, value_name = "SECS")]
    pub attr_ttl: Option<f64>,
    /// Descriptors kept in the inode fd cache [default: 8192].
    #[arg(long, value_name = "N")]
    pub fd_cache: Option<usize>,
    /// Largest write request in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_write: Option<u32>,
    /// How FUSE requests travel: auto (io_uring where the kernel offers it, else /dev/fuse),
    /// uring (refuse to start without it) or classic (/dev/fuse) [default: auto].
    #[arg(long, value_name = "KIND", env = "QUOTAFS_TRANSPORT")]
    pub transport: Option<String>,
    /// Serve through a supervisor that keeps the mount when the serving process dies and
    /// starts another (over /dev/fuse); `quotafs restart` replaces it with an upgraded binary.
    #[arg(long)]
    pub supervise: bool,
    /// With --supervise: stop restarting after DEATHS deaths of the serving process within
    /// SECS seconds (the mount then answers EIO until unmounted) [default: 5/60s].
    #[arg(long, value_name = "DEATHS/SECSs")]
    pub restart_limit: Option<String>,
    /// Mount nothing: say whether this binary can take over the running mount of this config
    /// (reads its state dir's formats, changes nothing; exit 0 if it can, 2 and why if not).
    /// `quotafs restart` runs it first.
    #[arg(long)]
    pub check_takeover: bool,
    /// Seconds between ledger checkpoints [default: 30].
    #[arg(long, value_name = "SECS")]
    pub checkpoint_interval: Option<f64>,
    /// A uid never refused for quota (repeatable; root always is). Usage is still counted.
    #[arg(long, value_name = "UID")]
    pub exempt_uid: Vec<u32>,
    /// Accepted and ignored: every open is served through the page cache (design §4).
    #[arg(long, hide = true)]
    pub no_passthrough: bool,
    /// Files one uid other than root may hold open through the mount; past it that tenant's
    /// opens fail with EMFILE [default: 4096].
    #[arg(long, value_name = "N")]
    pub opens_per_uid: Option<usize>,
    /// Do not negotiate POSIX ACLs with the kernel.
    #[arg(long)]
    pub no_acl: bool,
    /// Serve the subtrees matching PATTERN from the ext4 directory DIR (repeatable), e.g.
    /// '/home/*/Dropbox=/srv/dropbox'. Added to the config file's [[route]] tables.
    #[arg(long, value_name = "PATTERN=DIR")]
    pub route: Vec<String>,
    /// Serve routed backings from the main worker threads (no load isolation; for comparison).
    #[arg(long)]
    pub shared_pool: bool,
    /// Charge writes made directly to routed backings (not through the mount): watched with
    /// fanotify and recounted, and recounted at every mount.
    #[arg(long)]
    pub watch_routes: bool,
    /// Worker threads of each routed backing's pool [default: as many as --threads].
    #[arg(long, value_name = "N")]
    pub route_threads: Option<usize>,
    /// Serve Prometheus metrics over HTTP at ADDR:PORT/metrics (loopback only unless the
    /// config file sets metrics_allow_remote), e.g. 127.0.0.1:9746.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Write the metrics to FILE every 15 s, for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
    /// Mount export connections (one FUSE file system per exported project or home, for NFS
    /// exports whose df shows that quota) under DIR, a root-only directory outside the mount.
    #[arg(long, value_name = "DIR")]
    pub exports_dir: Option<PathBuf>,
    /// An export connection for each project with a top directory (needs --exports-dir).
    #[arg(long)]
    pub export_projects: bool,
    /// An export connection for each user home (needs --exports-dir).
    #[arg(long)]
    pub export_users: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (image, mountpoint, state) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

pub fn load_file_config(cli: &Cli) -> Result<FileConfig, CliError> {
    match &cli.config {
        Some(path) => Ok(FileConfig::load(path)?),
        None => Ok(FileConfig::default()),
    }
}

/// The state dir every subcommand works on: --state-dir, else the config's, else the default.
pub fn state_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(d) = &cli.state_dir {
        return Ok(d.clone());
    }
    let file = load_file_config(cli)?;
    Ok(file.state_dir.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_STATE_DIR)))
}

/// A duration in at most two units, largest first: `7d`, `1d23h`, `12h`, `1h30m`, `45s`.
pub fn duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    if secs == 0 {
        return "0s".into();
    }
    let Some(i) = UNITS.iter().position(|(u, _)| secs >= *u) else { return "0s".into() };
    let (u, name) = UNITS[i];
    let mut out = format!("{}{name}", secs / u);
    let rest = secs % u;
    if let Some((u2, name2)) = UNITS.get(i + 1)
        && rest / u2 > 0
    {
        out += &format!("{}{name2}", rest / u2);
    }
    out
}

/// Human size in powers of 1024, as repquota -s prints them.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[i])
    } else {
        format!("{v:.0}{}", UNITS[i])
    }
}

fn checkpoint(cli: &Cli) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    match crate::admin::call(&dir, &crate::admin::Request::Checkpoint).map_err(CliError::failed)? {
        Some(crate::admin::Response::Done { message }) => {
            println!("{message}");
            Ok(())
        }
        Some(crate::admin::Response::Error { message }) => Err(CliError::failed(message)),
        None => Err(CliError::usage(format!("no quotafs daemon is running on state dir {}", dir.display()))),
        Some(other) => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
    }
}

fn restart(cli: &Cli) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    let socket = dir.join(crate::supervise::SOCKET);
    match crate::admin::call_at(&socket, &crate::admin::Request::Restart).map_err(CliError::failed)? {
        Some(crate::admin::Response::Done { message }) => {
            println!("{message}");
            Ok(())
        }
        Some(crate::admin::Response::Refused { message }) => {
            Err(CliError::failed(format!("restart refused: {message}")))
        }
        Some(crate::admin::Response::Error { message }) => Err(CliError::failed(message)),
        None => Err(CliError::usage(format!(
            "no supervisor answers on {}: `quotafs restart` needs a mount started with --supervise (or \
             `supervise = true`) on state dir {}",
            socket.display(),
            dir.display()
        ))),
        Some(other) => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Mount(args) => mount::run(&cli, args),
        Command::Demo(args) => demo::run(args),
        Command::Report(args) => report::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Check(args) => check::run(&cli, args),
        Command::Project(cmd) => project::run(&cli, cmd),
        Command::Checkpoint => checkpoint(&cli),
        Command::Restart => restart(&cli),
        Command::Quota(cmd) => quota::run(&cli, cmd),
        Command::Rquotad(args) => rquotad::run(&cli, args),
        Command::Nfs(NfsCommand::Exports(args)) => nfs::run(&cli, args),
    }
}
