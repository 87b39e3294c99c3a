//! `quotafs project assign|list|clear`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Cli, CliError, ProjectCommand, human, report, state_dir};
use crate::admin::{Request, Response, call};

/// The node id of directory `path`, which must be on the mount the daemon serves.
fn node_of(cli: &Cli, path: &Path) -> Result<u64, CliError> {
    let dir = state_dir(cli)?;
    let status = match call(&dir, &Request::Status).map_err(CliError::failed)? {
        Some(Response::Status { status }) => status,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        _ => {
            return Err(CliError::usage(format!(
                "no quotafs daemon is running on state dir {}: projects are assigned through the mount; start `quotafs mount` first",
                dir.display()
            )));
        }
    };
    let mountpoint = status["mountpoint"].as_str().unwrap_or_default().to_string();
    let md = std::fs::metadata(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    if !md.is_dir() {
        return Err(CliError::usage(format!("{} is not a directory: a project is a directory tree", path.display())));
    }
    let mp = std::fs::metadata(&mountpoint).map_err(|e| CliError::failed(format!("{mountpoint}: {e}")))?;
    if md.dev() != mp.dev() {
        return Err(CliError::usage(format!(
            "{} is not on the quotafs mount at {mountpoint}: give the path as tenants see it",
            path.display()
        )));
    }
    Ok(md.ino())
}

fn assign(cli: &Cli, path: &Path, id: u32, name: Option<String>) -> Result<(), CliError> {
    let node = node_of(cli, path)?;
    match call(&state_dir(cli)?, &Request::ProjectAssign { node, id, name }).map_err(CliError::failed)? {
        Some(Response::Done { message }) => {
            println!("{}: {message}", path.display());
            Ok(())
        }
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        other => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
    }
}

pub fn run(cli: &Cli, cmd: &ProjectCommand) -> Result<(), CliError> {
    match cmd {
        ProjectCommand::Assign { path, id, name } => {
            if *id == 0 {
                return Err(CliError::usage("project id 0 is the default project; use `quotafs project clear PATH`"));
            }
            if name.as_deref().is_some_and(|n| n.is_empty() || n.len() > 64 || n.chars().any(char::is_control)) {
                return Err(CliError::usage("a project name is 1 to 64 printable characters"));
            }
            assign(cli, path, *id, name.clone())
        }
        ProjectCommand::Clear { path } => assign(cli, path, 0, None),
        ProjectCommand::List => {
            println!("{:>10}  {:<16} {:>12} {:>10}", "ID", "NAME", "USED", "INODES");
            for r in report::fetch(cli)?.into_iter().filter(|r| r.kind == "project") {
                println!(
                    "{:>10}  {:<16} {:>12} {:>10}",
                    r.id,
                    r.name.as_deref().unwrap_or("-"),
                    human(r.bytes_used),
                    r.inodes_used
                );
            }
            Ok(())
        }
    }
}
