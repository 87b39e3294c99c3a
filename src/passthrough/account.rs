//! How operations settle their charges with the ledger (docs/design.md §9).
//!
//! An operation that may change an existing inode's charge holds a `Change` and the inode's
//! stripe lock, calls `track` before the backing call (which logs the inode's charge before the
//! change, once per epoch) and `settle` after it (which charges whatever fstat then says, also
//! when the call failed half-way). Directories are tracked too: adding an entry can grow them.

use std::os::fd::BorrowedFd;

use super::Passthrough;
use crate::backing::{Errno, sys};
use crate::inode::Inode;
use crate::ledger::Change;
use crate::ledger::tag::{self, Tag};
use crate::ledger::wal::InodeRef;
use crate::quota::enforce::Reservation;
use crate::quota::{Charge, Subject};

/// The block size assumed when a file system does not say (ext4's default).
const BLOCK: u64 = 4096;

/// The allocation unit of the file system `st` came from (ext4 reports its block size as
/// `st_blksize`: 1024, 2048 or 4096). Counting in any larger unit undercounts holes: a chunk
/// holding one allocated block would count as allocated whole.
pub(super) fn block_size(st: &libc::stat) -> u64 {
    u64::try_from(st.st_blksize).ok().filter(|b| b.is_power_of_two() && *b >= 512).unwrap_or(BLOCK)
}

/// Bytes of the `block`-sized blocks `[offset, offset + len)` touches.
pub(super) fn span(offset: u64, len: u64, block: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let start = offset / block * block;
    let end = (offset + len).div_ceil(block) * block;
    end - start
}

/// Bytes of the `block`-sized blocks in `[offset, offset + len)` that are not allocated yet
/// (holes and the part past the end of file), from SEEK_DATA / SEEK_HOLE on the backing.
fn new_blocks(fd: BorrowedFd<'_>, offset: u64, len: u64, block: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Ok(0);
    }
    let start = offset / block * block;
    let end = (offset + len).div_ceil(block) * block;
    let mut pos = start;
    let mut holes = 0;
    while pos < end {
        let data = match sys::lseek(fd, pos as i64, libc::SEEK_DATA) {
            Ok(d) => d as u64,
            Err(Errno(libc::ENXIO)) => end, // no data from here on
            Err(e) => return Err(e),
        };
        let data = data.max(pos);
        if data >= end {
            holes += end - pos;
            break;
        }
        holes += data / block * block - pos.min(data / block * block);
        pos = match sys::lseek(fd, data as i64, libc::SEEK_HOLE) {
            Ok(h) => (h as u64).div_ceil(block) * block,
            Err(e) => return Err(e),
        };
    }
    Ok(holes)
}

/// The bytes of the extent-tree block a regular file's data will need once delayed allocation
/// writes it back, charged ahead by `settle` so that the limit binds it. ext4 keeps up to four
/// extents in the inode (an extent covers at most 32,768 contiguous blocks); a fifth needs a
/// tree block, which writeback allocates after the write that made it necessary was settled
/// and checked. Without charging it ahead a tenant writing files of five separate pieces
/// stored a fifth more than its hard limit (`hostile_attack_extent_overshoot`). The file's
/// data ranges are read with SEEK_DATA / SEEK_HOLE, five at most. Whether the block is
/// already there is not visible, so a file that has one is charged one block too many until
/// the next checkpoint's reconcile, which charges what writeback really allocated (§9.5):
/// the ledger is exact at every checkpoint and at every `check`, and over by at most one
/// block per fragmented file written since the last checkpoint in between.
fn index_block_ahead(fd: BorrowedFd<'_>, st: &libc::stat) -> u64 {
    const INODE_EXTENTS: u64 = 4;
    const MAX_EXTENT_BLOCKS: u64 = 32_768;
    let block = block_size(st);
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size <= INODE_EXTENTS * block {
        return 0; // four blocks or fewer: four extents at most
    }
    let (mut pos, mut extents) = (0u64, 0u64);
    while pos < size && extents <= INODE_EXTENTS {
        let Ok(data) = sys::lseek(fd, pos as i64, libc::SEEK_DATA) else { break };
        let Ok(hole) = sys::lseek(fd, data, libc::SEEK_HOLE) else { break };
        let (data, hole) = (data as u64, hole as u64);
        if hole <= data {
            break;
        }
        let blocks = hole.div_ceil(block) - data / block;
        extents += blocks.div_ceil(MAX_EXTENT_BLOCKS);
        pos = hole;
    }
    if extents > INODE_EXTENTS { block } else { 0 }
}

/// An inode whose charge an operation is changing.
pub(super) struct Tracked {
    pub key: InodeRef,
    pub tag: Tag,
    pub before: Charge,
    pub st: libc::stat,
}

pub(super) fn untagged(key: InodeRef) -> Tag {
    tracing::warn!(ino = key.ino, "inode without a quotafs tag; charging it to project 0");
    Tag { project: 0, birth: 0 }
}

impl Passthrough {
    /// The tag of `inode`, from its cache while no tag in its stripe was written since the
    /// cache was filled, else read through `fd` (any descriptor of it). A stale cached project
    /// would log wrong "before" values, which recovery then replays (design §9.8).
    pub(super) fn tag_of(&self, inode: &Inode, fd: BorrowedFd<'_>) -> Result<Tag, Errno> {
        let stamp = self.ledger.tag_stamp(inode.ino);
        if let Some((t, s)) = *inode.tag.lock()
            && s == stamp
        {
            return Ok(t);
        }
        let t = tag::read_fd(fd)?.unwrap_or_else(|| untagged(inode.key()));
        *inode.tag.lock() = Some((t, stamp));
        Ok(t)
    }

    /// Before changing an existing inode (stripe lock held): its charge now, logged if this is
    /// its first change in the epoch.
    pub(super) fn track(&self, ch: &Change<'_>, inode: &Inode, fd: BorrowedFd<'_>) -> Result<Tracked, Errno> {
        let tag = self.tag_of(inode, fd)?;
        let st = sys::stat_fd(fd)?;
        if st.st_nlink == 0 && !self.is_open(inode.key()) {
            // Removed after the kernel resolved it (a chown racing an unlink, an O_PATH
            // descriptor): the removal charged it off, and a deleted inode has nothing left to
            // change. An unlinked *open* file stays charged until its last close (pinned).
            return Err(Errno(libc::ENOENT));
        }
        // What the ledger holds for it, if known; a block ext4 allocated at writeback since is
        // then charged by this change.
        let before = ch.remembered(inode.key()).unwrap_or(Charge::of(&st, tag.project));
        ch.touch(inode.key(), before, tag.birth)?;
        Ok(Tracked { key: inode.key(), tag, before, st })
    }

    /// Like `track`, for the entry `name` of directory `dir`, which the inode table may not
    /// hold (the victim of an unlink or of a replacing rename).
    pub(super) fn track_at(
        &self,
        ch: &Change<'_>,
        backing: u8,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
    ) -> Result<Tracked, Errno> {
        let st = sys::stat_at(dir, name)?;
        let handle = sys::name_to_handle(dir, name)?;
        let key = InodeRef { backing, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        let tag = tag::read_at(dir, name)?.unwrap_or_else(|| untagged(key));
        let before = ch.remembered(key).unwrap_or(Charge::of(&st, tag.project));
        ch.touch(key, before, tag.birth)?;
        Ok(Tracked { key, tag, before, st })
    }

    /// After the change: charge what the inode holds now, and for a regular file the
    /// extent-tree block its data will need at writeback (`index_block_ahead`).
    pub(super) fn settle(&self, ch: &Change<'_>, t: &Tracked, fd: BorrowedFd<'_>) {
        match sys::stat_fd(fd) {
            Ok(st) => {
                let mut after = Charge::of(&st, t.tag.project);
                if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                    after.bytes += index_block_ahead(fd, &st);
                }
                ch.apply(t.key.backing, Some(t.before), Some(after));
                if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                    ch.remember(t.key, Some(after), t.tag.birth);
                }
            }
            Err(e) => tracing::error!(ino = t.key.ino, error = %e, "cannot stat after a change; the ledger may drift"),
        }
    }

    /// Charges an inode just created in `dir` (whose project it inherits) and tags it. `fd`
    /// is any descriptor of the new inode. Returns its stat after tagging and its handle.
    pub(super) fn charge_new(
        &self,
        ch: &Change<'_>,
        backing: u8,
        fd: BorrowedFd<'_>,
        project: u32,
    ) -> Result<(libc::stat, crate::backing::Handle), Errno> {
        let tag = Tag { project, birth: ch.epoch() };
        tag::write_fd(fd, tag)?;
        // Tagged before it is counted: a tag that needs an xattr block is charged too.
        let st = sys::stat_fd(fd)?;
        self.ledger.tag_written(st.st_ino);
        let handle = sys::fd_to_handle(fd)?;
        let key = InodeRef { backing, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        ch.born(key);
        ch.apply(backing, None, Some(Charge::of(&st, project)));
        Ok((st, handle))
    }

    /// Reserves an allocation of `want` bytes and `inodes` inodes for `subjects` (see
    /// `Enforcer::reserve`); EDQUOT when it does not fit.
    pub(super) fn reserve(
        &self,
        ctx: &super::Ctx,
        subjects: &[Subject],
        want: u64,
        inodes: u64,
        partial: bool,
    ) -> Result<Reservation<'_>, Errno> {
        self.ledger.enforcer().reserve(self.ledger.table(), ctx.uid, subjects, want, inodes, partial)
    }

    /// Reserves room for directory `dir` (tracked) to grow by one block, against its owner's
    /// and its project's limits: ext4 charges a directory's blocks to its owner, and so does
    /// the ledger, whoever adds the entry. Call before any operation that adds a name to
    /// `dir` (creation, link, rename to a new name); EDQUOT, to the caller, when the owner or
    /// the project has no room for the block, so another tenant cannot push them past a
    /// limit by filling their directory with names (ext4 refuses whoever grows a directory of
    /// an owner over quota). Root and exempt callers are never refused.
    pub(super) fn reserve_dir_growth(&self, ctx: &super::Ctx, dir: &Tracked) -> Result<Reservation<'_>, Errno> {
        let block = block_size(&dir.st);
        let subjects = [Subject::User(dir.st.st_uid), Subject::Project(dir.tag.project)];
        self.ledger.enforcer().reserve_bytes(self.ledger.table(), ctx.uid, &subjects, block)
    }

    /// Reserves for writing `len` bytes at `offset` of open file `fd`, tracked as `t` (charged
    /// to its owner and project, allocated in its file system's blocks):
    /// the worst case (every block the range touches is new) if it fits; else only the blocks
    /// the range would newly allocate, and, with `partial`, as long a prefix as fits. Returns
    /// the reservation and the length that may be written.
    pub(super) fn reserve_range(
        &self,
        ctx: &super::Ctx,
        t: &Tracked,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        partial: bool,
    ) -> Result<(Reservation<'_>, u64), Errno> {
        let subjects = &[Subject::User(t.st.st_uid), Subject::Project(t.tag.project)];
        let block = block_size(&t.st);
        if let Ok(r) = self.reserve(ctx, subjects, span(offset, len, block), 0, false) {
            return Ok((r, len));
        }
        let need_all = new_blocks(fd, offset, len, block)?;
        if let Ok(r) = self.reserve(ctx, subjects, need_all, 0, false) {
            return Ok((r, len));
        }
        if !partial {
            return Err(Errno(libc::EDQUOT));
        }
        let r = self.reserve(ctx, subjects, need_all, 0, true)?;
        // The longest prefix whose new blocks fit in what was granted.
        let (mut lo, mut hi) = (0u64, len);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if new_blocks(fd, offset, mid, block)? <= r.bytes { lo = mid } else { hi = mid - 1 }
        }
        if lo == 0 {
            return Err(Errno(libc::EDQUOT));
        }
        Ok((r, lo))
    }

    /// Counts an open of `inode` (called once per open, before the reply; `fd` is any
    /// descriptor of the inode, `O_PATH` will do: it is only stat'ed and its tag read). Under the inode's stripe lock, like every other step of the pin protocol:
    ///
    /// * linked, or already open: counted, nothing else;
    /// * no links and no open: its last unlink found it closed and charged it off (an open
    ///   that the kernel resolved before the unlink, or a reopen through `/proc/self/fd` of an
    ///   `O_PATH` descriptor, which FUSE does not count as an open). Its blocks are still
    ///   allocated, and whatever this open does to it is settled against its charge: it is
    ///   charged again (*re-pinned*) and its last close releases it, once.
    ///
    /// So, for a regular file, "no links and open" always implies "pinned".
    pub(super) fn opened(&self, inode: &Inode, fd: BorrowedFd<'_>) {
        let key = inode.key();
        crate::failpoint::OPEN_COUNTING.hit();
        let mut ch = None;
        loop {
            let lock = self.ledger.lock_inode(key.ino);
            let released =
                !self.is_open(key) && !self.ledger.is_pinned(key) && sys::stat_fd(fd).is_ok_and(|st| st.st_nlink == 0);
            if released && ch.is_none() {
                // A usage change needs the epoch lock, which is taken before a stripe lock.
                drop(lock);
                ch = Some(self.ledger.change());
                continue;
            }
            *self.open_count.entry(key).or_insert(0) += 1;
            if released && let Some(ch) = &ch {
                self.repin(ch, inode, fd);
            }
            return;
        }
    }

    /// Charges again an unlinked inode whose charge went at its last unlink, now that an open
    /// holds it (see `opened`; stripe lock held). Logged like a change: the `Touch` says it was
    /// uncharged before (charged since this epoch), so a crash, which frees it, takes nothing
    /// back that the snapshot did not charge.
    fn repin(&self, ch: &Change<'_>, inode: &Inode, fd: BorrowedFd<'_>) {
        let key = inode.key();
        let (tag, st) = match self.tag_of(inode, fd).and_then(|t| sys::stat_fd(fd).map(|st| (t, st))) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(ino = key.ino, error = %e, "cannot charge a reopened unlinked file; the ledger may drift");
                return;
            }
        };
        let charge = Charge::of(&st, tag.project);
        let since = ch.epoch();
        if let Err(e) = ch.touch(key, charge, since) {
            // Only a poisoned ledger refuses: nothing it holds is committed any more.
            tracing::error!(ino = key.ino, error = %e, "cannot log the charge of a reopened unlinked file");
        }
        ch.pin(key, charge, since);
        ch.apply(key.backing, None, Some(charge));
        tracing::debug!(
            ino = key.ino,
            bytes = charge.bytes,
            "reopened unlinked file charged again until its last close"
        );
    }

    /// Called at release. The last close of a pinned inode (unlinked while open, or reopened
    /// after its unlink) takes its charge off, logged first; under its stripe lock, so that no
    /// open or unlink of it interleaves.
    pub(super) fn closed(&self, key: InodeRef) {
        let mut ch = None;
        loop {
            let lock = self.ledger.lock_inode(key.ino);
            let last = match self.open_count.get(&key) {
                Some(n) => *n <= 1,
                None => return,
            };
            if last && ch.is_none() && self.ledger.is_pinned(key) {
                drop(lock);
                ch = Some(self.ledger.change());
                continue;
            }
            if last {
                self.open_count.remove(&key);
            } else if let Some(mut n) = self.open_count.get_mut(&key) {
                *n -= 1;
            }
            if last
                && let Some(ch) = &ch
                && let Some((before, since)) = ch.unpin(key)
            {
                // Logged in this epoch too: the snapshot may have been taken since the unlink.
                if let Err(e) = ch.touch(key, before, since) {
                    tracing::error!(ino = key.ino, error = %e, "cannot log the last close of an unlinked file");
                }
                ch.apply(key.backing, Some(before), None);
                self.let_go(key);
            }
            return;
        }
    }

    /// Call when inode `key`'s charge is released for good (its last link and last open are
    /// gone): the daemon's descriptor cache lets go of it, so that ext4 frees its blocks now,
    /// as the ledger just did, rather than when the kernel forgets the node (a tenant holding
    /// an `O_PATH` descriptor of it on the mount could otherwise keep any number of deleted,
    /// uncharged files allocated). A later reopen by handle then finds it gone (ESTALE),
    /// unless something else still holds it, in which case `opened` charges it again.
    pub(super) fn let_go(&self, key: InodeRef) {
        if let Ok(b) = self.backing(crate::backing::BackingIndex(key.backing))
            && let Ok(id) = crate::inode::node_id(b, key.ino)
        {
            self.inodes.drop_fd(id, key.generation);
        }
    }

    /// True if inode `key` has an open file handle. Exact under the inode's stripe lock.
    pub(super) fn is_open(&self, key: InodeRef) -> bool {
        self.open_count.get(&key).is_some_and(|n| *n > 0)
    }

    /// An `O_PATH` descriptor of `name` in `dir`, for tagging a just-created inode.
    pub(super) fn entry_fd(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<std::os::fd::OwnedFd, Errno> {
        sys::open_entry(dir, name)
    }
}
