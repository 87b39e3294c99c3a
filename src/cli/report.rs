//! `quotafs report`: usage per user and per project, and the lookups other commands share
//! (rows from the daemon or the store, user and project names resolved to ids).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{Cli, CliError, ReportArgs, duration, human, state_dir};
use crate::admin::names::{self, Names};
use crate::admin::server::{row, rows};
use crate::admin::{Request, Response, Row, call};
use crate::ledger::{recovery, store::Store, wal};
use crate::quota::enforce::GraceMap;
use crate::quota::limits::{LimitKey, Limits};
use crate::quota::{Subject, Usage};

/// What the store holds, read with no daemon running.
struct Offline {
    usage: BTreeMap<Subject, Usage>,
    names: Names,
    limits: HashMap<LimitKey, Limits>,
    grace: GraceMap,
}

/// Reads the last checkpoint of `dir` (no daemon runs), telling the operator so on stderr.
fn offline(dir: &Path) -> Result<Offline, CliError> {
    if !dir.join(crate::ledger::store::FILE).exists() {
        return Err(CliError::usage(format!(
            "no ledger in {} (never mounted with this state dir?); pass --state-dir or --config",
            dir.display()
        )));
    }
    let store = Store::open(dir).map_err(CliError::failed)?;
    let snap = store.load().map_err(CliError::failed)?.unwrap_or_default();
    let pending: usize = recovery::list_logs(dir)
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
    Ok(Offline {
        usage: snap.usage,
        names: Names::load(store.project_names().map_err(CliError::failed)?),
        limits: store.limits().map_err(CliError::failed)?,
        grace: store.grace().unwrap_or_default(),
    })
}

/// Rows from the running daemon, or from the last checkpoint when none runs.
pub fn fetch(cli: &Cli) -> Result<Vec<Row>, CliError> {
    let dir = state_dir(cli)?;
    match call(&dir, &Request::Report).map_err(CliError::failed)? {
        Some(Response::Report { rows }) => Ok(rows),
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        Some(other) => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            let o = offline(&dir)?;
            Ok(rows(&o.usage, &o.names, &o.limits, &o.grace))
        }
    }
}

/// Subject `s`'s row (usage 0 and the default limits when it has neither of its own).
pub fn fetch_one(cli: &Cli, s: Subject) -> Result<Row, CliError> {
    let dir = state_dir(cli)?;
    let req = Request::Quota { kind: s.kind().to_string(), id: s.id() };
    match call(&dir, &req).map_err(CliError::failed)? {
        Some(Response::Report { mut rows }) if rows.len() == 1 => Ok(rows.remove(0)),
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        Some(other) => Err(CliError::failed(format!("unexpected reply: {other:?}"))),
        None => {
            let o = offline(&dir)?;
            Ok(row(s, o.usage.get(&s).copied().unwrap_or_default(), &o.names, &o.limits, &o.grace))
        }
    }
}

/// A uid, or a user name looked up through NSS (files, LDAP, SSSD: as nsswitch.conf says).
pub fn resolve_user(spec: &str) -> Result<u32, CliError> {
    if let Ok(uid) = spec.parse::<u32>() {
        return Ok(uid);
    }
    names::uid_of(spec).ok_or_else(|| {
        CliError::usage(format!(
            "no user named {spec:?} (looked up through NSS: `getent passwd {spec}` finds nothing); give a uid or an existing user name"
        ))
    })
}

/// A project id, or the name of exactly one project.
pub fn resolve_project(cli: &Cli, spec: &str) -> Result<u32, CliError> {
    if let Ok(id) = spec.parse::<u32>() {
        return Ok(id);
    }
    let ids: Vec<u32> =
        fetch(cli)?.iter().filter(|r| r.kind == "project" && r.name.as_deref() == Some(spec)).map(|r| r.id).collect();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::usage(format!(
            "no project named {spec:?}: give an id, or name one with `quotafs project assign PATH --id N --name {spec}` (`quotafs project list` shows the names)"
        ))),
        many => Err(CliError::usage(format!(
            "the name {spec:?} is given to projects {many:?}: give the id instead, and rename all but one with `quotafs project assign PATH --id N --name NEW`"
        ))),
    }
}

/// How a listing shows a subject's name: the name, or `#ID` when it has none.
pub fn shown_name(r: &Row) -> String {
    names::display(r.name.as_deref(), r.id)
}

/// The report's flags for one of bytes or inodes: `!` over the hard limit, `+` over the soft
/// limit only, `-` within both.
pub fn flag(used: u64, soft: Option<u64>, hard: Option<u64>) -> char {
    if hard.is_some_and(|h| used > h) {
        '!'
    } else if soft.is_some_and(|s| used > s) {
        '+'
    } else {
        '-'
    }
}

/// The rows the arguments select: all, all of a kind, or single subjects.
fn select(cli: &Cli, args: &ReportArgs) -> Result<Vec<Row>, CliError> {
    let all = || fetch(cli);
    let mut out = Vec::new();
    match (&args.user, &args.project) {
        (None, None) => return all(),
        (u, p) => {
            if let Some(u) = u {
                if u == "all" {
                    out.extend(all()?.into_iter().filter(|r| r.kind == "user"));
                } else {
                    out.push(fetch_one(cli, Subject::User(resolve_user(u)?))?);
                }
            }
            if let Some(p) = p {
                if p == "all" {
                    out.extend(all()?.into_iter().filter(|r| r.kind == "project"));
                } else {
                    out.push(fetch_one(cli, Subject::Project(resolve_project(cli, p)?))?);
                }
            }
        }
    }
    Ok(out)
}

pub const HEADER: [&str; 12] =
    ["KIND", "ID", "NAME", "FLAGS", "USED", "SOFT", "HARD", "GRACE", "INODES", "ISOFT", "IHARD", "IGRACE"];

pub fn run(cli: &Cli, args: &ReportArgs) -> Result<(), CliError> {
    let rows = select(cli, args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| CliError::failed(e.to_string()))?);
        return Ok(());
    }
    let exact = args.parsable || args.bytes;
    let size = |b: Option<u64>| match b {
        None => "-".to_string(),
        Some(b) if exact => b.to_string(),
        Some(b) => human(b),
    };
    let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    // Grace left: time remaining, or "none" once it has run out (as repquota); with -p seconds.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let left = |ends: Option<u64>| match ends {
        None => "-".to_string(),
        Some(end) if args.parsable => end.saturating_sub(now).to_string(),
        Some(end) if end <= now => "none".to_string(),
        Some(end) => duration(end - now),
    };
    let mut table: Vec<[String; 12]> = Vec::new();
    for r in &rows {
        table.push([
            r.kind.clone(),
            r.id.to_string(),
            shown_name(r),
            format!(
                "{}{}",
                flag(r.bytes_used, r.bytes_soft, r.bytes_hard),
                flag(r.inodes_used, r.inodes_soft, r.inodes_hard)
            ),
            size(Some(r.bytes_used)),
            size(r.bytes_soft),
            size(r.bytes_hard),
            left(r.grace_expires_unix),
            r.inodes_used.to_string(),
            count(r.inodes_soft),
            count(r.inodes_hard),
            left(r.inodes_grace_expires_unix),
        ]);
    }
    print_table(&HEADER, &table, args.no_header);
    Ok(())
}

/// Prints `rows` under `header`: aligned columns separated by spaces (text and the KIND and
/// NAME columns left-aligned, numbers right-aligned), or with `tabs` one tab between fields
/// and no header. Every field is one word, so either form splits on whitespace.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]], tabs: bool) {
    if tabs {
        for r in rows {
            println!("{}", r.join("\t"));
        }
        return;
    }
    let mut width = header.map(str::len);
    for r in rows {
        for (w, f) in width.iter_mut().zip(r) {
            *w = (*w).max(f.chars().count());
        }
    }
    let left = |i: usize| matches!(header[i], "KIND" | "NAME" | "FLAGS");
    let line = |fields: Vec<&str>| {
        let cells: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| if left(i) { format!("{f:<w$}", w = width[i]) } else { format!("{f:>w$}", w = width[i]) })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
