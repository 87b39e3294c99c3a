//! One seam for accounting: `Op`, the guard every usage-changing operation goes through
//! (docs/design.md §9.7).
//!
//! An operation is begun (`Ops::begin`: the epoch `Change`, then the stripe locks of
//! the inodes it touches, in ascending order), reads what it will change (`track`: the tag and
//! the stat that are the inode's charge *before*), checks the limits (`reserve*`), and ends in
//! one of two consuming calls:
//!
//! * `run`: writes the records the backing call needs durable before it runs (a `Touch` per
//!   tracked inode, a `DirDirty` per directory that may gain a new inode), then runs the call,
//!   then settles every tracked inode (stat after, charge applied), then gives back the
//!   reservations, the stripe locks and the epoch lock, in that order;
//! * `finish_made`: the same for a change the kernel has already made (a reopen of an unlinked
//!   file, its last close), where a record that cannot be written is logged, not refused.
//!
//! So nothing is logged before the operation is known to go ahead: a write refused by `reserve`
//! returns before `run` and writes no record (issue #16). An `Op` dropped before `run` (an
//! early `?`) made no backing call and has nothing to settle; it only gives back its locks and
//! reservations. After `run` there is no `Op` left to misuse: the order cannot be got wrong.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use parking_lot::MutexGuard;

use super::Ctx;
use super::account::{block_size, index_block_ahead, new_blocks, span, untagged};
use super::ops::Ops;
use crate::backing::{Errno, Handle, sys};
use crate::ids::{BackingIndex, InodeRef};
use crate::inode::Inode;
use crate::inode::stripes::WouldBlock;
use crate::ledger::Change;
use crate::quota::enforce::Reservation;
use crate::quota::{Charge, Subject};
use crate::tag::{self, Tag};

/// An inode whose charge an operation is changing, as it was before the change.
#[derive(Clone, Copy)]
pub(super) struct Tracked {
    pub key: InodeRef,
    pub tag: Tag,
    pub before: Charge,
    pub st: libc::stat,
}

/// The entry a removal acts on (`Ops::begin_removal`): an `O_PATH` descriptor of it, its
/// handle, and its stat read under its stripe lock.
pub(super) struct Victim {
    pub fd: OwnedFd,
    pub handle: Handle,
    pub st: libc::stat,
}

/// A record that must be durable before the backing call runs.
enum Record {
    /// An existing inode's charge before its change (`Change::touch`).
    Touch { key: InodeRef, before: Charge, birth: u64 },
    /// A directory about to hold an inode the recovery snapshot may lack (`Change::dir_dirty`).
    DirDirty(InodeRef),
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// A usage-changing operation in progress (see the module doc). Fields drop in declaration
/// order: reservations (after the charges they covered are applied), then stripe locks, then
/// the epoch lock.
#[must_use = "an Op changes nothing until `run`; dropped, it only gives back its locks and reservations"]
pub(super) struct Op<'a> {
    ops: Ops<'a>,
    records: Vec<Record>,
    /// Tracked inodes to settle after the call, each with a descriptor to stat it through.
    settles: Vec<(Tracked, BorrowedFd<'a>)>,
    reservations: Vec<Reservation<'a>>,
    _locks: Vec<MutexGuard<'a, ()>>,
    ch: Change<'a>,
}

/// Stripe locks held, and the stats of the entries they cover (None: no such entry).
type Entries<'a> = (Op<'a>, Vec<Option<libc::stat>>);

impl<'a> Ops<'a> {
    /// Begins a usage-changing operation on the inodes `inos`: the epoch lock (shared), then
    /// their stripe locks.
    pub(super) fn begin(&self, inos: &[(BackingIndex, u64)]) -> Op<'a> {
        let ch = self.be.ledger.change(&self.be.quota);
        let stripes = self.st.nodes.stripes();
        let locks = match inos {
            [(b, ino)] => vec![stripes.lock(*b, *ino)],
            _ => stripes.lock_many(inos),
        };
        self.op(ch, locks)
    }

    fn op(&self, ch: Change<'a>, locks: Vec<MutexGuard<'a, ()>>) -> Op<'a> {
        Op { ops: *self, records: Vec::new(), settles: Vec::new(), reservations: Vec::new(), _locks: locks, ch }
    }

    /// `begin` for removing entry `name` of directory `dir`: the directory's stripe, then the
    /// entry opened `O_PATH` and read through that descriptor (handle, then stat under its
    /// stripe), so that no name is walked twice. While the directory's stripe is held no
    /// operation of this daemon can change what the name names (every one that adds, removes
    /// or renames a name holds its directory's stripe: creations, link, unlink, rmdir,
    /// rename), so the descriptor is of the entry the removal acts on. The entry's stripe is
    /// taken as `Stripes::lock_also` allows; when it cannot be without waiting out of order,
    /// both are let go, taken in order, and the name checked again.
    pub(super) fn begin_removal(
        &self,
        dir: &Inode,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(Op<'a>, Victim), Errno> {
        let stripes = self.st.nodes.stripes();
        loop {
            let ch = self.be.ledger.change(&self.be.quota);
            let dir_lock = stripes.lock(dir.backing, dir.ino);
            let fd = sys::open_entry(dirfd, name)?;
            let handle = sys::fd_to_handle(fd.as_fd())?;
            let ino = match handle.ext4_ino() {
                Some(ino) => u64::from(ino),
                None => sys::stat_fd(fd.as_fd())?.st_ino,
            };
            let locks = match stripes.lock_also((dir.backing, dir.ino), (dir.backing, ino)) {
                Ok(also) => std::iter::once(dir_lock).chain(also).collect(),
                Err(WouldBlock) => {
                    drop(dir_lock);
                    let locks = stripes.lock_many(&[(dir.backing, dir.ino), (dir.backing, ino)]);
                    if sys::stat_at(dirfd, name)?.st_ino != ino {
                        continue;
                    }
                    locks
                }
            };
            let st = sys::stat_fd(fd.as_fd())?;
            return Ok((self.op(ch, locks), Victim { fd, handle, st }));
        }
    }

    /// `begin` on directories `dirs` and the entries `names` currently name (the name at each
    /// position is in the directory at the same position), returning the entries' stats;
    /// retries if an entry changed while the locks were taken.
    pub(super) fn begin_entries(
        &self,
        dirs: &[&Inode],
        names: &[(BorrowedFd<'_>, &CStr)],
    ) -> Result<Entries<'a>, Errno> {
        let stat_all = || -> Result<Vec<Option<libc::stat>>, Errno> {
            names
                .iter()
                .map(|(d, n)| match sys::stat_at(*d, n) {
                    Ok(st) => Ok(Some(st)),
                    Err(Errno(libc::ENOENT)) => Ok(None),
                    Err(e) => Err(e),
                })
                .collect()
        };
        loop {
            let seen = stat_all()?;
            // Each name lives in the directory of the same position, on its backing.
            let mut inos: Vec<(BackingIndex, u64)> = dirs.iter().map(|d| (d.backing, d.ino)).collect();
            inos.extend(dirs.iter().zip(&seen).filter_map(|(d, st)| st.map(|st| (d.backing, st.st_ino))));
            let op = self.begin(&inos);
            let now = stat_all()?;
            let same = seen.iter().zip(&now).all(|(a, b)| a.map(|s| s.st_ino) == b.map(|s| s.st_ino));
            if same {
                return Ok((op, now));
            }
        }
    }
}

impl<'a> Op<'a> {
    pub fn epoch(&self) -> u64 {
        self.ch.epoch()
    }

    /// Reads existing inode `inode`'s charge before the change (its tag and a stat through
    /// `fd`, any descriptor of it), to be logged by `run` and settled through `fd` after the
    /// call. ENOENT for an inode removed after the kernel resolved it (a chown racing an
    /// unlink, an `O_PATH` descriptor): the removal charged it off, and a deleted inode has
    /// nothing left to change. An unlinked *open* file stays charged until its last close.
    pub fn track(&mut self, inode: &Inode, fd: BorrowedFd<'a>) -> Result<Tracked, Errno> {
        let tag = self.ops.tag_of(inode, fd)?;
        let st = sys::stat_fd(fd)?;
        if st.st_nlink == 0 && !self.ops.st.opens.is_open(inode.key()) {
            return Err(Errno(libc::ENOENT));
        }
        let t = self.track_known(inode.key(), tag, st)?;
        self.settles.push((t, fd));
        Ok(t)
    }

    /// Like `track`, for the entry `name` of directory `dir`, which the inode table may not
    /// hold (the victim of an unlink or of a replacing rename, a file a rename moves to
    /// another project). Not settled by `run`: the call's closure says what became of it
    /// (`gone`, `moved`).
    pub fn track_at(&mut self, backing: BackingIndex, dir: BorrowedFd<'_>, name: &CStr) -> Result<Tracked, Errno> {
        let st = sys::stat_at(dir, name)?;
        self.track_at_stat(backing, dir, name, st)
    }

    /// `track_at` with the entry's stat already read under the stripe lock (`begin_entries`).
    pub fn track_at_stat(
        &mut self,
        backing: BackingIndex,
        dir: BorrowedFd<'_>,
        name: &CStr,
        st: libc::stat,
    ) -> Result<Tracked, Errno> {
        self.track_entry(backing, dir, name, st, sys::name_to_handle(dir, name)?)
    }

    /// `track_at_stat` with the entry's handle already read (through a descriptor of it).
    /// ESTALE if the handle is not of the inode `st` describes (the name changed between).
    pub fn track_entry(
        &mut self,
        backing: BackingIndex,
        dir: BorrowedFd<'_>,
        name: &CStr,
        st: libc::stat,
        handle: Handle,
    ) -> Result<Tracked, Errno> {
        if handle.ext4_ino().is_some_and(|ino| u64::from(ino) != st.st_ino) {
            return Err(Errno(libc::ESTALE));
        }
        let key = InodeRef { backing, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        let tag = match self.ops.cached_tag(backing, &handle, st.st_ino) {
            Some(t) => t,
            None => tag::read_at(dir, name)?.unwrap_or_else(|| untagged(key)),
        };
        self.track_known(key, tag, st)
    }

    /// Tracks inode `key` with tag `tag` and stat `st` already read (stripe lock held). Its
    /// charge before is what the ledger holds for it if known (a block ext4 allocated at
    /// writeback since is then charged by this change), else what `st` says. EIO once the
    /// ledger is poisoned: no change is accepted then.
    pub fn track_known(&mut self, key: InodeRef, tag: Tag, st: libc::stat) -> Result<Tracked, Errno> {
        self.ch.check_poison()?;
        let before = self.ch.remembered(key).unwrap_or(Charge::of(&st, tag.project));
        self.records.push(Record::Touch { key, before, birth: tag.birth });
        Ok(Tracked { key, tag, before, st })
    }

    /// Logs (in `run`, or `finish_made`) `key`'s charge `before`, charged since epoch `birth`,
    /// for a change the caller makes itself (re-pinning, a last close).
    pub fn log_charge(&mut self, key: InodeRef, before: Charge, birth: u64) {
        self.records.push(Record::Touch { key, before, birth });
    }

    /// Directory `dir` is about to hold an inode born in this epoch (a creation in it, or a
    /// rename or link of a newly born inode into it): `run` logs it first.
    pub fn dir_dirty(&mut self, dir: InodeRef) {
        self.records.push(Record::DirDirty(dir));
    }

    /// See `Change::is_new`.
    pub fn is_new(&self, r: InodeRef, birth: u64) -> bool {
        self.ch.is_new(r, birth)
    }

    fn reservation(
        &self,
        ctx: &Ctx,
        subjects: &[Subject],
        want: u64,
        inodes: u64,
        partial: bool,
    ) -> Result<Reservation<'a>, Errno> {
        self.ops.be.quota.reserve(self.ops.be.ledger.table(), ctx.uid, subjects, want, inodes, partial)
    }

    /// Reserves an allocation of `want` bytes and `inodes` inodes for `subjects` until the
    /// operation is settled (see `Enforcer::reserve`); EDQUOT when it does not fit.
    pub fn reserve(&mut self, ctx: &Ctx, subjects: &[Subject], want: u64, inodes: u64) -> Result<(), Errno> {
        let r = self.reservation(ctx, subjects, want, inodes, false)?;
        self.reservations.push(r);
        Ok(())
    }

    /// Reserves room for directory `dir` (tracked) to grow by one block, against its owner's
    /// and its project's limits: ext4 charges a directory's blocks to its owner, and so does
    /// the ledger, whoever adds the entry. Call before any operation that adds a name to
    /// `dir` (creation, link, rename to a new name); EDQUOT, to the caller, when the owner or
    /// the project has no room for the block, so another tenant cannot push them past a
    /// limit by filling their directory with names (ext4 refuses whoever grows a directory of
    /// an owner over quota). Root and exempt callers are never refused.
    pub fn reserve_dir_growth(&mut self, ctx: &Ctx, dir: &Tracked) -> Result<(), Errno> {
        let subjects = [Subject::User(dir.st.st_uid), Subject::Project(dir.tag.project)];
        let r = self.ops.be.quota.reserve_bytes(self.ops.be.ledger.table(), ctx.uid, &subjects, block_size(&dir.st))?;
        self.reservations.push(r);
        Ok(())
    }

    /// Reserves for writing `len` bytes at `offset` of open file `fd`, tracked as `t` (charged
    /// to its owner and project, allocated in its file system's blocks): the worst case
    /// (every block the range touches is new) if it fits; else only the blocks the range
    /// would newly allocate, and, with `partial`, as long a prefix as fits. Returns the length
    /// that may be written.
    pub fn reserve_range(
        &mut self,
        ctx: &Ctx,
        t: &Tracked,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        partial: bool,
    ) -> Result<u64, Errno> {
        let subjects = &[Subject::User(t.st.st_uid), Subject::Project(t.tag.project)];
        let block = block_size(&t.st);
        let (r, n) = 'granted: {
            if let Ok(r) = self.reservation(ctx, subjects, span(offset, len, block), 0, false) {
                break 'granted (r, len);
            }
            let need_all = new_blocks(fd, offset, len, block)?;
            if let Ok(r) = self.reservation(ctx, subjects, need_all, 0, false) {
                break 'granted (r, len);
            }
            if !partial {
                return Err(Errno(libc::EDQUOT));
            }
            let r = self.reservation(ctx, subjects, need_all, 0, true)?;
            // The longest prefix whose new blocks fit in what was granted.
            let (mut lo, mut hi) = (0u64, len);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if new_blocks(fd, offset, mid, block)? <= r.bytes { lo = mid } else { hi = mid - 1 }
            }
            if lo == 0 {
                return Err(Errno(libc::EDQUOT));
            }
            (r, lo)
        };
        self.reservations.push(r);
        Ok(n)
    }

    /// Writes the records, in the order they were asked for; EIO (the ledger is then
    /// poisoned) if one cannot be made durable.
    fn write_records(&mut self) -> Result<(), Errno> {
        for rec in std::mem::take(&mut self.records) {
            match rec {
                Record::Touch { key, before, birth } => self.ch.touch(key, before, birth)?,
                Record::DirDirty(dir) => self.ch.dir_dirty(dir)?,
            }
        }
        Ok(())
    }

    /// Runs the operation: the records first (on failure nothing runs), then `call` (the
    /// backing call, and what the ledger must learn of its result while the locks are held:
    /// `charge_new`, `gone`, `moved`), then every tracked inode is settled — also when `call`
    /// failed part-way — and the reservations, locks and epoch lock are given back.
    pub fn run<T>(mut self, call: impl FnOnce(&Op<'a>) -> Result<T, Errno>) -> Result<T, Errno> {
        self.write_records()?;
        let r = call(&self);
        self.settle();
        r
    }

    /// Finishes an operation whose change the kernel has already made (a reopen of an
    /// unlinked file, its last close), so cannot be refused: the records are written (a
    /// failure, possible only once the ledger is poisoned and commits nothing more, is logged
    /// as failing to log `what`), then `done` runs and the tracked inodes are settled.
    pub fn finish_made(mut self, what: &str, done: impl FnOnce(&Op<'a>)) {
        if let Err(e) = self.write_records() {
            tracing::error!(error = %e, "cannot log {what}");
        }
        done(&self);
        self.settle();
    }

    /// After the call: charges what each tracked inode holds now, and for a regular file the
    /// extent-tree block its data will need at writeback (`index_block_ahead`).
    fn settle(&self) {
        for (t, fd) in &self.settles {
            match sys::stat_fd(*fd) {
                Ok(st) => {
                    let mut after = Charge::of(&st, t.tag.project);
                    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                        after.bytes += index_block_ahead(*fd, &st);
                    }
                    self.ch.apply(t.key.backing, Some(t.before), Some(after));
                    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                        self.ch.remember(t.key, Some(after), t.tag.birth);
                    }
                }
                Err(e) => {
                    tracing::error!(ino = t.key.ino, error = %e, "cannot stat after a change; the ledger may drift");
                }
            }
        }
    }

    /// In the call: charges an inode just created (`fd`: any descriptor of it) to `project`
    /// and tags it. Returns its stat after tagging and its handle.
    pub fn charge_new(
        &self,
        backing: BackingIndex,
        fd: BorrowedFd<'_>,
        project: u32,
    ) -> Result<(libc::stat, Handle), Errno> {
        let tag = Tag { project, birth: self.ch.epoch() };
        tag::write_fd(fd, tag)?;
        // Tagged before it is counted: a tag that needs an xattr block is charged too.
        let st = sys::stat_fd(fd)?;
        self.ops.st.nodes.stripes().tag_written(backing, st.st_ino);
        let handle = sys::fd_to_handle(fd)?;
        let key = InodeRef { backing, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        self.ch.born(key);
        self.ch.apply(backing, None, Some(Charge::of(&st, project)));
        Ok((st, handle))
    }

    /// In the call: victim `v` (tracked with `track_at`) just lost a link. If that was its
    /// last link (a directory has only one), its usage goes — at once, or at its last close if
    /// it is still open. True when it went at once (released, not pinned).
    pub fn gone(&self, v: &Tracked) -> bool {
        if !(is_dir(&v.st) || v.st.st_nlink <= 1) {
            return false;
        }
        if self.ops.backing(v.key.backing).is_err() {
            return false;
        }
        if self.ops.st.opens.is_open(v.key) {
            self.ch.pin(v.key, v.before, v.tag.birth);
            false
        } else {
            self.ch.apply(v.key.backing, Some(v.before), None);
            self.ch.remember(v.key, None, v.tag.birth);
            if !is_dir(&v.st) {
                self.ops.pins().let_go(v.key);
            }
            true
        }
    }

    /// In the call: `t` (tracked) now holds `after` (re-tagged into another project).
    pub fn moved(&self, t: &Tracked, after: Charge) {
        self.ch.apply(t.key.backing, Some(t.before), Some(after));
        if self.ch.remembered(t.key).is_some() {
            self.ch.remember(t.key, Some(after), t.tag.birth);
        }
    }

    /// In `finish_made`: regular file `r` has no links and is open, charged `charge` since
    /// epoch `since` (see `Change::pin`), and is charged it now.
    pub fn pinned(&self, r: InodeRef, charge: Charge, since: u64) {
        self.ch.pin(r, charge, since);
        self.ch.apply(r.backing, None, Some(charge));
    }

    /// Pinned file `r`'s last close: forgets it and returns the charge it still holds and the
    /// epoch since which it is charged (see `Change::unpin`), to log and take off.
    pub fn unpin(&self, r: InodeRef) -> Option<(Charge, u64)> {
        self.ch.unpin(r)
    }

    /// In `finish_made`: `r`'s charge `before` is gone.
    pub fn released(&self, r: InodeRef, before: Charge) {
        self.ch.apply(r.backing, Some(before), None);
    }
}
