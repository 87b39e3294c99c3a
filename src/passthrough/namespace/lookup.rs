//! LOOKUP: a name in a directory (routed names through the router), `.` and `..` as NFS
//! export asks for them, and a node id the table does not hold, opened by inode number and
//! served only if it lies beneath the backing root.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::super::Entry;
use super::super::ops::Names;
use super::is_dir;
use crate::backing::{Backing, BackingIndex, Errno, entry_name, sys};
use crate::ids::InodeRef;
use crate::inode::{self, Inode, ROOT_ID};
use crate::passthrough::router::Place;
use crate::tag;

impl<'a> Names<'a> {
    /// Looks `name` up in directory `parent`: one lookup reference on success.
    /// `.` and `..` are answered too (NFS export asks for them).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, Errno> {
        if name.as_bytes() == b"." {
            // NFS export reopening a handle: any node id, of any type, with or without a
            // prior lookup (after a restart too).
            return match self.resolve(parent) {
                Ok((inode, fd)) => {
                    let st = sys::stat_fd(fd.as_fd())?;
                    self.register(self.backing(inode.backing)?, &st, inode.handle)
                }
                Err(Errno(libc::ESTALE)) => self.lookup_node(parent),
                Err(e) => Err(e),
            };
        }
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let name = match name.as_bytes() {
            b".." if parent == ROOT_ID => c".".to_owned(),
            b".." => {
                if let Some(e) = self.routed().lookup_routed_dotdot(&dir, dirfd.as_fd())? {
                    return Ok(e);
                }
                c"..".to_owned()
            }
            _ => entry_name(name)?,
        };
        self.refuse_private(&dir, &name, libc::ENOENT)?;
        let place = self.be.router.place(&dir, &name);
        if let Place::Routed(r) = &place {
            return self.routed().lookup_routed(r);
        }
        let e = self.lookup_at(dir.backing, dirfd.as_fd(), &name)?;
        self.routed().mark_child(&place, &e);
        Ok(e)
    }

    /// LOOKUP(id, ".") for a node id not in the table: open the ext4 inode by number (a
    /// generation of 0 skips ext4's check; the kernel compares our generation with the one in
    /// the NFS handle and answers ESTALE itself on a mismatch). A deleted inode is ESTALE; an
    /// inode outside the backing root is ESTALE too, never served.
    pub(in crate::passthrough) fn lookup_node(&self, id: u64) -> Result<Entry, Errno> {
        let stale = Errno(libc::ESTALE);
        let backing = self.backing(inode::backing_of(id))?;
        if inode::is_alias(id) {
            // Aliases live only while the kernel holds them in this daemon's table.
            return Err(stale);
        }
        let ino = if id == ROOT_ID { backing.root_ino } else { id & inode::INO_MASK };
        let (fd, st) = self.open_live(backing, ino)?;
        if inode::node_id(backing, st.st_ino)? != id {
            return Err(stale);
        }
        let handle = sys::fd_to_handle(fd.as_fd())?;
        self.register(backing, &st, handle)
    }

    /// The node `id` of an open file an earlier process recorded (docs/design.md §18.1): the
    /// inode `key` names, if it still exists with that generation, held under exactly `id`,
    /// which may be an alias (the kernel goes on naming the file by it). ESTALE otherwise.
    pub(in crate::passthrough) fn adopt_recorded(&self, id: u64, key: InodeRef) -> Result<Arc<Inode>, Errno> {
        let stale = Errno(libc::ESTALE);
        if inode::backing_of(id) != key.backing || id & inode::INO_MASK != key.ino {
            return Err(stale);
        }
        let backing = self.backing(key.backing)?;
        let (fd, st) = self.open_live(backing, key.ino)?;
        let handle = sys::fd_to_handle(fd.as_fd())?;
        if handle.ext4_generation() != Some(key.generation) {
            return Err(stale);
        }
        Ok(self.st.nodes.hold(id, backing.index, st.st_ino, handle, st.st_mode & libc::S_IFMT))
    }

    /// Ext4 inode `ino` of `backing`, opened `O_PATH` by number: ESTALE unless it has a link
    /// and lies beneath the backing root.
    fn open_live(&self, backing: &Backing, ino: u64) -> Result<(std::os::fd::OwnedFd, libc::stat), Errno> {
        let stale = Errno(libc::ESTALE);
        let ino32 = u32::try_from(ino).map_err(|_| stale)?;
        let fd = match backing.open_number(ino32, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno(libc::ESTALE | libc::ENOENT | libc::EINVAL)) => return Err(stale),
            Err(e) => return Err(e),
        };
        let st = sys::stat_fd(fd.as_fd())?;
        if st.st_nlink == 0 || st.st_ino != ino {
            return Err(stale);
        }
        if !self.beneath_root(backing, fd.as_fd(), &st)? {
            tracing::warn!(ino, "refusing a handle for an inode outside the backing root");
            return Err(stale);
        }
        Ok((fd, st))
    }

    /// Whether the inode `fd` (with stat `st`) lies beneath `backing`'s root. A backing that is
    /// its file system's root holds everything on it. Otherwise a directory is walked up by
    /// `..`; a non-directory has no way up, so it must carry our tag (every inode in the tree
    /// is tagged at first mount, and every inode made through the mount at birth).
    ///
    /// The ledger's journal directory and everything in it are not beneath the root in this
    /// sense: they are never served.
    fn beneath_root(&self, backing: &Backing, fd: BorrowedFd<'_>, st: &libc::stat) -> Result<bool, Errno> {
        let journal = self.be.ledger.journal_dir_ino(backing.index);
        if st.st_ino == backing.root_ino {
            return Ok(true);
        }
        if !is_dir(st) {
            return Ok(backing.root_is_fs_root() || tag::read_fd(fd)?.is_some());
        }
        if Some(st.st_ino) == journal {
            return Ok(false);
        }
        let mut cur = sys::openat_dotdot(fd)?;
        for _ in 0..4096 {
            let up = sys::stat_fd(cur.as_fd())?;
            if up.st_dev != backing.dev || Some(up.st_ino) == journal {
                return Ok(false);
            }
            if up.st_ino == backing.root_ino {
                return Ok(true);
            }
            let next = sys::openat_dotdot(cur.as_fd())?;
            if sys::stat_fd(next.as_fd())?.st_ino == up.st_ino {
                return Ok(false); // reached the file system's root
            }
            cur = next;
        }
        Ok(false)
    }

    /// Whether node `id` lies in the tree of directory node `top` (`Passthrough::in_tree`).
    pub fn in_tree(&self, id: u64, top: u64, file_in: &dyn Fn(&libc::stat, u32) -> bool) -> Result<bool, Errno> {
        if id == top {
            return Ok(true);
        }
        let (node, fd) = self.resolve(id)?;
        let st = sys::stat_fd(fd.as_fd())?;
        if !is_dir(&st) || node.backing != inode::backing_of(top) {
            let project = self.tag_of(&node, fd.as_fd())?.project;
            return Ok(file_in(&st, project));
        }
        let (_, top_fd) = self.resolve(top)?;
        let top_st = sys::stat_fd(top_fd.as_fd())?;
        let mut cur = sys::openat_dotdot(fd.as_fd())?;
        for _ in 0..4096 {
            let up = sys::stat_fd(cur.as_fd())?;
            if up.st_dev != top_st.st_dev {
                return Ok(false);
            }
            if up.st_ino == top_st.st_ino {
                return Ok(true);
            }
            let next = sys::openat_dotdot(cur.as_fd())?;
            if sys::stat_fd(next.as_fd())?.st_ino == up.st_ino {
                return Ok(false); // reached the file system's root
            }
            cur = next;
        }
        Ok(false)
    }

    pub(in crate::passthrough) fn lookup_at(
        &self,
        backing: BackingIndex,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<Entry, Errno> {
        let backing = self.backing(backing)?;
        // stat and handle are two calls; a rename racing between them could pair one file's
        // attributes with another's handle. The ext4 handle carries the inode number: retry
        // until both agree.
        for _ in 0..8 {
            let st = sys::stat_at(dirfd, name)?;
            let handle = sys::name_to_handle(dirfd, name)?;
            if handle.ext4_ino().is_none_or(|ino| u64::from(ino) == st.st_ino) {
                return self.register(backing, &st, handle);
            }
        }
        Err(Errno(libc::EAGAIN))
    }
}
