//! The ledger's store in redb (`ledger.redb` in the state dir, format 1): the snapshot of the
//! usage table with the epoch it starts, and the limits, grace timers and project records.
//!
//! Tables (docs/design.md §9.2). A subject key is `Subject::key()`: `kind << 32 | id` (kind 0
//! user, 1 project); a limit key is a subject key or `2 << 32` / `3 << 32` (default user /
//! project limits, `LimitKey::key()`).
//! * `meta`: `&str` → `u64`: `"epoch"` (the snapshot's epoch), `"format"` (1), and
//!   `"backing.<N>"` → 1 for each backing index N the snapshot counts (none: backing 0 only).
//! * `usage`: subject key `u64` → `(bytes u64, inodes u64)`.
//! * `usage_by_backing`: `(backing u8, subject key u64)` → `(bytes u64, inodes u64)`, the share
//!   of `usage` on each routed backing.
//! * `grace`: `(subject key << 1 | is_inodes)` `u128` → `u64`, the Unix time the soft limit was
//!   first exceeded; replaced by each snapshot that carries timers (checkpoints).
//! * `limits`: limit key `u64` → `(bytes_soft, bytes_hard, inodes_soft, inodes_hard,
//!   grace_secs, 0)`, six `u64`, `u64::MAX` for "none" (`Limits::encode`).
//! * `project_names`: project id `u32` → name `&str`, unique.
//! * `project_roots`: project id `u32` → top directory `(backing u8, ino u64, generation u32)`.
//!
//! A snapshot (`usage`, `usage_by_backing`, `meta`, and `grace` from checkpoints) is written in
//! one write transaction with `Durability::Immediate`: after `commit` returns it is the durable
//! snapshot, before it the previous one is. Limits, names and roots are committed on their own,
//! durable when the call returns.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::error::LedgerError;
use crate::ids::{BackingIndex, InodeRef};
use crate::quota::enforce::GraceMap;
use crate::quota::limits::{LimitKey, Limits};
use crate::quota::{Subject, Usage};

const USAGE: TableDefinition<u64, (u64, u64)> = TableDefinition::new("usage");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PROJECT_NAMES: TableDefinition<u32, &str> = TableDefinition::new("project_names");
/// Project id → its top directory (backing, ino, generation), recorded by `project assign`.
const PROJECT_ROOTS: TableDefinition<u32, (u8, u64, u32)> = TableDefinition::new("project_roots");

/// The `project_roots` row of directory `r`.
fn root_row(r: InodeRef) -> (u8, u64, u32) {
    (r.backing.0, r.ino, r.generation)
}
const LIMITS: TableDefinition<u64, (u64, u64, u64, u64, u64, u64)> = TableDefinition::new("limits");
/// Grace timers: (subject key << 1 | inodes) → Unix time the soft limit was first exceeded.
const GRACE: TableDefinition<u128, u64> = TableDefinition::new("grace");
/// (backing, subject key) → (bytes, inodes): the share of `usage` on each routed backing.
const BY_BACKING: TableDefinition<(u8, u64), (u64, u64)> = TableDefinition::new("usage_by_backing");
const FORMAT: u64 = 1;

/// The file name of the store in the state dir.
pub const FILE: &str = "ledger.redb";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: u64,
    pub usage: BTreeMap<Subject, Usage>,
    /// Grace timers at the snapshot (saved with it; at most one checkpoint interval old).
    pub grace: Option<GraceMap>,
    /// The share of `usage` on each routed backing.
    pub per_backing: crate::quota::BackingUsage,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store { path: path.to_path_buf(), what: what.to_string(), detail: e.to_string() }
}

impl Store {
    /// Opens (or creates) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, LedgerError> {
        let path = state_dir.join(FILE);
        if !path.exists() {
            // Created empty with mode 0600 first: redb initialises an empty file, and the
            // daemon's umask is 0.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| err(&path, "cannot create", e))?;
        }
        // The store is locked (flock) by whoever has it open. A quotafs command that reads it
        // while no daemon runs (`status`, `report`) holds it for a moment; under a supervisor
        // that moment can fall on the start of the next serving process, which then waits
        // for it rather than die.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.map_err(|e| err(&path, "cannot open", e))?,
            }
        };
        Ok(Store { db, path })
    }

    /// Whether this quotafs reads the store in `state_dir` as it stands, without changing it
    /// (`quotafs mount --check-takeover`): a copy is opened (the running daemon holds the
    /// store's locks, and opening a store may write it) and its snapshot loaded. Returns the
    /// snapshot's epoch (None: no snapshot yet). A copy taken while a snapshot is being
    /// written may not open; the copy is retried before that counts as a refusal.
    pub fn check_readable(state_dir: &Path) -> Result<Option<u64>, LedgerError> {
        let path = state_dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let scratch = std::env::temp_dir().join(format!("quotafs-check-takeover-{}", std::process::id()));
        let mut last = None;
        for _ in 0..3 {
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&scratch)
                .map_err(|e| err(&scratch, "cannot create a scratch directory", e))?;
            let tried = std::fs::copy(&path, scratch.join(FILE))
                .map_err(|e| err(&path, "cannot copy", e))
                .and_then(|_| Store::open(&scratch))
                .and_then(|store| store.load());
            let _ = std::fs::remove_dir_all(&scratch);
            match tried {
                Ok(snapshot) => return Ok(snapshot.map(|s| s.epoch)),
                // A format this quotafs does not know is an answer, not a torn copy.
                Err(LedgerError::Store { what, detail, .. }) if what == "unknown format" => {
                    return Err(LedgerError::Store { path: path.clone(), what, detail });
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Err(last.unwrap_or_else(|| err(&path, "cannot read", "no attempt made")))
    }

    /// Moves an unreadable store aside (`ledger.redb.corrupt-<unix time>`) so that a repair can
    /// rebuild the ledger; returns where it went. Nothing is deleted.
    pub fn quarantine(state_dir: &Path) -> Result<PathBuf, LedgerError> {
        let path = state_dir.join(FILE);
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let aside = state_dir.join(format!("{FILE}.corrupt-{secs}"));
        std::fs::rename(&path, &aside)
            .map_err(|e| LedgerError::Io(format!("cannot move {} aside: {e}", path.display())))?;
        Ok(aside)
    }

    /// Calls `row` for every row of table `def`; a table never written yet has none.
    fn each_row<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
        what: &str,
        mut row: impl FnMut(redb::AccessGuard<'_, K>, redb::AccessGuard<'_, V>) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, "read", e))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(err(p, what, e)),
        };
        for r in table.iter().map_err(|e| err(p, what, e))? {
            let (k, v) = r.map_err(|e| err(p, what, e))?;
            row(k, v)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durable snapshot, or None for a store that never had one (first mount).
    pub fn load(&self) -> Result<Option<Snapshot>, LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, "read", e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(p, "read meta", e)),
        };
        let Some(epoch) = meta.get("epoch").map_err(|e| err(p, "read epoch", e))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let format = meta.get("format").map_err(|e| err(p, "read format", e))?.map(|v| v.value());
        if format != Some(FORMAT) {
            let found = format.map_or_else(|| "none".to_string(), |f| f.to_string());
            return Err(err(p, "unknown format", format!("format {found}; this quotafs reads format {FORMAT}")));
        }
        let table = txn.open_table(USAGE).map_err(|e| err(p, "read usage", e))?;
        let mut usage = BTreeMap::new();
        for row in table.iter().map_err(|e| err(p, "read usage", e))? {
            let (k, v) = row.map_err(|e| err(p, "read usage row", e))?;
            let subject = Subject::from_key(k.value()).ok_or_else(|| err(p, "bad subject key", k.value()))?;
            let (bytes, inodes) = v.value();
            usage.insert(subject, Usage { bytes, inodes });
        }
        let mut per_backing = BTreeMap::new();
        match txn.open_table(BY_BACKING) {
            Ok(t) => {
                for row in t.iter().map_err(|e| err(p, "read usage by backing", e))? {
                    let (k, v) = row.map_err(|e| err(p, "read usage by backing", e))?;
                    let (b, key) = k.value();
                    let subject = Subject::from_key(key).ok_or_else(|| err(p, "bad subject key", key))?;
                    let (bytes, inodes) = v.value();
                    per_backing.insert((BackingIndex(b), subject), Usage { bytes, inodes });
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(p, "read usage by backing", e)),
        }
        Ok(Some(Snapshot { epoch, usage, grace: None, per_backing }))
    }

    /// Records (Some) or forgets (None) the top directory of project `id`.
    pub fn set_project_root(&self, id: u32, root: Option<InodeRef>) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut t = txn.open_table(PROJECT_ROOTS).map_err(|e| err(p, "open project roots", e))?;
            match root {
                Some(r) => t.insert(id, root_row(r)).map(drop),
                None => t.remove(id).map(drop),
            }
            .map_err(|e| err(p, "write project root", e))?;
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }

    /// Records that the directory `root` now tops project `id` (0: no project), in one
    /// transaction: any other project recorded at that directory loses it, so a tree cleared
    /// or re-assigned leaves no stale root behind (`quota show` goes by these).
    pub fn move_project_root(&self, id: u32, root: InodeRef) -> Result<(), LedgerError> {
        let root = root_row(root);
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut t = txn.open_table(PROJECT_ROOTS).map_err(|e| err(p, "open project roots", e))?;
            let stale: Vec<u32> = t
                .iter()
                .map_err(|e| err(p, "read project roots", e))?
                .filter_map(|row| row.ok())
                .filter(|(k, v)| v.value() == root && k.value() != id)
                .map(|(k, _)| k.value())
                .collect();
            for other in stale {
                t.remove(other).map_err(|e| err(p, "write project root", e))?;
            }
            if id != 0 {
                t.insert(id, root).map_err(|e| err(p, "write project root", e))?;
            }
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }

    pub fn project_roots(&self) -> Result<BTreeMap<u32, InodeRef>, LedgerError> {
        let mut out = BTreeMap::new();
        self.each_row(PROJECT_ROOTS, "read project roots", |k, v| {
            let (backing, ino, generation) = v.value();
            out.insert(k.value(), InodeRef { backing: BackingIndex(backing), ino, generation });
            Ok(())
        })?;
        Ok(out)
    }

    /// Limits in force (per subject and defaults).
    pub fn limits(&self) -> Result<std::collections::HashMap<LimitKey, Limits>, LedgerError> {
        let mut out = std::collections::HashMap::new();
        self.each_row(LIMITS, "read limits", |k, v| {
            let key = LimitKey::from_key(k.value()).ok_or_else(|| err(&self.path, "bad limit key", k.value()))?;
            out.insert(key, Limits::decode(v.value()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Sets (Some) or removes (None) the limits of `key`; durable on return.
    pub fn set_limits(&self, key: LimitKey, limits: Option<&Limits>) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut t = txn.open_table(LIMITS).map_err(|e| err(p, "open limits", e))?;
            match limits {
                Some(l) => t.insert(key.key(), l.encode()).map(drop),
                None => t.remove(key.key()).map(drop),
            }
            .map_err(|e| err(p, "write limits", e))?;
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }

    /// Grace timers saved with the last snapshot.
    pub fn grace(&self) -> Result<GraceMap, LedgerError> {
        let mut out = GraceMap::new();
        self.each_row(GRACE, "read grace timers", |k, v| {
            if let Some(s) = Subject::from_key((k.value() >> 1) as u64) {
                out.insert((s, k.value() & 1 == 1), v.value());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Names given to projects (`project assign --name`).
    pub fn project_names(&self) -> Result<BTreeMap<u32, String>, LedgerError> {
        let mut out = BTreeMap::new();
        self.each_row(PROJECT_NAMES, "read project names", |k, v| {
            out.insert(k.value(), v.value().to_string());
            Ok(())
        })?;
        Ok(out)
    }

    /// Names (Some) or unnames (None) project `id`; durable on return. A name belongs to one
    /// project: naming a second project with it is refused.
    pub fn set_project_name(&self, id: u32, name: Option<&str>) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut t = txn.open_table(PROJECT_NAMES).map_err(|e| err(p, "open project names", e))?;
            if let Some(n) = name {
                for row in t.iter().map_err(|e| err(p, "read project names", e))? {
                    let (k, v) = row.map_err(|e| err(p, "read project names", e))?;
                    if k.value() != id && v.value() == n {
                        return Err(LedgerError::Refused(format!(
                            "the name {n:?} is taken by project {}: choose another name, or rename project {} first",
                            k.value(),
                            k.value()
                        )));
                    }
                }
            }
            match name {
                Some(n) => t.insert(id, n).map(drop),
                None => t.remove(id).map(drop),
            }
            .map_err(|e| err(p, "write project name", e))?;
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }

    /// Replaces every limit and every project name with `limits` and `names`, in one
    /// transaction: durable on return, and all or nothing.
    pub fn replace_limits_and_names(
        &self,
        limits: &std::collections::HashMap<LimitKey, Limits>,
        names: &BTreeMap<u32, String>,
    ) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut t = txn.open_table(LIMITS).map_err(|e| err(p, "open limits", e))?;
            t.retain(|_, _| false).map_err(|e| err(p, "clear limits", e))?;
            for (k, l) in limits {
                t.insert(k.key(), l.encode()).map_err(|e| err(p, "write limits", e))?;
            }
            let mut t = txn.open_table(PROJECT_NAMES).map_err(|e| err(p, "open project names", e))?;
            t.retain(|_, _| false).map_err(|e| err(p, "clear project names", e))?;
            for (id, n) in names {
                t.insert(*id, n.as_str()).map_err(|e| err(p, "write project name", e))?;
            }
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }

    /// Makes `snap` the durable snapshot (returns after it is on disk).
    pub fn commit(&self, snap: &Snapshot) -> Result<(), LedgerError> {
        self.commit_counting(snap, &[])
    }

    /// The backing indices whose contents the snapshot counts. A store from before routes
    /// existed counts backing 0.
    pub fn counted_backings(&self) -> Result<Vec<BackingIndex>, LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, "read", e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(p, "read meta", e)),
        };
        let mut out = Vec::new();
        for i in 0..=u8::MAX {
            if meta.get(format!("backing.{i}").as_str()).map_err(|e| err(p, "read backings", e))?.is_some() {
                out.push(BackingIndex(i));
            }
        }
        if out.is_empty() && meta.get("epoch").map_err(|e| err(p, "read epoch", e))?.is_some() {
            out.push(BackingIndex::MAIN);
        }
        Ok(out)
    }

    /// `commit`, also recording that the snapshot now counts backings `newly_counted`: in the
    /// same transaction, so a backing is counted into the ledger exactly once.
    pub fn commit_counting(&self, snap: &Snapshot, newly_counted: &[BackingIndex]) -> Result<(), LedgerError> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, "begin write", e))?;
        {
            let mut table = txn.open_table(USAGE).map_err(|e| err(p, "open usage", e))?;
            table.retain(|_, _| false).map_err(|e| err(p, "clear usage", e))?;
            for (s, u) in &snap.usage {
                table.insert(s.key(), (u.bytes, u.inodes)).map_err(|e| err(p, "write usage", e))?;
            }
            let mut by = txn.open_table(BY_BACKING).map_err(|e| err(p, "open usage by backing", e))?;
            by.retain(|_, _| false).map_err(|e| err(p, "clear usage by backing", e))?;
            for ((b, s), u) in &snap.per_backing {
                by.insert((b.0, s.key()), (u.bytes, u.inodes)).map_err(|e| err(p, "write usage by backing", e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| err(p, "open meta", e))?;
            meta.insert("epoch", snap.epoch).map_err(|e| err(p, "write epoch", e))?;
            for i in newly_counted {
                meta.insert(format!("backing.{}", i.0).as_str(), 1).map_err(|e| err(p, "write backings", e))?;
            }
            if let Some(grace) = &snap.grace {
                let mut g = txn.open_table(GRACE).map_err(|e| err(p, "open grace timers", e))?;
                g.retain(|_, _| false).map_err(|e| err(p, "clear grace timers", e))?;
                for ((s, inodes), since) in grace {
                    let key = (u128::from(s.key()) << 1) | u128::from(*inodes);
                    g.insert(key, *since).map_err(|e| err(p, "write grace timers", e))?;
                }
            }
            meta.insert("format", FORMAT).map_err(|e| err(p, "write format", e))?;
        }
        txn.commit().map_err(|e| err(p, "commit", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_and_replace() {
        let dir = std::env::temp_dir().join(format!("quotafs-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), None, "a new store has no snapshot");
        let mut usage = BTreeMap::new();
        usage.insert(Subject::User(1000), Usage { bytes: 4096, inodes: 1 });
        usage.insert(Subject::Project(3), Usage { bytes: 4096, inodes: 1 });
        store.commit(&Snapshot { epoch: 2, usage: usage.clone(), grace: None, per_backing: BTreeMap::new() }).unwrap();
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(
            store.load().unwrap(),
            Some(Snapshot { epoch: 2, usage, grace: None, per_backing: BTreeMap::new() })
        );
        store
            .commit(&Snapshot { epoch: 3, usage: BTreeMap::new(), grace: None, per_backing: BTreeMap::new() })
            .unwrap();
        assert_eq!(
            store.load().unwrap(),
            Some(Snapshot { epoch: 3, usage: BTreeMap::new(), grace: None, per_backing: BTreeMap::new() }),
            "old rows removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
