//! The pieces of accounting `accounting::Op` is built from (docs/design.md §9): how much a
//! range allocates, the extent-tree block charged ahead, and the pin protocol of opens and
//! last closes of unlinked files (`Pins`).

use std::os::fd::BorrowedFd;

use super::accounting::Op;
use super::ops::Pins;
use crate::backing::{Errno, sys};
use crate::ids::InodeRef;
use crate::inode::Inode;
use crate::quota::Charge;
use crate::tag::Tag;

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
pub(super) fn new_blocks(fd: BorrowedFd<'_>, offset: u64, len: u64, block: u64) -> Result<u64, Errno> {
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
pub(super) fn index_block_ahead(fd: BorrowedFd<'_>, st: &libc::stat) -> u64 {
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

pub(super) fn untagged(key: InodeRef) -> Tag {
    tracing::warn!(ino = key.ino, "inode without a quotafs tag; charging it to project 0");
    Tag { project: 0, birth: 0 }
}

impl<'a> Pins<'a> {
    /// Counts an open of `inode` (called once per open, before the reply; `fd` is any
    /// descriptor of the inode, `O_PATH` will do: it is only stat'ed and its tag read). Under
    /// the inode's stripe lock, like every other step of the pin protocol:
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
        let released = || {
            !self.st.opens.is_open(key)
                && !self.be.ledger.is_pinned(key)
                && sys::stat_fd(fd).is_ok_and(|st| st.st_nlink == 0)
        };
        {
            let _lock = self.st.nodes.stripes().lock(key.backing, key.ino);
            if !released() {
                self.st.opens.count_open(key);
                return;
            }
        }
        // A usage change: the epoch lock is taken before the stripe lock, and the state
        // looked at again under both.
        let op = self.begin(&[(key.backing, key.ino)]);
        let released = released();
        self.st.opens.count_open(key);
        if released {
            self.repin(op, inode, fd);
        }
    }

    /// Charges again an unlinked inode whose charge went at its last unlink, now that an open
    /// holds it (see `opened`). Logged like a change: the `Touch` says it was uncharged before
    /// (charged since this epoch), so a crash, which frees it, takes nothing back that the
    /// snapshot did not charge.
    fn repin(&self, mut op: Op<'a>, inode: &Inode, fd: BorrowedFd<'_>) {
        let key = inode.key();
        let (tag, st) = match self.tag_of(inode, fd).and_then(|t| sys::stat_fd(fd).map(|st| (t, st))) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(ino = key.ino, error = %e, "cannot charge a reopened unlinked file; the ledger may drift");
                return;
            }
        };
        let charge = Charge::of(&st, tag.project);
        let since = op.epoch();
        op.log_charge(key, charge, since);
        op.finish_made("the charge of a reopened unlinked file", |op| op.pinned(key, charge, since));
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
        {
            let _lock = self.st.nodes.stripes().lock(key.backing, key.ino);
            let Some(last) = self.st.opens.is_last(key) else { return };
            if !(last && self.be.ledger.is_pinned(key)) {
                self.st.opens.count_close(key);
                return;
            }
        }
        // A usage change: the epoch lock is taken before the stripe lock, and the state
        // looked at again under both.
        let mut op = self.begin(&[(key.backing, key.ino)]);
        if self.st.opens.count_close(key) != Some(true) {
            return;
        }
        if let Some((before, since)) = op.unpin(key) {
            // Logged in this epoch too: the snapshot may have been taken since the unlink.
            op.log_charge(key, before, since);
            op.finish_made("the last close of an unlinked file", |op| {
                op.released(key, before);
                self.let_go(key);
            });
        }
    }

    /// Call when inode `key`'s charge is released for good (its last link and last open are
    /// gone): the daemon's descriptor cache lets go of it, so that ext4 frees its blocks now,
    /// as the ledger just did, rather than when the kernel forgets the node (a tenant holding
    /// an `O_PATH` descriptor of it on the mount could otherwise keep any number of deleted,
    /// uncharged files allocated). A later reopen by handle then finds it gone (ESTALE),
    /// unless something else still holds it, in which case `opened` charges it again.
    pub(super) fn let_go(&self, key: InodeRef) {
        if let Ok(b) = self.backing(key.backing)
            && let Ok(id) = crate::inode::node_id(b, key.ino)
        {
            self.st.nodes.drop_fd(id, key.generation);
        }
        self.st.evictions.forget(key);
    }
}

/// An `O_PATH` descriptor of `name` in `dir`, for tagging a just-created inode.
pub(super) fn entry_fd(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<std::os::fd::OwnedFd, Errno> {
    sys::open_entry(dir, name)
}
