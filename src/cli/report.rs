//! `quotafs report`: usage per user and per project.

use super::{Cli, CliError, ReportArgs, human, state_dir};
use crate::admin::server::{Names, rows};
use crate::admin::{Request, Response, Row, call};
use crate::ledger::{recovery, store::Store, wal};

/// Rows from the running daemon, or from the last checkpoint when none runs.
pub fn fetch(cli: &Cli) -> Result<Vec<Row>, CliError> {
    let dir = state_dir(cli)?;
    match call(&dir, &Request::Report).map_err(CliError::failed)? {
        Some(Response::Report { rows }) => Ok(rows),
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        Some(other) => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            if !dir.join(crate::ledger::store::FILE).exists() {
                return Err(CliError::usage(format!(
                    "no ledger in {} (never mounted with this state dir?); pass --state-dir or --config",
                    dir.display()
                )));
            }
            let store = Store::open(&dir).map_err(CliError::failed)?;
            let snap = store.load().map_err(CliError::failed)?.unwrap_or_default();
            let pending: usize = recovery::list_logs(&dir)
                .unwrap_or_default()
                .iter()
                .filter(|(e, _)| *e >= snap.epoch)
                .filter_map(|(_, p)| wal::read(p).ok())
                .map(|c| c.records.len())
                .sum();
            eprintln!(
                "quotafs: no daemon running on {}: figures as of the last checkpoint (epoch {}){}",
                dir.display(),
                snap.epoch,
                if pending > 0 {
                    format!("; {pending} activity-log records will be replayed at the next mount")
                } else {
                    String::new()
                }
            );
            Ok(rows(&snap.usage, &Names::load(store.project_names().unwrap_or_default())))
        }
    }
}

pub fn run(cli: &Cli, args: &ReportArgs) -> Result<(), CliError> {
    let rows = fetch(cli)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| CliError::failed(e.to_string()))?);
        return Ok(());
    }
    let size = |b: u64| if args.bytes { b.to_string() } else { human(b) };
    println!("{:<8} {:>10}  {:<16} {:>12} {:>10}", "KIND", "ID", "NAME", "USED", "INODES");
    for r in rows {
        println!(
            "{:<8} {:>10}  {:<16} {:>12} {:>10}",
            r.kind,
            r.id,
            r.name.as_deref().unwrap_or("-"),
            size(r.bytes_used),
            r.inodes_used
        );
    }
    Ok(())
}
