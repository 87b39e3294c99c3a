//! Limits: bytes and inodes, soft and hard, per user and per project, with a grace period, and
//! defaults for subjects without limits of their own. Parsing of the CLI's sizes and durations.
//!
//! Semantics (as the kernel quota system): usage may not pass a hard limit; it may pass a soft
//! limit for the grace period (default 7 days), after which the soft limit acts as a hard one
//! until usage drops back under it. A limit may be set below current usage: the subject can
//! then only free space.

use serde::{Deserialize, Serialize};

use super::Subject;

/// A limit quotafs refuses: bad input from an operator (a flag, a dump, a control request).
/// Display is the whole message, naming what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// A size, count or duration that does not parse or is out of range.
    Value(String),
    /// A soft limit above the hard one (`what`: "byte" or "inode").
    SoftAboveHard { what: &'static str, soft: u64, hard: u64 },
    /// A store key (`LimitKey::key`) that names no subject and no default.
    BadKey(u64),
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitError::Value(m) => f.write_str(m),
            LimitError::SoftAboveHard { what, soft, hard } => {
                write!(f, "the soft {what} limit ({soft}) is above the hard one ({hard})")
            }
            LimitError::BadKey(k) => write!(f, "bad limit key {k}"),
        }
    }
}

impl std::error::Error for LimitError {}

/// Default grace period: 7 days.
pub const DEFAULT_GRACE_SECS: u64 = 7 * 24 * 3600;

/// Which limits a key sets: one subject's, or the default for a kind of subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKey {
    Subject(Subject),
    DefaultUser,
    DefaultProject,
}

impl LimitKey {
    /// The store's key: `Subject::key()`, or kind 2 / 3 for the defaults.
    pub fn key(self) -> u64 {
        match self {
            LimitKey::Subject(s) => s.key(),
            LimitKey::DefaultUser => 2 << 32,
            LimitKey::DefaultProject => 3 << 32,
        }
    }

    pub fn from_key(k: u64) -> Option<LimitKey> {
        match k >> 32 {
            2 => Some(LimitKey::DefaultUser),
            3 => Some(LimitKey::DefaultProject),
            _ => Subject::from_key(k).map(LimitKey::Subject),
        }
    }

    pub fn describe(self) -> String {
        match self {
            LimitKey::Subject(s) => format!("{} {}", s.kind(), s.id()),
            LimitKey::DefaultUser => "default user".into(),
            LimitKey::DefaultProject => "default project".into(),
        }
    }
}

/// One subject's limits. `None`: no such limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub bytes_soft: Option<u64>,
    pub bytes_hard: Option<u64>,
    pub inodes_soft: Option<u64>,
    pub inodes_hard: Option<u64>,
    /// Grace period in seconds (None: the default, 7 days).
    pub grace: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.bytes_soft.is_none()
            && self.bytes_hard.is_none()
            && self.inodes_soft.is_none()
            && self.inodes_hard.is_none()
    }

    pub fn grace_secs(&self) -> u64 {
        self.grace.unwrap_or(DEFAULT_GRACE_SECS)
    }

    /// Store encoding: six u64, `u64::MAX` for "none".
    pub fn encode(&self) -> (u64, u64, u64, u64, u64, u64) {
        let e = |v: Option<u64>| v.unwrap_or(u64::MAX);
        (e(self.bytes_soft), e(self.bytes_hard), e(self.inodes_soft), e(self.inodes_hard), e(self.grace), 0)
    }

    pub fn decode(v: (u64, u64, u64, u64, u64, u64)) -> Limits {
        let d = |x: u64| (x != u64::MAX).then_some(x);
        Limits { bytes_soft: d(v.0), bytes_hard: d(v.1), inodes_soft: d(v.2), inodes_hard: d(v.3), grace: d(v.4) }
    }

    /// `self` with the fields `change` sets replaced; checks soft ≤ hard.
    pub fn merged(&self, change: &Limits) -> Result<Limits, LimitError> {
        let m = Limits {
            bytes_soft: change.bytes_soft.or(self.bytes_soft),
            bytes_hard: change.bytes_hard.or(self.bytes_hard),
            inodes_soft: change.inodes_soft.or(self.inodes_soft),
            inodes_hard: change.inodes_hard.or(self.inodes_hard),
            grace: change.grace.or(self.grace),
        };
        if let (Some(s), Some(h)) = (m.bytes_soft, m.bytes_hard)
            && s > h
        {
            return Err(LimitError::SoftAboveHard { what: "byte", soft: s, hard: h });
        }
        if let (Some(s), Some(h)) = (m.inodes_soft, m.inodes_hard)
            && s > h
        {
            return Err(LimitError::SoftAboveHard { what: "inode", soft: s, hard: h });
        }
        Ok(m)
    }
}

/// A size: plain bytes, or a number with K, M, G, T (powers of 1024), optionally followed by
/// "B" or "iB". Zero, negative and overflowing sizes are errors.
pub fn parse_size(s: &str) -> Result<u64, LimitError> {
    let t = s.trim();
    let bad = || {
        LimitError::Value(format!(
            "{s:?} is not a size: use bytes or a number with K, M, G or T (powers of 1024), e.g. 20G"
        ))
    };
    if t.starts_with('-') {
        return Err(LimitError::Value(format!("{s:?}: a size cannot be negative")));
    }
    let upper = t.to_ascii_uppercase();
    let body = upper.strip_suffix("IB").or_else(|| upper.strip_suffix('B')).unwrap_or(&upper);
    let (num, shift) = match body.chars().last() {
        Some('K') => (&body[..body.len() - 1], 10),
        Some('M') => (&body[..body.len() - 1], 20),
        Some('G') => (&body[..body.len() - 1], 30),
        Some('T') => (&body[..body.len() - 1], 40),
        Some(c) if c.is_ascii_digit() => (body, 0),
        _ => return Err(bad()),
    };
    let v = if let Some((int, frac)) = num.split_once('.') {
        let int: u64 = int.parse().map_err(|_| bad())?;
        let digits = frac.len() as u32;
        let frac: u64 = frac.parse().map_err(|_| bad())?;
        let scale = 10u64.checked_pow(digits).ok_or_else(bad)?;
        let whole = int.checked_mul(1 << shift).ok_or_else(|| LimitError::Value(format!("{s:?} is too large")))?;
        whole + (u128::from(frac) * (1u128 << shift) / u128::from(scale)) as u64
    } else {
        let n: u64 = num.parse().map_err(|_| {
            if num.chars().all(|c| c.is_ascii_digit()) {
                LimitError::Value(format!("{s:?} is too large"))
            } else {
                bad()
            }
        })?;
        n.checked_mul(1 << shift).ok_or_else(|| LimitError::Value(format!("{s:?} is too large")))?
    };
    if v == 0 {
        return Err(LimitError::Value(format!(
            "{s:?}: a limit of zero is not allowed; `quotafs quota clear` removes a limit"
        )));
    }
    if v == u64::MAX {
        return Err(LimitError::Value(format!("{s:?} is too large")));
    }
    Ok(v)
}

/// A count of inodes (plain number, or with K/M for thousands/millions).
pub fn parse_count(s: &str) -> Result<u64, LimitError> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        _ => (t, 1),
    };
    if t.starts_with('-') {
        return Err(LimitError::Value(format!("{s:?}: a count cannot be negative")));
    }
    let n: u64 = num.parse().map_err(|_| LimitError::Value(format!("{s:?} is not a number of inodes")))?;
    let v = n
        .checked_mul(mul)
        .filter(|v| *v != u64::MAX)
        .ok_or_else(|| LimitError::Value(format!("{s:?} is too large")))?;
    if v == 0 {
        return Err(LimitError::Value(format!(
            "{s:?}: a limit of zero is not allowed; `quotafs quota clear` removes a limit"
        )));
    }
    Ok(v)
}

/// A duration: a number with s, m, h, d or w (e.g. 7d, 12h, 30s); a plain number is seconds.
pub fn parse_duration(s: &str) -> Result<u64, LimitError> {
    let t = s.trim();
    let bad = || LimitError::Value(format!("{s:?} is not a duration: use e.g. 30s, 15m, 12h, 7d or 2w"));
    let (num, mul) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86_400),
        Some('w') => (&t[..t.len() - 1], 604_800),
        Some(c) if c.is_ascii_digit() => (t, 1),
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let v = n.checked_mul(mul).ok_or_else(|| LimitError::Value(format!("{s:?} is too long")))?;
    if v == 0 || v > 10 * 365 * 86_400 {
        return Err(LimitError::Value(format!("{s:?}: a grace period is between 1 second and 10 years")));
    }
    Ok(v)
}

/// RFC 3339 (UTC) of a Unix time, without a date crate.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("20M"), Ok(20 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-5M").is_err());
        assert!(parse_size("99999999999T").unwrap_err().to_string().contains("too large"));
        assert!(parse_size("18446744073709551616").unwrap_err().to_string().contains("too large"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn counts_and_durations() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("2k"), Ok(2000));
        assert!(parse_count("0").is_err());
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn merge_checks_soft_below_hard() {
        let base = Limits { bytes_hard: Some(100), ..Limits::default() };
        assert_eq!(
            base.merged(&Limits { bytes_soft: Some(200), ..Limits::default() }),
            Err(LimitError::SoftAboveHard { what: "byte", soft: 200, hard: 100 })
        );
        let m = base.merged(&Limits { bytes_soft: Some(50), ..Limits::default() }).unwrap();
        assert_eq!((m.bytes_soft, m.bytes_hard), (Some(50), Some(100)));
        assert_eq!(Limits::decode(m.encode()), m);
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(981_173_106), "2001-02-03T04:05:06Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn keys_round_trip() {
        for k in [LimitKey::DefaultUser, LimitKey::DefaultProject, LimitKey::Subject(Subject::Project(9))] {
            assert_eq!(LimitKey::from_key(k.key()), Some(k));
        }
    }
}
