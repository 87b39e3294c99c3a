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
            Ok(rows(
                &snap.usage,
                &Names::load(store.project_names().unwrap_or_default()),
                &store.limits().unwrap_or_default(),
                &store.grace().unwrap_or_default(),
            ))
        }
    }
}

pub fn run(cli: &Cli, args: &ReportArgs) -> Result<(), CliError> {
    let matches = |want: &str, r: &Row| want == "all" || want == r.id.to_string() || r.name.as_deref() == Some(want);
    let rows: Vec<Row> = fetch(cli)?
        .into_iter()
        .filter(|r| match (&args.user, &args.project) {
            (None, None) => true,
            (u, p) => {
                (r.kind == "user" && u.as_deref().is_some_and(|u| matches(u, r)))
                    || (r.kind == "project" && p.as_deref().is_some_and(|p| matches(p, r)))
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| CliError::failed(e.to_string()))?);
        return Ok(());
    }
    let size = |b: Option<u64>| match b {
        None => "-".to_string(),
        Some(b) if args.bytes => b.to_string(),
        Some(b) => human(b),
    };
    let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    // Grace left, as repquota shows it: time remaining, or "none" once it has run out.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let left = |t: &Option<String>, ends: Option<u64>| match (t, ends) {
        (None, _) | (_, None) => "-".to_string(),
        (Some(_), Some(end)) if end <= now => "none".to_string(),
        (Some(_), Some(end)) => {
            let s = end - now;
            if s >= 86_400 {
                format!("{}d{}h", s / 86_400, s % 86_400 / 3600)
            } else {
                format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
            }
        }
    };
    println!(
        "{:<8} {:>10} {:<14} {:<2} {:>9} {:>9} {:>9} {:>20}  {:>9} {:>9} {:>9} {:>20}",
        "KIND", "ID", "NAME", "", "USED", "SOFT", "HARD", "GRACE LEFT", "INODES", "SOFT", "HARD", "GRACE LEFT"
    );
    for r in rows {
        let over = |used: u64, soft: Option<u64>| if soft.is_some_and(|s| used > s) { '+' } else { '-' };
        println!(
            "{:<8} {:>10} {:<14} {}{} {:>9} {:>9} {:>9} {:>20}  {:>9} {:>9} {:>9} {:>20}",
            r.kind,
            r.id,
            r.name.as_deref().unwrap_or("-"),
            over(r.bytes_used, r.bytes_soft),
            over(r.inodes_used, r.inodes_soft),
            size(Some(r.bytes_used)),
            size(r.bytes_soft),
            size(r.bytes_hard),
            left(&r.grace_expires, r.grace_expires_unix),
            r.inodes_used,
            count(r.inodes_soft),
            count(r.inodes_hard),
            left(&r.inodes_grace_expires, r.inodes_grace_expires_unix),
        );
    }
    Ok(())
}
