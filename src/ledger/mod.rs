//! The usage ledger: the in-memory usage table, the activity log of the current epoch, the
//! redb snapshot, checkpoints. docs/design.md §9 is the argument for why this is exact after
//! any crash; the invariants it relies on are enforced here:
//!
//! * a `Touch` (an existing inode's charge before its first change in the epoch) and a
//!   `DirDirty` (a directory that may gain inodes born in the epoch) are durable before the
//!   backing call they guard, or ordered before it in the backing's own journal (a record in
//!   the backing's journal directory, `journal.rs`; the activity log with an fdatasync when
//!   that cannot be made) — a second caller finding the entry already present waits for the
//!   same record, it never races past it;
//! * every usage-changing operation holds a `Change` (the epoch lock, shared) from its log write
//!   to its table update, so a checkpoint's rotation sees no operation half done;
//! * changes to one inode are serialised by its stripe lock (the inode table's
//!   `inode::Stripes`, which a reconcile takes too), so before/after pairs of two operations
//!   never interleave.
//!
//! The ledger does not own the quota `Enforcer` nor the stripe locks: the serving layer does,
//! and lends them (`Beside`) to what settles a charge here.

pub mod error;
pub mod journal;
pub mod poison;
pub mod recovery;
pub mod store;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, DashSet};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

pub use self::error::LedgerError;
use crate::backing::{Backing, Errno, sys};
use crate::ids::{BackingIndex, InodeRef};
use crate::inode::Stripes;
use crate::quota::enforce::Enforcer;
use crate::quota::limits::{LimitKey, Limits};
use crate::quota::{Charge, Subject, UsageTable};
use journal::{EpochMarks, Journal};
use poison::Poison;
use store::{Snapshot, Store};
use wal::{LogWriter, Record};

/// What the last recovery did, for `quotafs status`.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub from_epoch: u64,
    pub logs: usize,
    pub records: usize,
    /// Of `records`, those read from the backings' journal directories.
    pub journal_records: usize,
    pub touched: usize,
    pub dirty_dirs: usize,
    pub listed_dirs: usize,
    pub new_inodes: usize,
    pub torn_bytes: u64,
    pub initial_scan: bool,
    pub scanned_inodes: u64,
    pub duration: Duration,
}

/// Where a record of the epoch was made durable.
#[derive(Clone, Copy)]
enum Written {
    /// In the backing's journal directory: ordered before every later change of that backing.
    Journal,
    /// In the activity log, with this sequence number: durable once the log is synced to it.
    Log(u64),
}

struct EpochState {
    epoch: u64,
    log: Arc<LogWriter>,
    /// The epoch's records on the backings (the log takes those that cannot be made there).
    marks: EpochMarks,
    /// Inode → its `Touch` in this epoch.
    touched: DashMap<InodeRef, Written>,
    /// Directory → its `DirDirty` in this epoch.
    dirty: DashMap<InodeRef, Written>,
    /// Inodes created in this epoch (not in the snapshot the epoch started from).
    born: DashSet<InodeRef>,
    /// Regular files whose charge was settled in this epoch (see `Ledger::charged`). Swapped
    /// with the epoch, under the epoch lock: the checkpoint closing this epoch syncs the
    /// backings after the swap, so every write settled here is on disk with its final
    /// allocation when that checkpoint reconciles; a file settled again after the swap is in
    /// the next epoch's set and stays remembered until the checkpoint after.
    written: DashSet<InodeRef>,
}

impl EpochState {
    fn new(epoch: u64, log: LogWriter, marks: EpochMarks) -> EpochState {
        EpochState {
            epoch,
            log: Arc::new(log),
            marks,
            touched: DashMap::new(),
            dirty: DashMap::new(),
            born: DashSet::new(),
            written: DashSet::new(),
        }
    }
}

pub struct Ledger {
    state_dir: PathBuf,
    store: Store,
    backings: Arc<Vec<Backing>>,
    /// The journal directory of every backing.
    journal: Journal,
    table: UsageTable,
    state: RwLock<EpochState>,
    /// The epoch of the newest committed snapshot: where a crash now would recover from. It
    /// lags the current epoch while a checkpoint is between its rotation and its commit.
    committed: AtomicU64,
    checkpoint_lock: Mutex<()>,
    last_checkpoint: Mutex<Option<SystemTime>>,
    last_recovery: Mutex<RecoveryReport>,
    /// Regular files whose allocation may still grow (or shrink) at writeback: the charge the
    /// ledger holds for each and its birth epoch. ext4 may allocate blocks at writeback, after
    /// a change was settled; the next change uses this (not fstat) as its "before", and each
    /// checkpoint reconciles the files after its syncfs. A file leaves this map only when a
    /// reconcile found its charge final: settled last in an epoch the syncfs covered (see
    /// `EpochState::written`; docs/design.md §9.5).
    charged: DashMap<InodeRef, (Charge, u64)>,
    /// Regular files with no links that open files still hold (*pinned*): unlinked while open,
    /// or reopened after their unlink (through `/proc/self/fd`, an NFS handle). Their charge
    /// (in `charged`, with the epoch since which it is charged) stays until the last close.
    /// Under an inode's stripe lock its charge has one of three states, and every transition
    /// is made there (`passthrough/account.rs`): *linked* (charged); last unlink with no open →
    /// *released* (charged off); last unlink while open → *pinned*; open of a released inode
    /// → pinned again (charged its current size); last close of a pinned one → released. Each
    /// is logged again in every epoch it lives into, or a checkpoint in between would leave a
    /// snapshot that charges them and no log that names them once a crash has freed them.
    pinned: DashMap<InodeRef, ()>,
    /// The one poison state (a failed log write, syncfs or snapshot commit), shared with every
    /// epoch's log writer: once set, no usage change is accepted until restart.
    poison: Arc<Poison>,
    /// fdatasyncs and records of the logs of earlier epochs since the daemon started (the
    /// current log counts its own): `status` adds them up for totals that never reset.
    retired_syncs: AtomicU64,
    retired_records: AtomicU64,
    retired_journal_records: AtomicU64,
}

fn poisoned(why: &str) -> Errno {
    tracing::error!(reason = why, "usage-changing operation refused: the ledger is poisoned");
    Errno(libc::EIO)
}

/// Every usage-changing operation held off (the epoch lock, held exclusively): see
/// `Ledger::paused`.
pub struct Paused<'a> {
    _state: parking_lot::RwLockWriteGuard<'a, EpochState>,
}

/// What the ledger borrows from the layers that own them to settle a charge outside a
/// request (a checkpoint's reconcile): the inode table's stripe locks, which serialise changes
/// to one inode, and the quota enforcer, whose grace timers a settled charge starts or stops.
#[derive(Clone, Copy)]
pub struct Beside<'a> {
    pub stripes: &'a Stripes,
    pub quota: &'a Enforcer,
}

/// A usage-changing operation in progress (holds the epoch lock shared).
pub struct Change<'a> {
    ledger: &'a Ledger,
    state: RwLockReadGuard<'a, EpochState>,
    /// The enforcer whose grace timers `apply` settles.
    quota: &'a Enforcer,
}

impl Change<'_> {
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Refuses every usage change once the ledger is poisoned (a failed log write or
    /// checkpoint): what is durable is no longer known.
    pub fn check_poison(&self) -> Result<(), Errno> {
        match self.ledger.poison.reason() {
            Some(why) => Err(poisoned(&why)),
            None => Ok(()),
        }
    }

    /// Makes `rec` (about `key`) durable before the caller's backing call, once per epoch:
    /// in the backing's journal directory if it can be made there, else in the log, synced.
    fn logged(&self, map: &DashMap<InodeRef, Written>, key: InodeRef, rec: Record) -> Result<(), Errno> {
        let written = match map.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(v) => {
                let w = match self.state.marks.write(&rec) {
                    Ok(()) => Written::Journal,
                    Err(_) => Written::Log(self.state.log.enqueue(&rec).map_err(|e| poisoned(&e.to_string()))?),
                };
                v.insert(w);
                w
            }
        };
        match written {
            Written::Journal => Ok(()),
            Written::Log(seq) => self.state.log.sync_to(seq).map_err(|e| poisoned(&e.to_string())),
        }
    }

    /// Call before changing the charge of existing inode `r` (born in epoch `birth`), with its
    /// stripe lock held. Logs its charge before the change, once per epoch, unless it was born
    /// in this epoch.
    pub fn touch(&self, r: InodeRef, before: Charge, birth: u64) -> Result<(), Errno> {
        self.check_poison()?;
        if self.state.born.contains(&r) {
            return Ok(());
        }
        let rec = Record::Touch { inode: r, uid: before.uid, project: before.project, bytes: before.bytes, birth };
        self.logged(&self.state.touched, r, rec)
    }

    /// Call before an inode born in this epoch can appear in directory `dir` (a creation in
    /// it, or a rename or link of a newly born inode into it).
    pub fn dir_dirty(&self, dir: InodeRef) -> Result<(), Errno> {
        self.check_poison()?;
        if self.state.born.contains(&dir) {
            // Recovery descends into directories born in the epoch by itself.
            return Ok(());
        }
        self.logged(&self.state.dirty, dir, Record::DirDirty { dir })
    }

    /// The charge last settled for regular file `r` since the last checkpoint, if any.
    pub fn remembered(&self, r: InodeRef) -> Option<Charge> {
        self.ledger.charged.get(&r).map(|e| e.0)
    }

    /// Records the charge just settled for regular file `r` (None: it is gone), with its
    /// stripe lock held.
    pub fn remember(&self, r: InodeRef, charge: Option<Charge>, birth: u64) {
        match charge {
            Some(c) => {
                self.ledger.charged.insert(r, (c, birth));
                self.state.written.insert(r);
            }
            None => {
                self.ledger.charged.remove(&r);
            }
        }
    }

    /// Regular file `r` has no links but is open, charged `charge` since epoch `since` (its
    /// birth epoch; for a file charged again when reopened after its unlink, the epoch of that
    /// open): the `Touch` records that keep naming it carry `since` as their birth, so that a
    /// recovery from a snapshot older than `since` takes nothing back (see `pinned`).
    pub fn pin(&self, r: InodeRef, charge: Charge, since: u64) {
        self.ledger.charged.insert(r, (charge, since));
        self.ledger.pinned.insert(r, ());
    }

    /// The last close of a pinned file: forgets it and returns the charge it still holds and
    /// the epoch since which it is charged, for the caller to log and take off.
    pub fn unpin(&self, r: InodeRef) -> Option<(Charge, u64)> {
        self.ledger.pinned.remove(&r)?;
        self.ledger.charged.remove(&r).map(|(_, v)| v)
    }

    /// Whether inode `r`, born in epoch `birth` (its tag's), may be missing from the snapshot a
    /// crash now recovers from, so that recovery can find it only by listing directories: born
    /// in this epoch, or in the one a checkpoint is still committing.
    pub fn is_new(&self, r: InodeRef, birth: u64) -> bool {
        self.state.born.contains(&r) || birth >= self.ledger.committed.load(Ordering::Acquire)
    }

    pub fn born(&self, r: InodeRef) {
        self.state.born.insert(r);
    }

    /// Settles one inode's charge in the usage table (and the grace timers of its subjects).
    pub fn apply(&self, backing: BackingIndex, before: Option<Charge>, after: Option<Charge>) {
        self.ledger.table.apply(backing, before, after);
        for c in [before, after].into_iter().flatten() {
            self.quota.settled(&self.ledger.table, &[Subject::User(c.uid), Subject::Project(c.project)]);
        }
    }
}

/// Figures for `quotafs status`.
#[derive(Clone, Debug)]
pub struct LedgerStatus {
    pub epoch: u64,
    pub log_path: PathBuf,
    pub log_bytes: u64,
    pub log_records: u64,
    pub log_syncs: u64,
    /// Records and fdatasyncs since the daemon started, across epochs.
    pub log_records_total: u64,
    pub log_syncs_total: u64,
    /// Records written to the backings' journal directories, this epoch and since start.
    pub journal_records: u64,
    pub journal_records_total: u64,
    pub last_checkpoint: Option<SystemTime>,
    pub last_recovery: RecoveryReport,
    pub poisoned: Option<String>,
}

impl Ledger {
    /// Opens the ledger in `state_dir` for `backings`, recovering it (or counting the backings
    /// on first mount) before anything is served. The limits and grace timers to enforce are
    /// in its store (`store().limits()`, `store().grace()`).
    pub fn open(state_dir: &Path, backings: Arc<Vec<Backing>>) -> Result<Ledger, LedgerError> {
        let store = Store::open(state_dir)?;
        let journal = Journal::open(&backings)?;
        let (snapshot, report) = recovery::recover(state_dir, &store, &backings, &journal)?;
        let poison = Arc::new(Poison::default());
        let log = LogWriter::create(state_dir, snapshot.epoch, Arc::clone(&poison))
            .map_err(|e| LedgerError::Io(format!("cannot create the activity log in {}: {e}", state_dir.display())))?;
        recovery::remove_logs_before(state_dir, snapshot.epoch);
        journal.remove_before(snapshot.epoch);
        let marks = journal.begin_epoch(snapshot.epoch);
        let ledger = Ledger {
            state_dir: state_dir.to_path_buf(),
            store,
            backings,
            journal,
            table: UsageTable::from_parts(snapshot.usage, snapshot.per_backing),
            state: RwLock::new(EpochState::new(snapshot.epoch, log, marks)),
            committed: AtomicU64::new(snapshot.epoch),
            checkpoint_lock: Mutex::new(()),
            last_checkpoint: Mutex::new(Some(SystemTime::now())),
            last_recovery: Mutex::new(report),
            charged: DashMap::new(),
            pinned: DashMap::new(),
            poison,
            retired_syncs: AtomicU64::new(0),
            retired_records: AtomicU64::new(0),
            retired_journal_records: AtomicU64::new(0),
        };
        Ok(ledger)
    }

    pub fn backings(&self) -> &[Backing] {
        &self.backings
    }

    /// The inode number of backing `backing`'s journal directory (never served).
    pub fn journal_dir_ino(&self, backing: BackingIndex) -> Option<u64> {
        self.journal.dir_ino(backing)
    }

    pub fn table(&self) -> &UsageTable {
        &self.table
    }

    /// Sets or removes the limits of `key`: durable in the store, then in force in `quota`.
    pub fn set_limits(&self, quota: &Enforcer, key: LimitKey, limits: Option<Limits>) -> Result<(), LedgerError> {
        self.store.set_limits(key, limits.as_ref())?;
        quota.set(key, limits);
        // A lowered or removed soft limit starts or stops grace timers at once.
        if let LimitKey::Subject(s) = key {
            quota.settled(&self.table, &[s]);
        }
        Ok(())
    }

    /// Begins a usage-changing operation; what it settles moves `quota`'s grace timers.
    pub fn change<'a>(&'a self, quota: &'a Enforcer) -> Change<'a> {
        Change { ledger: self, state: self.state.read(), quota }
    }

    /// Whether `r` is a file unlinked while open, still charged (see `pinned`).
    pub fn is_pinned(&self, r: InodeRef) -> bool {
        self.pinned.contains_key(&r)
    }

    /// The pinned files (see `pinned`): each one's backing and the charge its last close will
    /// take off. A rescan cannot see them (they have no name), so `check` and a recount of a
    /// routed backing count them from here.
    pub fn pinned_charges(&self) -> Vec<(BackingIndex, Charge)> {
        self.pinned.iter().filter_map(|p| self.charged.get(p.key()).map(|c| (p.key().backing, c.0))).collect()
    }

    pub fn epoch(&self) -> u64 {
        self.state.read().epoch
    }

    pub fn status(&self) -> LedgerStatus {
        let st = self.state.read();
        let (syncs, records) = st.log.counters();
        LedgerStatus {
            epoch: st.epoch,
            log_path: st.log.path().to_path_buf(),
            log_bytes: st.log.bytes(),
            log_records: records,
            log_syncs: syncs,
            log_records_total: records + self.retired_records.load(Ordering::Relaxed),
            log_syncs_total: syncs + self.retired_syncs.load(Ordering::Relaxed),
            journal_records: st.marks.written(),
            journal_records_total: st.marks.written() + self.retired_journal_records.load(Ordering::Relaxed),
            last_checkpoint: *self.last_checkpoint.lock(),
            last_recovery: self.last_recovery.lock().clone(),
            poisoned: self.poison.reason(),
        }
    }

    /// Charges what writeback allocated after the changes were settled: every remembered
    /// regular file is re-stat'ed and its difference applied, logged first (a `Touch` with the
    /// remembered charge) so that recovery reproduces it; every pinned file (unlinked, still
    /// open) is logged in the current epoch. Call after a syncfs. Files stay remembered (a
    /// checkpoint forgets those the syncfs covered).
    pub fn reconcile(&self, beside: Beside<'_>) {
        self.reconcile_charges(beside, false);
    }

    /// `reconcile`; with `forget`, a file whose last settle was in an epoch before the current
    /// one is forgotten after it is reconciled: call so only after a rotation and a syncfs
    /// that followed it, when such a file's allocation is final.
    fn reconcile_charges(&self, beside: Beside<'_>, forget: bool) {
        let keys: Vec<InodeRef> = self.charged.iter().map(|e| *e.key()).collect();
        for key in keys {
            let ch = self.change(beside.quota);
            let _lock = beside.stripes.lock(key.backing, key.ino);
            // The charge the ledger holds now (a write since the keys were listed moved it).
            let Some((remembered, birth)) = self.charged.get(&key).map(|e| *e) else { continue };
            if self.pinned.contains_key(&key) {
                // Unlinked and open: not reachable by handle; logged again below instead.
                if ch.touch(key, remembered, birth).is_err() {
                    return;
                }
                continue;
            }
            // Settled again since the rotation: its newest pages may not be written back yet.
            let settled_since = ch.state.written.contains(&key);
            let Some(b) = self.backings.get(key.backing.as_usize()) else { continue };
            let handle = crate::backing::Handle::ext4(key.ino as u32, key.generation);
            let st = b
                .open_handle(&handle, libc::O_PATH | libc::O_NOFOLLOW)
                .and_then(|fd| sys::stat_fd(std::os::fd::AsFd::as_fd(&fd)));
            let st = match st {
                Ok(st) if st.st_nlink > 0 => st,
                // Removed: its removal charged it off.
                Ok(_) | Err(Errno(libc::ESTALE | libc::ENOENT)) => {
                    self.charged.remove(&key);
                    continue;
                }
                // Kept for the next reconcile: forgotten now, its writeback blocks would be lost.
                Err(e) => {
                    tracing::warn!(ino = key.ino, error = %e, "cannot re-stat a file after writeback; retried at the next checkpoint");
                    continue;
                }
            };
            let actual = Charge::of(&st, remembered.project);
            if actual != remembered {
                if ch.touch(key, remembered, birth).is_err() {
                    return;
                }
                ch.apply(key.backing, Some(remembered), Some(actual));
                tracing::debug!(
                    ino = key.ino,
                    from = remembered.bytes,
                    to = actual.bytes,
                    "reconciled after writeback"
                );
            }
            if forget && !settled_since {
                self.charged.remove(&key);
            } else {
                self.charged.insert(key, (actual, birth));
            }
        }
    }

    /// Runs `f` with every usage-changing operation held off (a consistent moment for a
    /// full rescan); `f` gets the proof that it runs so, which the table operations that
    /// need such a moment (`rebase_routed`) ask for.
    ///
    /// Waits for the pause without a bound: only for a ledger that serves nothing yet (the
    /// start's recounts). A serving daemon uses `paused_within`.
    pub fn paused<T>(&self, f: impl FnOnce(&Paused<'_>) -> T) -> T {
        let st = self.state.write();
        f(&Paused { _state: st })
    }

    /// `paused`, for a serving daemon: waits at most `wait` for the operations in flight to
    /// finish, else `LedgerError::Deferred` and `f` does not run. New operations wait behind
    /// the pause while it is awaited (the epoch lock prefers writers), so the bound is also
    /// the longest stall that one operation stuck in a backing that does not answer (a
    /// frozen Dropbox) imposes, through a check or a recount, on every other tenant.
    pub fn paused_within<T>(
        &self,
        wait: std::time::Duration,
        what: &str,
        f: impl FnOnce(&Paused<'_>) -> T,
    ) -> Result<T, LedgerError> {
        let Some(st) = self.state.try_write_for(wait) else {
            return Err(LedgerError::Deferred(format!(
                "{what} put off: an operation has been in flight for over {} ms (a backing that does not \
                 answer? `quotafs status` shows each backing's requests in progress); try again",
                wait.as_millis()
            )));
        };
        Ok(f(&Paused { _state: st }))
    }

    /// Replaces the ledger's share of routed backing `index` with `usage` (a recount of it,
    /// made in the same pause, that counts its pinned files too) and moves the totals by the
    /// difference. Returns the subjects that changed, whose grace timers the caller settles.
    /// Nothing is logged: the next mount recounts watched backings again.
    pub fn rebase_routed(
        &self,
        _paused: &Paused<'_>,
        index: BackingIndex,
        usage: &std::collections::BTreeMap<Subject, crate::quota::Usage>,
    ) -> Vec<Subject> {
        let changed = self.table.rebase_backing(index, usage);
        // What writeback allocated on this backing is in the recount now.
        self.charged.retain(|k, _| k.backing != index || self.pinned.contains_key(k));
        changed
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn project_names(&self) -> std::collections::BTreeMap<u32, String> {
        self.store.project_names().unwrap_or_default()
    }

    pub fn set_project_name(&self, id: u32, name: Option<&str>) -> Result<(), LedgerError> {
        self.store.set_project_name(id, name)
    }

    /// Whether the current epoch holds enough records that a checkpoint should not wait for
    /// its interval: 64 MiB of log, or 100,000 records in the backings' journal directories
    /// (about a thousand pack files, and a recovery that reads them all: a tenant touching
    /// many old files should not make the next recovery longer than that).
    pub fn wants_checkpoint(&self) -> bool {
        let st = self.state.read();
        st.log.bytes() > 64 << 20 || st.marks.written() > 100_000
    }

    /// How long a checkpoint waits for the operations in flight to finish before it puts the
    /// rotation off to its next turn. New operations wait behind it meanwhile (the epoch lock
    /// prefers writers), so this bounds the pause that one operation stuck in a backing that
    /// does not answer (a frozen or dead Dropbox disk) imposes on every other one; without the
    /// bound, the first checkpoint after it stalled the whole mount (`tests/routed_frozen.rs`).
    pub const ROTATION_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

    /// Ends the current epoch: a new log, then (without blocking operations) syncfs of every
    /// backing, the snapshot commit, and the removal of the old log (docs/design.md §9.5).
    /// `LedgerError::Deferred` if an operation stays in flight past `ROTATION_WAIT`.
    pub fn checkpoint(&self, beside: Beside<'_>) -> Result<u64, LedgerError> {
        let _one = self.checkpoint_lock.lock();
        // A poisoned ledger never commits again: what its table says is not known to be durable.
        if let Some(why) = self.poison.reason() {
            return Err(LedgerError::Poisoned(format!("ledger poisoned: {why}; restart the daemon to recover")));
        }
        let started = Instant::now();
        let snapshot = {
            let Some(mut st) = self.state.try_write_for(Self::ROTATION_WAIT) else {
                return Err(LedgerError::Deferred(format!(
                    "checkpoint put off: an operation has been in flight for over {} ms (a backing that does not \
                     answer?); the epoch goes on and the next interval tries again",
                    Self::ROTATION_WAIT.as_millis()
                )));
            };
            let epoch = st.epoch + 1;
            let log = LogWriter::create(&self.state_dir, epoch, Arc::clone(&self.poison))
                .map_err(|e| LedgerError::Io(format!("cannot create the activity log of epoch {epoch}: {e}")))?;
            let snapshot = Snapshot {
                epoch,
                usage: self.table.snapshot(),
                grace: Some(beside.quota.grace_snapshot()),
                per_backing: self.table.routed_snapshot(),
            };
            let (syncs, records) = st.log.counters();
            self.retired_syncs.fetch_add(syncs, Ordering::Relaxed);
            self.retired_records.fetch_add(records, Ordering::Relaxed);
            self.retired_journal_records.fetch_add(st.marks.written(), Ordering::Relaxed);
            let marks = self.journal.begin_epoch(epoch);
            *st = EpochState::new(epoch, log, marks);
            snapshot
        };
        crate::failpoint::CHECKPOINT.hit();
        let finish = || -> Result<(), LedgerError> {
            for b in self.backings.iter() {
                sys::syncfs(b.root_fd())
                    .map_err(|e| LedgerError::Io(format!("syncfs of backing {}: {e}", b.path.display())))?;
            }
            // Everything written before the rotation is now on disk with its final allocation.
            // Charge what writeback allocated since it was settled, logged in the new epoch,
            // *before* the snapshot (which leaves it out) becomes what recovery starts from:
            // committed first, a crash in between lost it (found by the power-cut rig).
            self.reconcile_charges(beside, true);
            if let Some(why) = self.poison.reason() {
                return Err(LedgerError::Poisoned(why));
            }
            crate::failpoint::SNAPSHOT_COMMIT.check().map_err(|e| LedgerError::Io(format!("snapshot commit: {e}")))?;
            self.store.commit(&snapshot)
        };
        if let Err(why) = finish() {
            self.poison.set(format!("checkpoint to epoch {} failed: {why}", snapshot.epoch));
            return Err(why);
        }
        self.committed.store(snapshot.epoch, Ordering::Release);
        crate::failpoint::CHECKPOINT_COMMITTED.hit();
        recovery::remove_logs_before(&self.state_dir, snapshot.epoch);
        self.journal.remove_before(snapshot.epoch);
        *self.last_checkpoint.lock() = Some(SystemTime::now());
        tracing::debug!(epoch = snapshot.epoch, ms = started.elapsed().as_millis() as u64, "checkpoint");
        Ok(snapshot.epoch)
    }
}
