//! Subjects (users and projects), usage, and what one inode is charged.

use std::collections::BTreeMap;

use parking_lot::Mutex;

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

/// The in-memory usage table: exact at every moment a change has settled.
#[derive(Debug, Default)]
pub struct UsageTable {
    map: Mutex<BTreeMap<Subject, Usage>>,
}

fn add(map: &mut BTreeMap<Subject, Usage>, s: Subject, bytes: u64, sign: i8) {
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

impl UsageTable {
    pub fn from_map(map: BTreeMap<Subject, Usage>) -> UsageTable {
        UsageTable { map: Mutex::new(map) }
    }

    /// Moves one inode's charge from `before` (None: it did not exist) to `after` (None: gone).
    pub fn apply(&self, before: Option<Charge>, after: Option<Charge>) {
        if before == after {
            return;
        }
        let mut m = self.map.lock();
        if let Some(b) = before {
            add(&mut m, Subject::User(b.uid), b.bytes, -1);
            add(&mut m, Subject::Project(b.project), b.bytes, -1);
        }
        if let Some(a) = after {
            add(&mut m, Subject::User(a.uid), a.bytes, 1);
            add(&mut m, Subject::Project(a.project), a.bytes, 1);
        }
    }

    pub fn get(&self, s: Subject) -> Usage {
        self.map.lock().get(&s).copied().unwrap_or_default()
    }

    pub fn snapshot(&self) -> BTreeMap<Subject, Usage> {
        self.map.lock().clone()
    }

    pub fn replace(&self, map: BTreeMap<Subject, Usage>) {
        *self.map.lock() = map;
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
        t.apply(None, Some(a));
        assert_eq!(t.get(Subject::User(1000)), Usage { bytes: 4096, inodes: 1 });
        assert_eq!(t.get(Subject::Project(7)), Usage { bytes: 4096, inodes: 1 });
        // chown to 1001 and grow
        let b = Charge { uid: 1001, project: 7, bytes: 8192 };
        t.apply(Some(a), Some(b));
        assert_eq!(t.get(Subject::User(1000)), Usage::default());
        assert_eq!(t.get(Subject::User(1001)), Usage { bytes: 8192, inodes: 1 });
        assert_eq!(t.get(Subject::Project(7)), Usage { bytes: 8192, inodes: 1 });
        t.apply(Some(b), None);
        assert!(t.snapshot().is_empty(), "zero rows are dropped");
    }

    #[test]
    fn keys_round_trip() {
        for s in [Subject::User(0), Subject::User(u32::MAX), Subject::Project(0), Subject::Project(42)] {
            assert_eq!(Subject::from_key(s.key()), Some(s));
        }
        assert_eq!(Subject::from_key(2 << 32), None);
    }
}
