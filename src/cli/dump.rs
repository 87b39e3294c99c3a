//! The text form of `quotafs quota dump` / `restore`: every limit, grace period and project
//! name, one line per subject, for an operator to read, edit, keep and restore.
//!
//! Format 1:
//!
//! ```text
//! # comments run from `#` to the end of a line; blank lines are ignored
//! quotafs-limits 1
//! default-user bytes-hard=21474836480 grace=7d
//! default-project inodes-hard=1000000
//! user 1000 bytes-soft=10485760 bytes-hard=20971520 grace=1d   # alice
//! project 42 name=site bytes-hard=107374182400
//! ```
//!
//! The first line that is not a comment names the format. Then one line per subject: its kind
//! (`user`, `project`, `default-user`, `default-project`), its id (users and projects), and
//! `key=value` fields: `bytes-soft`, `bytes-hard` (bytes, or with K/M/G/T), `inodes-soft`,
//! `inodes-hard` (a count, or with k/M), `grace` (30s, 15m, 12h, 7d, 2w; a plain number is
//! seconds) and, for projects, `name`. A field left out is no limit (grace: the built-in 7
//! days). A project line with only a name gives the project no limits of its own. Subjects
//! left out of a dump have no limits of their own after a restore.

use std::fmt::Write as _;

use crate::admin::names::{self, check_project_name};
use crate::admin::restore::LimitsDump;
use crate::quota::Subject;
use crate::quota::limits::{LimitError, LimitKey, Limits, parse_count, parse_duration, parse_size};

/// A dump `parse` refuses: bad input. Display names the input, the first bad line and why.
#[derive(Debug, PartialEq, Eq)]
pub struct DumpError(String);

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DumpError {}

pub const MAGIC: &str = "quotafs-limits";
pub const FORMAT: u32 = 1;

/// A duration as the largest unit that divides it exactly (`7d`, `90m`, `3601s`).
fn exact_duration(secs: u64) -> String {
    for (u, n) in [(604_800, "w"), (86_400, "d"), (3600, "h"), (60, "m")] {
        if secs % u == 0 {
            return format!("{}{n}", secs / u);
        }
    }
    format!("{secs}s")
}

/// The dump as text (subjects sorted: defaults, users, projects; each by id).
pub fn format(d: &LimitsDump) -> Result<String, LimitError> {
    let limits = d.keyed()?;
    let mut keys: Vec<LimitKey> = limits.keys().copied().collect();
    for id in d.names.keys() {
        let k = LimitKey::Subject(Subject::Project(*id));
        if !limits.contains_key(&k) {
            keys.push(k);
        }
    }
    let rank = |k: &LimitKey| match k {
        LimitKey::DefaultUser => (0, 0),
        LimitKey::DefaultProject => (1, 0),
        LimitKey::Subject(Subject::User(u)) => (2, *u),
        LimitKey::Subject(Subject::Project(p)) => (3, *p),
    };
    keys.sort_by_key(rank);
    let mut out = String::new();
    out.push_str("# quotafs limits dump: restore with `quotafs quota restore FILE` (see quotafs(8)).\n");
    out.push_str("# One line per subject; a field left out is no limit. Sizes in bytes, grace as 7d, 12h...\n");
    let _ = writeln!(out, "{MAGIC} {FORMAT}");
    for k in keys {
        let mut line = match k {
            LimitKey::DefaultUser => "default-user".to_string(),
            LimitKey::DefaultProject => "default-project".to_string(),
            LimitKey::Subject(s) => format!("{} {}", s.kind(), s.id()),
        };
        let mut comment = None;
        match k {
            LimitKey::Subject(Subject::Project(p)) => {
                if let Some(n) = d.names.get(&p) {
                    let _ = write!(line, " name={n}");
                }
            }
            LimitKey::Subject(Subject::User(u)) => comment = names::user_name(u),
            _ => {}
        }
        if let Some(l) = limits.get(&k) {
            for (key, v) in [
                ("bytes-soft", l.bytes_soft),
                ("bytes-hard", l.bytes_hard),
                ("inodes-soft", l.inodes_soft),
                ("inodes-hard", l.inodes_hard),
            ] {
                if let Some(v) = v {
                    let _ = write!(line, " {key}={v}");
                }
            }
            if let Some(g) = l.grace {
                let _ = write!(line, " grace={}", exact_duration(g));
            }
        }
        if let Some(c) = comment {
            let _ = write!(line, "   # {c}");
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Parses a dump; the error names the first bad line (`what` names the input, e.g. the file).
pub fn parse(what: &str, text: &str) -> Result<LimitsDump, DumpError> {
    let mut d = LimitsDump::default();
    let mut seen_format = false;
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |why: String| DumpError(format!("{what} line {}: `{}`: {why}", i + 1, raw.trim()));
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        if !seen_format {
            if kind != MAGIC {
                return Err(bad(format!(
                    "not a quotafs limits dump: its first line must be `{MAGIC} {FORMAT}` (make one with `quotafs quota dump`)"
                )));
            }
            match words.next() {
                Some(v) if v == FORMAT.to_string() => {}
                v => {
                    return Err(bad(format!(
                        "format {} is not one this quotafs reads (format {FORMAT})",
                        v.unwrap_or("(none)")
                    )));
                }
            }
            seen_format = true;
            continue;
        }
        let id = |w: Option<&str>| -> Result<u32, DumpError> {
            let w = w.ok_or_else(|| bad(format!("a {kind} line needs an id after `{kind}`")))?;
            w.parse::<u32>().map_err(|_| bad(format!("{w:?} is not a numeric {kind} id (0 to 4294967295)")))
        };
        let key = match kind {
            "default-user" => LimitKey::DefaultUser,
            "default-project" => LimitKey::DefaultProject,
            "user" => LimitKey::Subject(Subject::User(id(words.next())?)),
            "project" => LimitKey::Subject(Subject::Project(id(words.next())?)),
            other => {
                return Err(bad(format!(
                    "unknown subject kind {other:?}: use user, project, default-user or default-project"
                )));
            }
        };
        if !seen.insert(key) {
            return Err(bad(format!("{} appears twice; keep one line per subject", key.describe())));
        }
        let mut l = Limits::default();
        let mut fields = 0;
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| bad(format!("{w:?} is not a key=value field")))?;
            let slot = match k {
                "bytes-soft" => &mut l.bytes_soft,
                "bytes-hard" => &mut l.bytes_hard,
                "inodes-soft" => &mut l.inodes_soft,
                "inodes-hard" => &mut l.inodes_hard,
                "grace" => &mut l.grace,
                "name" => {
                    let LimitKey::Subject(Subject::Project(p)) = key else {
                        return Err(bad("only projects have names".into()));
                    };
                    check_project_name(v).map_err(|e| bad(e.to_string()))?;
                    if let Some((other, _)) = d.names.iter().find(|(_, n)| n.as_str() == v) {
                        return Err(bad(format!("the name {v:?} is already given to project {other}")));
                    }
                    d.names.insert(p, v.to_string());
                    continue;
                }
                other => {
                    return Err(bad(format!(
                        "unknown field {other:?}: use bytes-soft, bytes-hard, inodes-soft, inodes-hard, grace or name"
                    )));
                }
            };
            if slot.is_some() {
                return Err(bad(format!("{k} is given twice")));
            }
            let parsed = match k {
                "bytes-soft" | "bytes-hard" => parse_size(v),
                "inodes-soft" | "inodes-hard" => parse_count(v),
                _ => parse_duration(v),
            };
            *slot = Some(parsed.map_err(|e| bad(e.to_string()))?);
            fields += 1;
        }
        if fields > 0 {
            let l = Limits::default().merged(&l).map_err(|e| bad(e.to_string()))?;
            d.limits.insert(key.key(), l);
        } else if !matches!(key, LimitKey::Subject(Subject::Project(_))) || !d.names.contains_key(&key_id(key)) {
            return Err(bad("no limit given: add a field (e.g. bytes-hard=10G) or remove the line".into()));
        }
    }
    if !seen_format {
        return Err(DumpError(format!(
            "{what}: empty: not a quotafs limits dump (make one with `quotafs quota dump`)"
        )));
    }
    Ok(d)
}

fn key_id(k: LimitKey) -> u32 {
    match k {
        LimitKey::Subject(s) => s.id(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut d = LimitsDump::default();
        let l = Limits {
            bytes_soft: Some(10 << 20),
            bytes_hard: Some(20 << 20),
            grace: Some(90 * 60),
            ..Default::default()
        };
        d.limits.insert(LimitKey::Subject(Subject::User(4_000_123)).key(), l);
        d.limits.insert(LimitKey::DefaultUser.key(), Limits { inodes_hard: Some(7), ..Default::default() });
        d.limits
            .insert(LimitKey::Subject(Subject::Project(42)).key(), Limits { grace: Some(61), ..Default::default() });
        d.names.insert(42, "site".into());
        d.names.insert(7, "named-only".into());
        let text = format(&d).unwrap();
        assert!(text.contains("grace=90m") && text.contains("grace=61s"), "{text}");
        assert_eq!(parse("dump", &text).unwrap(), d);

        let err = |body: &str| parse("f", &format!("{MAGIC} 1\n{body}\n")).unwrap_err().to_string();
        assert!(err("user 5 bytes-hard=1G\nuser 5 bytes-hard=2G").starts_with("f line 3:"));
        assert!(err("user x bytes-hard=1G").contains("not a numeric user id"));
        assert!(err("user 5 bytes-soft=2G bytes-hard=1G").contains("above the hard"));
        assert!(err("user 5").contains("no limit given"));
        assert!(err("user 5 name=a").contains("only projects"));
        assert!(err("project 1 name=a\nproject 2 name=a").contains("already given to project 1"));
        assert!(err("group 5 bytes-hard=1G").contains("unknown subject kind"));
        assert!(parse("f", "quotafs-limits 2\n").unwrap_err().to_string().contains("format 2"));
        assert!(parse("f", "user 5 bytes-hard=1G\n").unwrap_err().to_string().contains("not a quotafs limits dump"));
    }
}
