//! Name operations: lookup, create, mkdir, mknod, symlink, link, unlink, rmdir, rename, readlink.
//!
//! Every name is one validated component resolved against the parent's descriptor with
//! `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`; creations and removals run with the caller's fs
//! credentials, so ext4 assigns ownership and enforces permissions and sticky bits itself.

use std::ffi::{CStr, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use super::file::Opened;
use super::{Ctx, Entry, Passthrough};
use crate::backing::creds::{as_caller, set_thread_umask};
use crate::backing::{Errno, entry_name, sys};
use crate::inode::{Inode, ROOT_ID};

impl Passthrough {
    /// Looks `name` up in directory `parent`: one lookup reference on success.
    /// `.` and `..` are answered too (NFS export asks for them).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let name = match name.as_bytes() {
            b"." => c".".to_owned(),
            b".." if parent == ROOT_ID => c".".to_owned(),
            b".." => c"..".to_owned(),
            _ => entry_name(name)?,
        };
        self.lookup_at(&dir, dirfd.as_fd(), &name)
    }

    fn lookup_at(&self, dir: &Inode, dirfd: std::os::fd::BorrowedFd<'_>, name: &CStr) -> Result<Entry, Errno> {
        let backing = self.backing(dir.backing)?;
        // stat and handle are two calls; a rename racing between them could pair one file's
        // attributes with another's handle. The ext4 handle carries the inode number: retry
        // until both agree.
        for _ in 0..8 {
            let st = sys::stat_at(dirfd, name)?;
            let handle = sys::name_to_handle(dirfd, name)?;
            let handle_ino = handle.bytes().get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
            if handle.ext4_generation().is_none() || handle_ino == Some(st.st_ino as u32) {
                return self.register(backing, &st, handle);
            }
        }
        Err(Errno(libc::EAGAIN))
    }

    fn apply_umask(&self, umask: u32) -> Result<(), Errno> {
        if self.apply_umask { set_thread_umask(umask) } else { Ok(()) }
    }

    pub fn mkdir(&self, ctx: &Ctx, parent: u64, name: &OsStr, mode: u32, umask: u32) -> Result<Entry, Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        as_caller(ctx, || sys::mkdir_at(dirfd.as_fd(), &name, mode & 0o7777))?;
        self.lookup_at(&dir, dirfd.as_fd(), &name)
    }

    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        as_caller(ctx, || sys::mknod_at(dirfd.as_fd(), &name, mode, u64::from(rdev)))?;
        self.lookup_at(&dir, dirfd.as_fd(), &name)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: u64, name: &OsStr, target: &std::path::Path) -> Result<Entry, Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let name = entry_name(name)?;
        let target = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))?;
        as_caller(ctx, || sys::symlink_at(&target, dirfd.as_fd(), &name))?;
        self.lookup_at(&dir, dirfd.as_fd(), &name)
    }

    /// Creates and opens a regular file: one lookup reference and one open handle on success.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Entry, Opened), Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let backing = self.backing(dir.backing)?;
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        let open_flags = super::file::backing_open_flags(flags) | libc::O_CREAT;
        let fd = as_caller(ctx, || sys::openat_beneath(dirfd.as_fd(), &name, open_flags, mode & 0o7777))?;
        let entry = self.entry_from_fd(backing, &fd)?;
        let opened = self.register_open(entry.attr.ino.0, fd, flags);
        Ok((entry, opened))
    }

    /// A new name for inode `id`. The link is made with the daemon's credentials (linking by
    /// descriptor needs CAP_DAC_READ_SEARCH); the kernel has already checked the caller's
    /// permission on the new parent and the protected_hardlinks rules.
    pub fn link(&self, id: u64, newparent: u64, newname: &OsStr) -> Result<Entry, Errno> {
        let (inode, fd) = self.resolve(id)?;
        let (dir, dirfd) = self.resolve_dir(newparent)?;
        if inode.backing != dir.backing {
            return Err(Errno(libc::EXDEV));
        }
        let name = entry_name(newname)?;
        sys::link_fd(fd.as_fd(), dirfd.as_fd(), &name)?;
        self.lookup_at(&dir, dirfd.as_fd(), &name)
    }

    pub fn unlink(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let (_, dirfd) = self.resolve_dir(parent)?;
        let name = entry_name(name)?;
        as_caller(ctx, || sys::unlink_at(dirfd.as_fd(), &name, 0))
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let (_, dirfd) = self.resolve_dir(parent)?;
        let name = entry_name(name)?;
        as_caller(ctx, || sys::unlink_at(dirfd.as_fd(), &name, libc::AT_REMOVEDIR))
    }

    /// `renameat2` with RENAME_NOREPLACE and RENAME_EXCHANGE; RENAME_WHITEOUT is refused.
    /// Node ids follow inodes, not names, so the table needs no update.
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return Err(Errno(libc::EINVAL));
        }
        let (from, fromfd) = self.resolve_dir(parent)?;
        let (to, tofd) = self.resolve_dir(newparent)?;
        if from.backing != to.backing {
            return Err(Errno(libc::EXDEV));
        }
        let name = entry_name(name)?;
        let newname = entry_name(newname)?;
        as_caller(ctx, || sys::rename_at(fromfd.as_fd(), &name, tofd.as_fd(), &newname, flags))
    }

    pub fn readlink(&self, id: u64) -> Result<Vec<u8>, Errno> {
        let (inode, fd) = self.resolve(id)?;
        if inode.kind != libc::S_IFLNK {
            return Err(Errno(libc::EINVAL));
        }
        sys::readlink_fd(fd.as_fd())
    }
}
