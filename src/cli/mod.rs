//! The command line: one file per subcommand. Arguments become a validated config before
//! anything runs; errors are printed once, by `main`.

mod demo;
mod mount;

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a backing directory and serve it in the foreground until unmounted or signalled.
    Mount(MountArgs),
    /// Run quotafs on a built-in example: an ext4 image, a mount, a tenant writing, cleanup.
    Demo(DemoArgs),
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
    /// Serve read-only opens through the daemon instead of FUSE passthrough.
    #[arg(long)]
    pub no_passthrough: bool,
    /// Do not negotiate POSIX ACLs with the kernel.
    #[arg(long)]
    pub no_acl: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (image, mountpoint, state) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

pub fn load_file_config(cli: &Cli) -> Result<FileConfig, CliError> {
    match &cli.config {
        Some(path) => FileConfig::load(path).map_err(CliError::usage),
        None => Ok(FileConfig::default()),
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Mount(args) => mount::run(&cli, args),
        Command::Demo(args) => demo::run(args),
    }
}
