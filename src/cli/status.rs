//! `quotafs status`.

use super::{Cli, CliError, StatusArgs, state_dir};
use crate::admin::{Request, Response, call};
use crate::ledger::{recovery, store::Store};

pub fn run(cli: &Cli, args: &StatusArgs) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    let status = match call(&dir, &Request::Status).map_err(CliError::failed)? {
        Some(Response::Status { status }) => status,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            if let Some(pid) = crate::daemon::state_dir_holder(&dir) {
                // It holds the ledger but does not answer yet: recovering at start (its progress
                // file says how far), or stopping.
                let starting = crate::admin::status::read_starting(&dir);
                if let (true, Some(s)) = (args.json, &starting) {
                    let pid = pid.parse::<u64>().map_or(serde_json::json!(pid), |p| serde_json::json!(p));
                    let status = serde_json::json!({"running": false, "pid": pid, "starting": s});
                    let text = serde_json::to_string_pretty(&status).map_err(|e| CliError::failed(e.to_string()))?;
                    println!("{text}");
                    return Ok(());
                }
                return Err(CliError::failed(match starting {
                    Some(s) => format!(
                        "the quotafs daemon (pid {pid}) on state dir {} is starting ({}: {} inodes so far, {} s) \
                         and does not answer yet; try again in a moment (`quotafs status` answers once it \
                         serves; `--json` shows the progress)",
                        dir.display(),
                        s.phase,
                        crate::scan::grouped(s.inodes),
                        s.secs
                    ),
                    None => format!(
                        "the quotafs daemon (pid {pid}) on state dir {} is starting (recovering the ledger) or \
                         stopping, and does not answer yet; try again in a moment (`quotafs status` answers \
                         once it serves)",
                        dir.display()
                    ),
                }));
            }
            let store = Store::open(&dir).map_err(CliError::failed)?;
            let snap = store.load().map_err(CliError::failed)?;
            let logs: Vec<String> =
                recovery::list_logs(&dir).unwrap_or_default().iter().map(|(_, p)| p.display().to_string()).collect();
            serde_json::json!({
                "running": false,
                "checkpoint_epoch": snap.map(|s| s.epoch),
                "logs": logs,
            })
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).map_err(|e| CliError::failed(e.to_string()))?);
    } else {
        let mut status = status;
        // The walks the daemon runs, one line each (`check: 1,234 inodes, …`).
        let running = status.as_object_mut().and_then(|m| m.remove("in_progress"));
        print_flat("", &status);
        let walks: Vec<crate::scan::ProgressReading> =
            running.and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
        for w in walks {
            println!("in_progress: {}", w.line());
        }
    }
    Ok(())
}

fn print_flat(prefix: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                print_flat(&key, v);
            }
        }
        other => println!("{prefix}: {other}"),
    }
}
