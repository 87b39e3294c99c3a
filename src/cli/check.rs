//! `quotafs check [--repair]`: full parallel rescan compared with the ledger. Through the
//! running daemon when there is one (usage changes wait during the scan; `--repair` fixes the
//! live ledger), else offline on the backing and the store.

use super::progress::Terminal;
use super::{CheckArgs, Cli, CliError, human, load_file_config, state_dir};
use crate::admin::server::{CHECK_REPAIR_TASK, CHECK_TASK, check_report};
use crate::admin::{CheckReport, Request, Response, call};
use crate::ledger::{journal::Journal, recovery, store::Snapshot, store::Store};
use crate::scan;

fn offline(cli: &Cli, args: &CheckArgs, dir: &std::path::Path) -> Result<CheckReport, CliError> {
    let backing = match &args.backing {
        Some(b) => b.clone(),
        None => load_file_config(cli)?.backing.ok_or_else(|| {
            CliError::usage("no daemon is running: pass --backing DIR (or --config with `backing`) to check offline")
        })?,
    };
    let _lock = crate::daemon::lock_state_dir(dir).map_err(CliError::failed)?;
    // The routed backings, from the config file's [[route]] tables.
    let mut routes = Vec::new();
    for r in load_file_config(cli)?.route.unwrap_or_default() {
        let pattern = crate::route::Pattern::parse(&r.pattern).map_err(|e| CliError::usage(e.to_string()))?;
        let dir = r
            .backing
            .canonicalize()
            .map_err(|e| CliError::usage(format!("route {:?}: backing {}: {e}", r.pattern, r.backing.display())))?;
        routes.push((pattern, dir));
    }
    let backings =
        crate::backing::open_all(&backing, &crate::route::Routes::routed_dirs(&routes)).map_err(CliError::usage)?;
    let route_table = crate::route::Routes::over(&routes, &backings);
    let threads = std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4);
    // Bring the ledger up to date exactly as a mount would, then compare. If the store or a
    // log cannot be read, --repair rebuilds from a full rescan (the damaged files are kept).
    let journal = Journal::open(&backings).map_err(CliError::failed)?;
    let recovered =
        Store::open(dir).and_then(|store| recovery::recover(dir, &store, &backings, &journal).map(|r| (store, r)));
    let (store, snap) = match recovered {
        Ok((store, (snap, _))) => (store, snap),
        Err(e) if args.repair => {
            eprintln!("quotafs: {e}");
            eprintln!("quotafs: rebuilding the ledger from a full rescan");
            if Store::open(dir).and_then(|s| s.load()).is_err() {
                let aside = Store::quarantine(dir).map_err(CliError::failed)?;
                eprintln!("quotafs: the unreadable store was moved to {}", aside.display());
            }
            let store = Store::open(dir).map_err(CliError::failed)?;
            let epoch = recovery::list_logs(dir).unwrap_or_default().last().map_or(1, |(e, _)| e + 1);
            // The rescan replaces every record: none may be replayed over it.
            journal.remove_before(u64::MAX);
            for (_, log) in recovery::list_logs(dir).unwrap_or_default() {
                let aside = log.with_extension("log.damaged");
                let _ = std::fs::rename(&log, &aside);
            }
            let (result, per_backing) = scan::scan_split_as(CHECK_REPAIR_TASK, &backings, scan::Mode::Tag, threads)
                .map_err(CliError::failed)?;
            let snap = Snapshot { epoch, usage: result.usage.clone(), grace: None, per_backing };
            store.commit(&snap).map_err(CliError::failed)?;
            let mut report = check_report(&result, &snap.usage);
            report.repaired = true;
            return Ok(report);
        }
        Err(e) => return Err(CliError::failed(e)),
    };
    recovery::remove_logs_before(dir, snap.epoch);
    journal.remove_before(snap.epoch);
    let task = if args.repair { CHECK_REPAIR_TASK } else { CHECK_TASK };
    let (result, per_backing) =
        scan::scan_split_as(task, &backings, scan::Mode::Count, threads).map_err(CliError::failed)?;
    let mut report = check_report(&result, &snap.usage);
    report.conflicts = crate::route::conflicts(&backings, &route_table);
    if args.repair && !report.drift.is_empty() && result.errors == 0 {
        store
            .commit(&Snapshot { epoch: snap.epoch + 1, usage: result.usage, grace: None, per_backing })
            .map_err(CliError::failed)?;
        recovery::remove_logs_before(dir, snap.epoch + 1);
        journal.remove_before(snap.epoch + 1);
        report.repaired = true;
    }
    Ok(report)
}

pub fn run(cli: &Cli, args: &CheckArgs) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    // On a terminal, the scan's progress: online read from the daemon's status, offline
    // from this process's own walk.
    let task = if args.repair { CHECK_REPAIR_TASK } else { CHECK_TASK };
    let online = {
        let _shown = Terminal::daemon(&dir, task);
        call(&dir, &Request::Check { repair: args.repair }).map_err(CliError::failed)?
    };
    let report = match online {
        Some(Response::Check { report }) => report,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            let _shown = Terminal::local();
            offline(cli, args, &dir)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::failed(e.to_string()))?);
    } else {
        println!("scanned {} inodes in {:.2} s", report.inodes, report.seconds);
        if report.open_unlinked > 0 {
            println!("counted {} unlinked files still open (charged until their last close)", report.open_unlinked);
        }
        for d in &report.drift {
            println!(
                "drift: {} {}: expected {} ({} bytes), {} inodes; ledger has {} ({} bytes), {} inodes",
                d.kind,
                d.id,
                human(d.expected_bytes),
                d.expected_bytes,
                d.expected_inodes,
                human(d.found_bytes),
                d.found_bytes,
                d.found_inodes
            );
        }
        for c in &report.conflicts {
            println!("conflict: {c}");
        }
        if report.drift.is_empty() {
            println!("ledger matches the backing exactly");
        } else if report.repaired {
            println!("repaired: the ledger now holds the rescan's figures");
        }
    }
    if report.errors > 0 {
        return Err(CliError::failed(format!(
            "{} entries could not be read; the comparison is not exact",
            report.errors
        )));
    }
    if !report.drift.is_empty() && !report.repaired {
        return Err(CliError::failed(format!(
            "{} subjects differ from the backing; run `quotafs check --repair` to fix the ledger",
            report.drift.len()
        )));
    }
    Ok(())
}
