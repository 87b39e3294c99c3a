//! Enforcement: which limits bind a subject now, reservations against them, grace timers, and
//! the record of refusals.
//!
//! The cap an operation is checked against is the hard limit, or the soft limit once the
//! subject has been over it for longer than its grace period. The grace timer of a subject and
//! resource starts when a settled change takes usage above the soft limit and stops when usage
//! is back at or under it; timers are saved with each checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use super::limits::{LimitKey, Limits};
use super::{Refusal, Subject, Usage, UsageTable};
use crate::backing::Errno;

/// Grace timers: (subject, inodes?) → Unix time the soft limit was first exceeded.
pub type GraceMap = BTreeMap<(Subject, bool), u64>;

/// What just happened to a subject's quota, for notifications (`notify_command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A settled change took usage above the soft limit: its grace period started.
    SoftExceeded,
    /// A settled change found the grace period over: the soft limit now acts as hard.
    GraceExpired,
    /// An allocation was refused with EDQUOT.
    Refused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SoftExceeded => "soft_exceeded",
            EventKind::GraceExpired => "grace_expired",
            EventKind::Refused => "refused",
        }
    }
}

/// One quota event: the subject, the resource, its usage and the limits in force.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub subject: Subject,
    /// The resource concerned: inodes (true) or bytes.
    pub inodes: bool,
    pub usage: u64,
    pub limits: Limits,
    /// Unix time the grace period ends (ended), if its timer runs.
    pub grace_expires: Option<u64>,
    /// The caller refused (Refused only).
    pub caller_uid: Option<u32>,
}

/// Called on the request path with each event: must only queue it (see `admin::notify`).
pub type EventHook = Box<dyn Fn(Event) + Send + Sync>;

pub struct Enforcer {
    limits: RwLock<HashMap<LimitKey, Limits>>,
    grace: Mutex<GraceMap>,
    exempt: HashSet<u32>,
    refusals: DashMap<Subject, u64>,
    last_log: Mutex<HashMap<(Subject, &'static str), Instant>>,
    hook: std::sync::OnceLock<EventHook>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A reservation held by an operation in flight; given back when dropped (after the settle).
#[must_use]
pub struct Reservation<'a> {
    table: &'a UsageTable,
    subjects: Vec<Subject>,
    pub bytes: u64,
    inodes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.subjects.is_empty() {
            self.table.release(&self.subjects, self.bytes, self.inodes);
        }
    }
}

impl Enforcer {
    pub fn new(limits: HashMap<LimitKey, Limits>, grace: GraceMap, exempt: HashSet<u32>) -> Enforcer {
        Enforcer {
            limits: RwLock::new(limits),
            grace: Mutex::new(grace),
            exempt,
            refusals: DashMap::new(),
            last_log: Mutex::new(HashMap::new()),
            hook: std::sync::OnceLock::new(),
        }
    }

    /// Installs the event hook (once; later calls are ignored).
    pub fn set_hook(&self, hook: EventHook) {
        let _ = self.hook.set(hook);
    }

    fn emit(&self, kind: EventKind, s: Subject, inodes: bool, usage: u64, caller_uid: Option<u32>) {
        if let Some(hook) = self.hook.get() {
            let limits = self.effective(s).unwrap_or_default();
            let grace_expires = self.grace_expires(s, inodes);
            hook(Event { kind, subject: s, inodes, usage, limits, grace_expires, caller_uid });
        }
    }

    /// A subject's own limits, else the default for its kind.
    pub fn effective(&self, s: Subject) -> Option<Limits> {
        let l = self.limits.read();
        l.get(&LimitKey::Subject(s)).copied().or_else(|| {
            l.get(&match s {
                Subject::User(_) => LimitKey::DefaultUser,
                Subject::Project(_) => LimitKey::DefaultProject,
            })
            .copied()
        })
    }

    pub fn get(&self, key: LimitKey) -> Option<Limits> {
        self.limits.read().get(&key).copied()
    }

    pub fn all_limits(&self) -> HashMap<LimitKey, Limits> {
        self.limits.read().clone()
    }

    /// Replaces (Some) or removes (None) the limits of `key` in force.
    pub fn set(&self, key: LimitKey, limits: Option<Limits>) {
        let mut l = self.limits.write();
        match limits {
            Some(v) => l.insert(key, v),
            None => l.remove(&key),
        };
    }

    pub fn grace_snapshot(&self) -> GraceMap {
        self.grace.lock().clone()
    }

    /// When the grace period of (subject, resource) ends, if its timer runs.
    pub fn grace_expires(&self, s: Subject, inodes: bool) -> Option<u64> {
        let since = *self.grace.lock().get(&(s, inodes))?;
        Some(since + self.effective(s).map_or(super::limits::DEFAULT_GRACE_SECS, |l| l.grace_secs()))
    }

    pub fn refusals(&self) -> BTreeMap<Subject, u64> {
        self.refusals.iter().map(|e| (*e.key(), *e.value())).collect()
    }

    /// Root and the configured exempt uids are never refused (their usage is still counted).
    pub fn is_exempt(&self, caller_uid: u32) -> bool {
        caller_uid == 0 || self.exempt.contains(&caller_uid)
    }

    fn caps(&self, s: Subject, _u: Usage) -> (Option<u64>, Option<u64>) {
        let Some(l) = self.effective(s) else { return (None, None) };
        let t = now();
        let grace = self.grace.lock();
        let cap = |soft: Option<u64>, hard: Option<u64>, inodes: bool| {
            let expired = soft.is_some() && grace.get(&(s, inodes)).is_some_and(|since| since + l.grace_secs() <= t);
            let soft_cap = if expired { soft } else { None };
            match (soft_cap, hard) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        (cap(l.bytes_soft, l.bytes_hard, false), cap(l.inodes_soft, l.inodes_hard, true))
    }

    fn log_limited(&self, s: Subject, what: &'static str, f: impl FnOnce()) {
        let mut last = self.last_log.lock();
        let due = last.get(&(s, what)).is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            last.insert((s, what), Instant::now());
            f();
        }
    }

    /// Reserves for an allocation of up to `want_bytes` bytes and `inodes` inodes charged to
    /// `subjects`, made by `caller_uid`. EDQUOT if it does not fit (or, with `partial`, if
    /// nothing fits). Exempt callers get an empty reservation.
    pub fn reserve<'a>(
        &self,
        table: &'a UsageTable,
        caller_uid: u32,
        subjects: &[Subject],
        want_bytes: u64,
        inodes: u64,
        partial: bool,
    ) -> Result<Reservation<'a>, Errno> {
        self.reserve_with(table, caller_uid, subjects, want_bytes, inodes, partial, true)
    }

    /// Reserves `want_bytes` bytes for `subjects` against their byte limits only (an
    /// allocation that adds no inode of theirs, such as a directory block: being over an
    /// inode limit does not refuse it). EDQUOT if it does not fit; exempt callers get an
    /// empty reservation.
    pub fn reserve_bytes<'a>(
        &self,
        table: &'a UsageTable,
        caller_uid: u32,
        subjects: &[Subject],
        want_bytes: u64,
    ) -> Result<Reservation<'a>, Errno> {
        self.reserve_with(table, caller_uid, subjects, want_bytes, 0, false, false)
    }

    #[expect(clippy::too_many_arguments, reason = "the two public forms above name the cases")]
    fn reserve_with<'a>(
        &self,
        table: &'a UsageTable,
        caller_uid: u32,
        subjects: &[Subject],
        want_bytes: u64,
        inodes: u64,
        partial: bool,
        inode_caps: bool,
    ) -> Result<Reservation<'a>, Errno> {
        let bound: Vec<Subject> = if self.is_exempt(caller_uid) {
            Vec::new()
        } else {
            subjects.iter().copied().filter(|s| self.effective(*s).is_some_and(|l| !l.is_empty())).collect()
        };
        if bound.is_empty() {
            return Ok(Reservation { table, subjects: Vec::new(), bytes: want_bytes, inodes });
        }
        let caps = |s, u| {
            let (bytes, inodes) = self.caps(s, u);
            (bytes, inodes.filter(|_| inode_caps))
        };
        match table.reserve(&bound, want_bytes, inodes, partial, caps) {
            Ok(bytes) => Ok(Reservation { table, subjects: bound, bytes, inodes }),
            Err(r) => {
                *self.refusals.entry(r.subject).or_insert(0) += 1;
                self.log_refusal(r, caller_uid);
                self.emit(EventKind::Refused, r.subject, r.inodes, r.usage, Some(caller_uid));
                Err(Errno(libc::EDQUOT))
            }
        }
    }

    fn log_refusal(&self, r: Refusal, caller_uid: u32) {
        self.log_limited(r.subject, "refused", || {
            tracing::warn!(
                subject = ?r.subject,
                resource = if r.inodes { "inodes" } else { "bytes" },
                usage = r.usage,
                limit = r.limit,
                caller_uid,
                "allocation refused: over quota (EDQUOT)"
            );
        });
    }

    /// After a settled change: starts or stops grace timers of `subjects`.
    pub fn settled(&self, table: &UsageTable, subjects: &[Subject]) {
        for &s in subjects {
            let Some(l) = self.effective(s) else { continue };
            let u = table.get(s);
            for (inodes, soft, used) in [(false, l.bytes_soft, u.bytes), (true, l.inodes_soft, u.inodes)] {
                let Some(soft) = soft else {
                    self.grace.lock().remove(&(s, inodes));
                    continue;
                };
                let mut g = self.grace.lock();
                if used > soft {
                    let started = match g.entry((s, inodes)) {
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(now());
                            true
                        }
                        std::collections::btree_map::Entry::Occupied(_) => false,
                    };
                    let since = g.get(&(s, inodes)).copied().unwrap_or_default();
                    drop(g);
                    if started {
                        self.log_limited(s, "soft", || {
                            tracing::warn!(subject = ?s, resource = if inodes { "inodes" } else { "bytes" }, usage = used,
                                soft_limit = soft, grace_secs = l.grace_secs(), "soft limit exceeded; grace period started");
                        });
                        self.emit(EventKind::SoftExceeded, s, inodes, used, None);
                    } else if since + l.grace_secs() <= now() {
                        self.emit(EventKind::GraceExpired, s, inodes, used, None);
                        self.log_limited(s, "expired", || {
                            tracing::warn!(subject = ?s, resource = if inodes { "inodes" } else { "bytes" }, usage = used,
                                soft_limit = soft, "grace period expired; the soft limit now acts as hard");
                        });
                    }
                } else {
                    g.remove(&(s, inodes));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BackingIndex;
    use crate::quota::Charge;

    #[test]
    fn byte_reservations_ignore_inode_limits_and_exempt_callers_pass() {
        let limits = Limits { bytes_hard: Some(10_000), inodes_hard: Some(1), ..Limits::default() };
        let e = Enforcer::new(
            [(LimitKey::Subject(Subject::User(7)), limits)].into_iter().collect(),
            GraceMap::new(),
            [9].into_iter().collect(),
        );
        let t = UsageTable::default();
        for _ in 0..2 {
            t.apply(BackingIndex::MAIN, None, Some(Charge { uid: 7, project: 0, bytes: 4096 }));
        }
        let owner = [Subject::User(7)];
        // Over its inode limit: a directory block of its own still fits its byte limit.
        assert!(e.reserve(&t, 8, &owner, 1024, 0, false).is_err(), "over the inode limit");
        let held = e.reserve_bytes(&t, 8, &owner, 1024).expect("bytes only");
        // 8192 used + 1024 held: one more block does not fit; the caller is refused.
        assert_eq!(e.reserve_bytes(&t, 8, &owner, 1024).err(), Some(Errno(libc::EDQUOT)));
        assert!(e.reserve_bytes(&t, 0, &owner, 1024).is_ok(), "root");
        assert!(e.reserve_bytes(&t, 9, &owner, 1024).is_ok(), "exempt uid");
        drop(held);
        assert!(e.reserve_bytes(&t, 8, &owner, 1024).is_ok(), "released");
    }
}
