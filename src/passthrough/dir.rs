//! Directories: readdir(plus) and fsyncdir, both stateless.
//!
//! The stream offset the kernel sees is the backing's own `d_off` cookie, so a reader that
//! stops and resumes (or seeks back to a cookie it was given) continues exactly where ext4
//! would. `d_ino` is translated to node ids, so it always equals `st_ino` from getattr.

use std::ffi::{CString, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::UNIX_EPOCH;

use crate::wire::{FileAttr, FileType};

use super::Entry;
use super::ops::Dirs;
use crate::backing::sys::DirEntry;
use crate::backing::{Errno, sys};
use crate::inode::{self, ROOT_ID};
use crate::passthrough::router::Listed;

/// Offsets from here up name routed entries (see `readdir`); ext4's own cookies stay below
/// except its end-of-directory mark, `i64::MAX`.
const ROUTED_COOKIES: i64 = i64::MAX - 1024;

fn routed_names_hide(routed: &[Listed], name: &CString) -> bool {
    routed.iter().any(|r| &r.name == name)
}

/// One entry of a readdir reply. `entry` is set for readdirplus entries other than `.` and
/// `..`; it holds a lookup reference that the caller must give back (`forget`) if the entry
/// does not make it into the reply.
#[derive(Debug)]
pub struct DirEntryOut {
    pub ino: u64,
    pub next_offset: i64,
    pub kind: FileType,
    pub name: CString,
    pub entry: Option<Entry>,
}

fn dt_kind(dt: u8) -> FileType {
    match dt {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// Attributes for `.`/`..` in readdirplus: the kernel never links those entries, it only
/// needs the inode number and type.
pub fn dot_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

impl<'a> Dirs<'a> {
    /// fsync of a directory, by handle (directories have no open state: see `readdir`).
    pub fn fsyncdir(&self, id: u64, datasync: bool) -> Result<(), Errno> {
        let fd = self.open_dir(id)?;
        sys::fsync(fd.as_fd(), datasync)
    }

    fn open_dir(&self, id: u64) -> Result<std::os::fd::OwnedFd, Errno> {
        let inode = self.inode(id)?;
        if !inode.is_dir() {
            return Err(Errno(libc::ENOTDIR));
        }
        self.backing(inode.backing)?.open_handle(&inode.handle, libc::O_RDONLY | libc::O_DIRECTORY)
    }

    /// Streams the entries of directory `id` from the backing cookie `offset` into `emit`,
    /// which returns true when the reply is full (the entry was not taken). With `plus`, each
    /// entry other than `.`/`..` is looked up.
    ///
    /// Stateless: each call opens the directory by handle and seeks to `offset`, a `d_off`
    /// cookie ext4 gave out earlier (stable for the directory's lifetime, which NFS relies on
    /// too). The front answers OPENDIR with ENOSYS, so the kernel sends no OPENDIR/RELEASEDIR
    /// round trips and caches readdir results itself (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR),
    /// invalidating them whenever the directory changes through the mount.
    pub fn readdir(
        &self,
        id: u64,
        offset: i64,
        plus: bool,
        mut emit: impl FnMut(&DirEntryOut) -> bool,
    ) -> Result<(), Errno> {
        let backing = self.backing(inode::backing_of(id))?;
        let dir = self.inode(id)?;
        // Routed directories that live in this one on other backings: listed after ext4's
        // entries, with cookies of their own at the top of the offset range; a same-named
        // entry of this backing is shadowed.
        let routed = self.be.router.listing(&dir);
        if offset == i64::MAX {
            return self.emit_routed(id, &routed, 0, plus, emit); // ext4's end-of-directory mark
        }
        if offset >= ROUTED_COOKIES {
            return self.emit_routed(id, &routed, (offset - ROUTED_COOKIES) as usize, plus, emit);
        }
        let fd = self.open_dir(id)?;
        if offset != 0 {
            sys::lseek(fd.as_fd(), offset, libc::SEEK_SET)?;
        }
        // About one kernel reply's worth of entries per getdents (they are of similar size);
        // plus entries are much larger in the reply, so read fewer.
        let mut buf = vec![0u8; if plus { 4096 } else { 8192 }];
        loop {
            let batch = sys::read_dir(fd.as_fd(), &mut buf)?;
            if batch.is_empty() {
                return self.emit_routed(id, &routed, 0, plus, emit);
            }
            for DirEntry { ino, next_offset, kind, name } in batch {
                let dot = name.as_bytes() == b"." || name.as_bytes() == b"..";
                if routed_names_hide(&routed, &name) || backing.is_private(dir.ino, &name) {
                    continue;
                }
                let node =
                    if id == ROOT_ID && name.as_bytes() == b".." { ROOT_ID } else { inode::node_id(backing, ino)? };
                let entry = match self.plus_entry(id, &name, plus && !dot)? {
                    Some(e) => e,
                    None => continue, // removed since getdents read it, as a later getdents would
                };
                // A plus entry's node id is the one just registered (an alias if the plain id
                // still names an older inode): `d_ino` must agree with it.
                let node = entry.as_ref().map_or(node, |e| e.attr.ino);
                if self.emit_one(DirEntryOut { ino: node, next_offset, kind: dt_kind(kind), name, entry }, &mut emit) {
                    return Ok(());
                }
            }
        }
    }

    /// Emits the routed entries from index `from` on.
    fn emit_routed(
        &self,
        id: u64,
        routed: &[Listed],
        from: usize,
        plus: bool,
        mut emit: impl FnMut(&DirEntryOut) -> bool,
    ) -> Result<(), Errno> {
        for (i, r) in routed.iter().enumerate().skip(from) {
            let Some(entry) = self.plus_entry(id, &r.name, plus)? else { continue };
            let out = DirEntryOut {
                ino: r.node,
                next_offset: ROUTED_COOKIES + i as i64 + 1,
                kind: dt_kind(r.dtype as u8),
                name: r.name.clone(),
                entry,
            };
            if self.emit_one(out, &mut emit) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The looked-up entry of `name` for readdirplus (`Some(None)` without plus); None if it is
    /// gone.
    fn plus_entry(&self, id: u64, name: &CString, plus: bool) -> Result<Option<Option<Entry>>, Errno> {
        if !plus {
            return Ok(Some(None));
        }
        match self.names().lookup(id, OsStr::from_bytes(name.as_bytes())) {
            Ok(e) => Ok(Some(Some(e))),
            Err(Errno(libc::ENOENT)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Offers one entry; true when the reply is full (its lookup reference is given back).
    fn emit_one(&self, out: DirEntryOut, emit: &mut impl FnMut(&DirEntryOut) -> bool) -> bool {
        if !emit(&out) {
            return false;
        }
        if let Some(e) = out.entry {
            self.forget(e.attr.ino, 1);
        }
        true
    }
}
