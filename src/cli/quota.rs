//! `quotafs quota set|get|clear|dump|restore|show`: through the daemon when it runs (in force
//! at once), else in the store (in force at the next mount). Durable when the command returns.

use std::path::Path;

use super::{Cli, CliError, QuotaCommand, Target, dump, duration, human, report, state_dir};
use crate::admin::restore::LimitsDump;
use crate::admin::{Request, Response, call};
use crate::ledger::store::Store;
use crate::quota::Subject;
use crate::quota::limits::{DEFAULT_GRACE_SECS, LimitError, LimitKey, Limits, parse_count, parse_duration, parse_size};

/// The limit key a target names; user names through NSS, project names from the ledger.
fn key_of(cli: &Cli, t: &Target) -> Result<LimitKey, CliError> {
    if t.default_user {
        return Ok(LimitKey::DefaultUser);
    }
    if t.default_project {
        return Ok(LimitKey::DefaultProject);
    }
    if let Some(u) = &t.user {
        return Ok(LimitKey::Subject(Subject::User(report::resolve_user(u)?)));
    }
    let p = t.project.as_deref().unwrap_or_default();
    Ok(LimitKey::Subject(Subject::Project(report::resolve_project(cli, p)?)))
}

/// The limits stored for `key` itself (None: it has none of its own).
fn own_limits(cli: &Cli, key: LimitKey) -> Result<Option<Limits>, CliError> {
    let dir = state_dir(cli)?;
    let l = match call(&dir, &Request::QuotaGet { key: key.key() }).map_err(CliError::failed)? {
        Some(Response::Done { message }) => serde_json::from_str::<Limits>(&message)
            .map_err(|e| CliError::failed(format!("bad reply from the daemon: {e}")))?,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            if !dir.join(crate::ledger::store::FILE).exists() {
                return Ok(None);
            }
            Store::open(&dir).and_then(|s| s.limits()).map_err(CliError::failed)?.get(&key).copied().unwrap_or_default()
        }
    };
    Ok((l != Limits::default()).then_some(l))
}

/// Every limit and project name, from the daemon or the store.
fn dump_state(cli: &Cli) -> Result<LimitsDump, CliError> {
    let dir = state_dir(cli)?;
    match call(&dir, &Request::Dump).map_err(CliError::failed)? {
        Some(Response::Done { message }) => {
            serde_json::from_str(&message).map_err(|e| CliError::failed(format!("bad reply from the daemon: {e}")))
        }
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
            Ok(LimitsDump {
                limits: store.limits().map_err(CliError::failed)?.into_iter().map(|(k, l)| (k.key(), l)).collect(),
                names: store.project_names().map_err(CliError::failed)?,
            })
        }
    }
}

fn restore(cli: &Cli, file: &Path) -> Result<(), CliError> {
    let (what, text) = if file == Path::new("-") {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .map_err(|e| CliError::usage(format!("standard input: {e}")))?;
        ("standard input".to_string(), t)
    } else {
        let t = std::fs::read_to_string(file).map_err(|e| CliError::usage(format!("{}: {e}", file.display())))?;
        (file.display().to_string(), t)
    };
    let d = dump::parse(&what, &text).map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?;
    let dir = state_dir(cli)?;
    let message = match call(&dir, &Request::Restore { dump: d.clone() }).map_err(CliError::failed)? {
        Some(Response::Done { message }) => message,
        Some(Response::Error { message }) => return Err(CliError::failed(message)),
        Some(other) => return Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            let _lock = crate::daemon::lock_state_dir(&dir).map_err(CliError::failed)?;
            let store = Store::open(&dir).map_err(CliError::failed)?;
            let keyed = d.keyed()?;
            store.replace_limits_and_names(&keyed, &d.names).map_err(CliError::failed)?;
            eprintln!("quotafs: no daemon running: stored; in force from the next mount");
            format!("restored {} limit entries and {} project names", keyed.len(), d.names.len())
        }
    };
    println!("{message}");
    Ok(())
}

fn set_offline(cli: &Cli, key: LimitKey, change: Option<Limits>) -> Result<Limits, CliError> {
    let dir = state_dir(cli)?;
    let _lock = crate::daemon::lock_state_dir(&dir).map_err(CliError::failed)?;
    let store = Store::open(&dir).map_err(CliError::failed)?;
    let current = store.limits().map_err(CliError::failed)?.get(&key).copied().unwrap_or_default();
    match change {
        Some(c) => {
            let m = current.merged(&c)?;
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
    match l.grace {
        Some(g) => println!("  grace:  {}", duration(g)),
        None => println!("  grace:  {} (built-in default)", duration(DEFAULT_GRACE_SECS)),
    }
}

/// `quota get`: the limits in force and where they come from, the grace period, usage.
fn get(cli: &Cli, key: LimitKey, json: bool) -> Result<(), CliError> {
    let own = own_limits(cli, key)?;
    let LimitKey::Subject(s) = key else {
        let l = own.unwrap_or_default();
        if json {
            let v = serde_json::json!({
                "subject": key.describe(), "source": if own.is_some() { "own" } else { "none" },
                "bytes_soft": l.bytes_soft, "bytes_hard": l.bytes_hard,
                "inodes_soft": l.inodes_soft, "inodes_hard": l.inodes_hard,
                "grace_secs": l.grace_secs(), "grace_default": l.grace.is_none(),
            });
            println!("{}", serde_json::to_string_pretty(&v).map_err(|e| CliError::failed(e.to_string()))?);
        } else {
            show(key, &l);
        }
        return Ok(());
    };
    let default_key = match s {
        Subject::User(_) => LimitKey::DefaultUser,
        Subject::Project(_) => LimitKey::DefaultProject,
    };
    let (source, l) = match own {
        Some(l) => ("own", l),
        None => match own_limits(cli, default_key)? {
            Some(l) => ("default", l),
            None => ("none", Limits::default()),
        },
    };
    let r = report::fetch_one(cli, s)?;
    if json {
        let v = serde_json::json!({
            "kind": s.kind(), "id": s.id(), "name": r.name, "source": source,
            "bytes_used": r.bytes_used, "inodes_used": r.inodes_used,
            "bytes_soft": l.bytes_soft, "bytes_hard": l.bytes_hard,
            "inodes_soft": l.inodes_soft, "inodes_hard": l.inodes_hard,
            "grace_secs": l.grace_secs(), "grace_default": l.grace.is_none(),
            "grace_expires": r.grace_expires, "inodes_grace_expires": r.inodes_grace_expires,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| CliError::failed(e.to_string()))?);
        return Ok(());
    }
    let sz = |v: Option<u64>| v.map_or("-".into(), |b| format!("{} ({b} bytes)", human(b)));
    let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    println!("{} {} ({}):", s.kind(), s.id(), report::shown_name(&r));
    let from = match source {
        "own" => "its own".to_string(),
        "default" => format!("from the {} limits (none of its own)", default_key.describe()),
        _ => "none (no limits of its own and no default)".to_string(),
    };
    println!("  limits: {from}");
    println!("  bytes:  soft {}  hard {}", sz(l.bytes_soft), sz(l.bytes_hard));
    println!("  inodes: soft {}  hard {}", n(l.inodes_soft), n(l.inodes_hard));
    match l.grace {
        Some(g) => println!("  grace:  {}", duration(g)),
        None => println!("  grace:  {} (built-in default)", duration(DEFAULT_GRACE_SECS)),
    }
    println!("  used:   {} ({} bytes), {} inodes", human(r.bytes_used), r.bytes_used, r.inodes_used);
    if let Some(g) = &r.grace_expires {
        println!("  over the soft byte limit; grace ends {g}");
    }
    if let Some(g) = &r.inodes_grace_expires {
        println!("  over the soft inode limit; grace ends {g}");
    }
    Ok(())
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
            report::shown_name(&r),
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
            let opt = |v: &Option<String>, f: fn(&str) -> Result<u64, LimitError>| v.as_deref().map(f).transpose();
            let change = Limits {
                bytes_soft: opt(bytes_soft, parse_size)?,
                bytes_hard: opt(bytes_hard, parse_size)?,
                inodes_soft: opt(inodes_soft, parse_count)?,
                inodes_hard: opt(inodes_hard, parse_count)?,
                grace: opt(grace, parse_duration)?,
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
        QuotaCommand::Get { target, json } => get(cli, key_of(cli, target)?, *json),
        QuotaCommand::Dump { file } => {
            let text = dump::format(&dump_state(cli)?).map_err(|e| CliError::failed(e.to_string()))?;
            match file {
                Some(f) => std::fs::write(f, text).map_err(|e| CliError::failed(format!("{}: {e}", f.display()))),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        QuotaCommand::Restore { file } => restore(cli, file),
    }
}
