//! `quotafs quota set|get|clear`: through the daemon when it runs (in force at once), else in
//! the store (in force at the next mount). Durable when the command returns.

use super::{Cli, CliError, QuotaCommand, Target, human, report, state_dir};
use crate::admin::server::Names;
use crate::admin::{Request, Response, call};
use crate::ledger::store::Store;
use crate::quota::Subject;
use crate::quota::limits::{LimitKey, Limits, parse_count, parse_duration, parse_size};

/// The limit key a target names; user names from /etc/passwd, project names from the ledger.
fn key_of(cli: &Cli, t: &Target) -> Result<LimitKey, CliError> {
    if t.default_user {
        return Ok(LimitKey::DefaultUser);
    }
    if t.default_project {
        return Ok(LimitKey::DefaultProject);
    }
    if let Some(u) = &t.user {
        if let Ok(uid) = u.parse::<u32>() {
            return Ok(LimitKey::Subject(Subject::User(uid)));
        }
        let names = Names::load(Default::default());
        return names.uid_of(u).map(|uid| LimitKey::Subject(Subject::User(uid))).ok_or_else(|| {
            CliError::usage(format!("no user named {u:?} (not in /etc/passwd); give a uid or an existing name"))
        });
    }
    let p = t.project.as_deref().unwrap_or_default();
    if let Ok(id) = p.parse::<u32>() {
        return Ok(LimitKey::Subject(Subject::Project(id)));
    }
    let rows = report::fetch(cli)?;
    rows.iter()
        .find(|r| r.kind == "project" && r.name.as_deref() == Some(p))
        .map(|r| LimitKey::Subject(Subject::Project(r.id)))
        .ok_or_else(|| {
            CliError::usage(format!(
                "no project named {p:?}; give an id, or name it with `quotafs project assign --name`"
            ))
        })
}

fn set_offline(cli: &Cli, key: LimitKey, change: Option<Limits>) -> Result<Limits, CliError> {
    let dir = state_dir(cli)?;
    let _lock = crate::daemon::lock_state_dir(&dir).map_err(CliError::failed)?;
    let store = Store::open(&dir).map_err(CliError::failed)?;
    let current = store.limits().map_err(CliError::failed)?.get(&key).copied().unwrap_or_default();
    match change {
        Some(c) => {
            let m = current.merged(&c).map_err(CliError::usage)?;
            store.set_limits(key, Some(&m)).map_err(CliError::failed)?;
            Ok(m)
        }
        None => {
            store.set_limits(key, None).map_err(CliError::failed)?;
            Ok(Limits::default())
        }
    }
}

fn show(key: LimitKey, l: &Limits) {
    let s = |v: Option<u64>| v.map_or("-".into(), |b| format!("{} ({b} bytes)", human(b)));
    let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    println!("{}:", key.describe());
    println!("  bytes:  soft {}  hard {}", s(l.bytes_soft), s(l.bytes_hard));
    println!("  inodes: soft {}  hard {}", n(l.inodes_soft), n(l.inodes_hard));
    println!("  grace:  {} s", l.grace_secs());
}

fn show_mine(cli: &Cli, json: bool) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    let sock = dir.join(crate::admin::TENANT_SOCKET);
    let rows = match crate::admin::call_at(&sock, &Request::Show).map_err(CliError::failed)? {
        Some(Response::Report { rows }) => rows,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => return Err(CliError::failed(format!("no quotafs daemon answers at {}", sock.display()))),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| CliError::failed(e.to_string()))?);
        return Ok(());
    }
    let lim = |v: Option<u64>, h: bool| v.map_or("-".into(), |v| if h { human(v) } else { v.to_string() });
    println!(
        "{:<8} {:>10} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "KIND", "ID", "NAME", "USED", "SOFT", "HARD", "INODES", "SOFT", "HARD"
    );
    for r in rows {
        println!(
            "{:<8} {:>10} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.kind,
            r.id,
            r.name.as_deref().unwrap_or("-"),
            human(r.bytes_used),
            lim(r.bytes_soft, true),
            lim(r.bytes_hard, true),
            r.inodes_used,
            lim(r.inodes_soft, false),
            lim(r.inodes_hard, false)
        );
        if let Some(g) = r.grace_expires {
            println!("         over the soft byte limit; grace ends {g}");
        }
    }
    Ok(())
}

pub fn run(cli: &Cli, cmd: &QuotaCommand) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    match cmd {
        QuotaCommand::Show { json } => show_mine(cli, *json),
        QuotaCommand::Set { target, bytes_soft, bytes_hard, inodes_soft, inodes_hard, grace } => {
            let key = key_of(cli, target)?;
            let opt = |v: &Option<String>, f: fn(&str) -> Result<u64, String>| v.as_deref().map(f).transpose();
            let change = Limits {
                bytes_soft: opt(bytes_soft, parse_size).map_err(CliError::usage)?,
                bytes_hard: opt(bytes_hard, parse_size).map_err(CliError::usage)?,
                inodes_soft: opt(inodes_soft, parse_count).map_err(CliError::usage)?,
                inodes_hard: opt(inodes_hard, parse_count).map_err(CliError::usage)?,
                grace: opt(grace, parse_duration).map_err(CliError::usage)?,
            };
            if change == Limits::default() {
                return Err(CliError::usage(
                    "nothing to set: give --bytes-soft, --bytes-hard, --inodes-soft, --inodes-hard or --grace",
                ));
            }
            let merged = match call(&dir, &Request::QuotaSet { key: key.key(), change }).map_err(CliError::failed)? {
                Some(Response::Done { message }) => serde_json::from_str(&message).unwrap_or_default(),
                Some(Response::Error { message }) => return Err(CliError::usage(message)),
                Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
                None => {
                    let m = set_offline(cli, key, Some(change))?;
                    eprintln!("quotafs: no daemon running: stored; in force from the next mount");
                    m
                }
            };
            if let LimitKey::Subject(Subject::Project(id)) = key
                && !report::fetch(cli)?.iter().any(|r| r.kind == "project" && r.id == id && r.inodes_used > 0)
            {
                eprintln!(
                    "quotafs: note: no directory carries project {id} yet; assign one with `quotafs project assign`"
                );
            }
            show(key, &merged);
            Ok(())
        }
        QuotaCommand::Clear { target } => {
            let key = key_of(cli, target)?;
            match call(&dir, &Request::QuotaClear { key: key.key() }).map_err(CliError::failed)? {
                Some(Response::Done { .. }) => {}
                Some(Response::Error { message }) => return Err(CliError::failed(message)),
                Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
                None => {
                    set_offline(cli, key, None)?;
                }
            }
            println!("{}: limits cleared", key.describe());
            Ok(())
        }
        QuotaCommand::Get { target } => {
            let key = key_of(cli, target)?;
            let rows = report::fetch(cli)?;
            match key {
                LimitKey::Subject(s) => {
                    let row = rows.iter().find(|r| r.kind == s.kind() && r.id == s.id());
                    let l = row
                        .map(|r| Limits {
                            bytes_soft: r.bytes_soft,
                            bytes_hard: r.bytes_hard,
                            inodes_soft: r.inodes_soft,
                            inodes_hard: r.inodes_hard,
                            grace: None,
                        })
                        .unwrap_or_default();
                    show(key, &l);
                    if let Some(r) = row {
                        println!(
                            "  used:   {} ({} bytes), {} inodes",
                            human(r.bytes_used),
                            r.bytes_used,
                            r.inodes_used
                        );
                        if let Some(g) = &r.grace_expires {
                            println!("  over the soft byte limit; grace ends {g}");
                        }
                    }
                }
                _ => {
                    let l = match call(&dir, &Request::QuotaGet { key: key.key() }).map_err(CliError::failed)? {
                        Some(Response::Done { message }) => serde_json::from_str(&message).unwrap_or_default(),
                        Some(Response::Error { message }) => return Err(CliError::failed(message)),
                        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
                        None => Store::open(&dir)
                            .and_then(|s| s.limits())
                            .map_err(CliError::failed)?
                            .get(&key)
                            .copied()
                            .unwrap_or_default(),
                    };
                    show(key, &l);
                }
            }
            Ok(())
        }
    }
}
