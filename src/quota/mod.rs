//! Subjects (users and projects), usage, and what one inode is charged.

pub mod enforce;
pub mod limits;

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::ids::BackingIndex;

/// Who is charged: the owner uid of an inode, or the project (directory tree) it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    User(u32),
    Project(u32),
}

impl Subject {
    /// Stable 64-bit key (the store's key): kind in the high 32 bits, id in the low.
    pub fn key(self) -> u64 {
        match self {
            Subject::User(id) => u64::from(id),
            Subject::Project(id) => (1 << 32) | u64::from(id),
        }
    }

    pub fn from_key(key: u64) -> Option<Subject> {
        let id = key as u32;
        match key >> 32 {
            0 => Some(Subject::User(id)),
            1 => Some(Subject::Project(id)),
            _ => None,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Project(_) => "project",
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Subject::User(id) | Subject::Project(id) => id,
        }
    }
}

/// Allocated bytes (`st_blocks * 512`, as `du` and kernel quotas count) and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// What one inode is charged: its owner, its project, its allocated bytes, and one inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub uid: u32,
    pub project: u32,
    pub bytes: u64,
}

impl Charge {
    pub fn of(st: &libc::stat, project: u32) -> Charge {
        Charge { uid: st.st_uid, project, bytes: (st.st_blocks as u64).saturating_mul(512) }
    }
}

fn add<K: Ord + Copy + std::fmt::Debug>(map: &mut BTreeMap<K, Usage>, s: K, bytes: u64, sign: i8) {
    let u = map.entry(s).or_default();
    if sign > 0 {
        u.bytes = u.bytes.saturating_add(bytes);
        u.inodes = u.inodes.saturating_add(1);
    } else {
        if u.bytes < bytes || u.inodes == 0 {
            tracing::error!(subject = ?s, usage = ?*u, bytes, "usage would go negative: the ledger has drifted; run `quotafs check --repair`");
        }
        u.bytes = u.bytes.saturating_sub(bytes);
        u.inodes = u.inodes.saturating_sub(1);
    }
    if *u == Usage::default() {
        map.remove(&s);
    }
}

/// Why a reservation was refused: which subject, which resource, its usage and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub subject: Subject,
    pub inodes: bool,
    pub usage: u64,
    pub limit: u64,
}

#[derive(Debug, Default)]
struct Tables {
    usage: BTreeMap<Subject, Usage>,
    /// Held by operations between their check and their settle (worst case).
    reserved: BTreeMap<Subject, Usage>,
    /// The share of `usage` that lies on each routed backing (index ≥ 1): what the ledger has
    /// counted there, so that a rescan of one backing can correct it alone.
    routed: BTreeMap<(BackingIndex, Subject), Usage>,
}

/// Per-backing usage of routed backings.
pub type BackingUsage = BTreeMap<(BackingIndex, Subject), Usage>;

/// The in-memory usage table: exact at every moment a change has settled. It also holds the
/// reservations of operations in flight, under the same lock, so that checking a limit and
/// reserving against it is one atomic step for concurrent writers of one subject.
#[derive(Debug, Default)]
pub struct UsageTable {
    t: Mutex<Tables>,
}

impl UsageTable {
    pub fn from_map(map: BTreeMap<Subject, Usage>) -> UsageTable {
        Self::from_parts(map, BTreeMap::new())
    }

    pub fn from_parts(map: BTreeMap<Subject, Usage>, routed: BackingUsage) -> UsageTable {
        UsageTable { t: Mutex::new(Tables { usage: map, reserved: BTreeMap::new(), routed }) }
    }

    /// Moves one inode of `backing` from charge `before` (None: it did not exist) to `after`
    /// (None: gone).
    pub fn apply(&self, backing: BackingIndex, before: Option<Charge>, after: Option<Charge>) {
        if before == after {
            return;
        }
        let mut t = self.t.lock();
        let t = &mut *t;
        for (c, sign) in [(before, -1), (after, 1)] {
            let Some(c) = c else { continue };
            for s in [Subject::User(c.uid), Subject::Project(c.project)] {
                add(&mut t.usage, s, c.bytes, sign);
                if !backing.is_main() {
                    add(&mut t.routed, (backing, s), c.bytes, sign);
                }
            }
        }
    }

    /// What the ledger counts on routed backing `backing`.
    pub fn on_backing(&self, backing: BackingIndex) -> BTreeMap<Subject, Usage> {
        self.t.lock().routed.iter().filter(|((b, _), _)| *b == backing).map(|((_, s), u)| (*s, *u)).collect()
    }

    pub fn routed_snapshot(&self) -> BackingUsage {
        self.t.lock().routed.clone()
    }

    /// Replaces what the ledger counts on routed backing `backing` with `now` (a rescan of it),
    /// moving the totals by the difference. Returns the subjects that changed.
    pub fn rebase_backing(&self, backing: BackingIndex, now: &BTreeMap<Subject, Usage>) -> Vec<Subject> {
        let mut t = self.t.lock();
        let t = &mut *t;
        let old: BTreeMap<Subject, Usage> =
            t.routed.iter().filter(|((b, _), _)| *b == backing).map(|((_, s), u)| (*s, *u)).collect();
        let mut changed = Vec::new();
        for s in old.keys().chain(now.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (o, n) = (old.get(s).copied().unwrap_or_default(), now.get(s).copied().unwrap_or_default());
            if o == n {
                continue;
            }
            changed.push(*s);
            let e = t.usage.entry(*s).or_default();
            e.bytes = (e.bytes + n.bytes).saturating_sub(o.bytes);
            e.inodes = (e.inodes + n.inodes).saturating_sub(o.inodes);
            if n == Usage::default() {
                t.routed.remove(&(backing, *s));
            } else {
                t.routed.insert((backing, *s), n);
            }
        }
        t.usage.retain(|_, u| *u != Usage::default());
        changed
    }

    /// Replaces everything (a repair from a full rescan).
    pub fn replace_all(&self, map: BTreeMap<Subject, Usage>, routed: BackingUsage) {
        let mut t = self.t.lock();
        t.usage = map;
        t.routed = routed;
    }

    pub fn get(&self, s: Subject) -> Usage {
        self.t.lock().usage.get(&s).copied().unwrap_or_default()
    }

    pub fn snapshot(&self) -> BTreeMap<Subject, Usage> {
        self.t.lock().usage.clone()
    }

    /// Reserves up to `want_bytes` bytes and `inodes` inodes for every subject in `subjects`,
    /// given each subject's caps `(bytes, inodes)` from `cap`. Grants all of `want_bytes` if it
    /// fits, else (with `partial`) the most that fits for every subject; refuses if nothing
    /// fits, or if an inode does not, or — for a request of nothing — if a subject is already
    /// over a cap. Returns the bytes granted, now held until `release`.
    pub fn reserve(
        &self,
        subjects: &[Subject],
        want_bytes: u64,
        inodes: u64,
        partial: bool,
        cap: impl Fn(Subject, Usage) -> (Option<u64>, Option<u64>),
    ) -> Result<u64, Refusal> {
        let mut t = self.t.lock();
        let mut grant = want_bytes;
        for &s in subjects {
            let u = t.usage.get(&s).copied().unwrap_or_default();
            let r = t.reserved.get(&s).copied().unwrap_or_default();
            let (bytes_cap, inode_cap) = cap(s, u);
            let used_bytes = u.bytes + r.bytes;
            let used_inodes = u.inodes + r.inodes;
            if let Some(c) = inode_cap
                && (if inodes == 0 { used_inodes > c } else { used_inodes + inodes > c })
            {
                return Err(Refusal { subject: s, inodes: true, usage: u.inodes, limit: c });
            }
            if let Some(c) = bytes_cap {
                let room = c.saturating_sub(used_bytes);
                let refuse =
                    if want_bytes == 0 { used_bytes > c } else { room == 0 || (!partial && room < want_bytes) };
                if refuse {
                    return Err(Refusal { subject: s, inodes: false, usage: u.bytes, limit: c });
                }
                grant = grant.min(room);
            }
        }
        for &s in subjects {
            let r = t.reserved.entry(s).or_default();
            r.bytes += grant;
            r.inodes += inodes;
        }
        Ok(grant)
    }

    /// Gives back a reservation.
    pub fn release(&self, subjects: &[Subject], bytes: u64, inodes: u64) {
        let mut t = self.t.lock();
        for &s in subjects {
            if let Some(r) = t.reserved.get_mut(&s) {
                r.bytes = r.bytes.saturating_sub(bytes);
                r.inodes = r.inodes.saturating_sub(inodes);
                if *r == Usage::default() {
                    t.reserved.remove(&s);
                }
            }
        }
    }
}

/// Adds one inode's charge to a usage map (scans and recovery build maps this way).
pub fn charge_into(map: &mut BTreeMap<Subject, Usage>, c: Charge) {
    add(map, Subject::User(c.uid), c.bytes, 1);
    add(map, Subject::Project(c.project), c.bytes, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_moves_usage_between_subjects() {
        let t = UsageTable::default();
        let a = Charge { uid: 1000, project: 7, bytes: 4096 };
        t.apply(BackingIndex::MAIN, None, Some(a));
        assert_eq!(t.get(Subject::User(1000)), Usage { bytes: 4096, inodes: 1 });
        assert_eq!(t.get(Subject::Project(7)), Usage { bytes: 4096, inodes: 1 });
        // chown to 1001 and grow
        let b = Charge { uid: 1001, project: 7, bytes: 8192 };
        t.apply(BackingIndex::MAIN, Some(a), Some(b));
        assert_eq!(t.get(Subject::User(1000)), Usage::default());
        assert_eq!(t.get(Subject::User(1001)), Usage { bytes: 8192, inodes: 1 });
        assert_eq!(t.get(Subject::Project(7)), Usage { bytes: 8192, inodes: 1 });
        t.apply(BackingIndex::MAIN, Some(b), None);
        assert!(t.snapshot().is_empty(), "zero rows are dropped");
    }

    #[test]
    fn reservations_are_atomic_and_partial() {
        let t = UsageTable::default();
        t.apply(BackingIndex::MAIN, None, Some(Charge { uid: 1, project: 0, bytes: 900 }));
        let cap = |_: Subject, _: Usage| (Some(1000), Some(5));
        let u = [Subject::User(1)];
        assert_eq!(t.reserve(&u, 50, 1, false, cap), Ok(50));
        // 950 used or reserved: 100 more does not fit whole; partial grants the 50 left.
        assert!(t.reserve(&u, 100, 0, false, cap).is_err());
        assert_eq!(t.reserve(&u, 100, 0, true, cap), Ok(50));
        assert!(t.reserve(&u, 1, 0, true, cap).is_err(), "nothing left");
        t.release(&u, 100, 1);
        assert_eq!(t.reserve(&u, 100, 0, true, cap), Ok(100));
        // A request of nothing is refused only when already over.
        assert!(t.reserve(&u, 0, 0, false, cap).is_ok());
        t.apply(BackingIndex::MAIN, None, Some(Charge { uid: 1, project: 0, bytes: 500 }));
        assert!(t.reserve(&u, 0, 0, false, cap).is_err());
    }

    #[test]
    fn keys_round_trip() {
        for s in [Subject::User(0), Subject::User(u32::MAX), Subject::Project(0), Subject::Project(42)] {
            assert_eq!(Subject::from_key(s.key()), Some(s));
        }
        assert_eq!(Subject::from_key(2 << 32), None);
    }
}
