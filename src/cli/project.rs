//! `quotafs project assign|list|clear`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Cli, CliError, ProjectCommand, human, report, state_dir};
use crate::admin::names::check_project_name;
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

fn assign(cli: &Cli, path: &Path, id: u32, name: Option<String>, absorb: bool) -> Result<(), CliError> {
    let node = node_of(cli, path)?;
    let dir = state_dir(cli)?;
    let reply = {
        let _shown = super::progress::Terminal::daemon(&dir, crate::scan::ASSIGN_TASK);
        call(&dir, &Request::ProjectAssign { node, id, name, absorb }).map_err(CliError::failed)?
    };
    match reply {
        Some(Response::Done { message }) => {
            println!("{}: {message}", path.display());
            Ok(())
        }
        Some(Response::Refused { message }) => Err(CliError::usage(message)),
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        other => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
    }
}

pub fn run(cli: &Cli, cmd: &ProjectCommand) -> Result<(), CliError> {
    match cmd {
        ProjectCommand::Assign { path, id, name, absorb } => {
            if *id == 0 {
                return Err(CliError::usage("project id 0 is the default project; use `quotafs project clear PATH`"));
            }
            if let Some(n) = name {
                check_project_name(n).map_err(|e| CliError::usage(e.to_string()))?;
            }
            assign(cli, path, *id, name.clone(), *absorb)
        }
        ProjectCommand::Clear { path, absorb } => assign(cli, path, 0, None, *absorb),
        ProjectCommand::List { json } => {
            let rows: Vec<_> = report::fetch(cli)?.into_iter().filter(|r| r.kind == "project").collect();
            if *json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id, "name": r.name, "bytes_used": r.bytes_used, "inodes_used": r.inodes_used,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| CliError::failed(e.to_string()))?);
                return Ok(());
            }
            let table: Vec<[String; 4]> = rows
                .iter()
                .map(|r| [r.id.to_string(), report::shown_name(r), human(r.bytes_used), r.inodes_used.to_string()])
                .collect();
            report::print_table(&["ID", "NAME", "USED", "INODES"], &table, false);
            Ok(())
        }
    }
}
