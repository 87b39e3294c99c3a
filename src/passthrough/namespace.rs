//! Name operations: lookup (`lookup`), create, mkdir, mknod, symlink, link, unlink, rmdir,
//! rename (`rename`), readlink.
//!
//! Every name is one validated component resolved against the parent's descriptor with
//! `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`; creations and removals run with the caller's fs
//! credentials, so ext4 assigns ownership and enforces permissions and sticky bits itself.
//!
//! Accounting: the parent directory's stripe lock is held from before the backing call until
//! the new inode is tagged, so no rename or unlink in that directory can swap the entry in
//! between; a removal charges the victim off when its last link goes (or at its last close if
//! it is still open); a rename into a directory of another project moves a file's usage to
//! that project (a directory, or a file with other names: EXDEV, see the man page).

mod lookup;
mod rename;

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::account::entry_fd;
use super::accounting::Op;
use super::file::Opened;
use super::ops::Names;
use super::routing::Parents;
use super::{Ctx, Entry};
use crate::backing::creds::{as_caller, set_thread_umask};
use crate::backing::{BackingIndex, Errno, entry_name, sys};
use crate::inode::Inode;
use crate::inode::evict::Evictions;
use crate::passthrough::router::Place;
use crate::quota::Subject;
use crate::tag;

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl<'a> Names<'a> {
    fn apply_umask(&self, umask: u32) -> Result<(), Errno> {
        if self.st.init.apply_umask() { set_thread_umask(umask) } else { Ok(()) }
    }

    /// The common frame of every creation: parent tracked and marked dirty, `make` run as the
    /// caller, the new inode tagged with the parent's project and charged, the parent's growth
    /// settled. `make` returns a descriptor of the new inode, or None to open it by name.
    fn create_with(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &CStr,
        new_bytes: u64,
        make: impl FnMut(BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno>,
    ) -> Result<(Entry, Option<OwnedFd>), Errno> {
        self.create_in_project(ctx, parent, name, new_bytes, None, make)
    }

    /// `create_with`, the new inode in `project` (None: the parent's). A name that lands on a
    /// routed directory is made on the route's backing.
    pub(in crate::passthrough) fn create_in_project(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &CStr,
        new_bytes: u64,
        project: Option<u32>,
        make: impl FnMut(BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno>,
    ) -> Result<(Entry, Option<OwnedFd>), Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        self.refuse_private(&dir, name, libc::EPERM)?;
        let place = self.be.router.place(&dir, name);
        if let Place::Routed(r) = &place {
            return self.routed().on_routed_parent(r, Parents::Make, |kparent| {
                self.create_in_project(ctx, kparent, name, new_bytes, project, make)
            });
        }
        let backing = self.backing(dir.backing)?;
        let mut acct = self.begin(&[(dir.backing, dir.ino)]);
        let pt = acct.track(&dir, dirfd.as_fd())?;
        let project = project.unwrap_or(pt.tag.project);
        // The new inode belongs to the caller and to the directory's project.
        acct.reserve(ctx, &[Subject::User(ctx.uid), Subject::Project(project)], new_bytes, 1)?;
        acct.reserve_dir_growth(ctx, &pt)?;
        acct.dir_dirty(dir.key());
        let mut make = make;
        let result = acct.run(|acct| {
            let made = as_caller(ctx, || make(dirfd.as_fd()));
            crate::failpoint::CREATE_UNTAGGED.hit();
            made.and_then(|fd| match fd {
                None => self.finish_by_name(acct, backing.index, dirfd.as_fd(), name, project),
                Some(fd) => {
                    let entry = self.register_new(acct, backing.index, fd.as_fd(), project).inspect_err(|_| {
                        let _ = sys::unlink_at(dirfd.as_fd(), name, 0);
                    })?;
                    Ok((entry, Some(fd)))
                }
            })
        });
        if let Ok((e, _)) = &result {
            self.routed().mark_child(&place, e);
        }
        result
    }

    /// Tags, charges and registers a new inode that has no descriptor yet.
    fn finish_by_name(
        &self,
        acct: &Op<'_>,
        backing: BackingIndex,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        project: u32,
    ) -> Result<(Entry, Option<OwnedFd>), Errno> {
        let fd = entry_fd(dirfd, name).inspect_err(|_| {
            // Made, but not reachable to tag and charge (a descriptor could not be had): take
            // it back, as any refused creation leaves nothing. The kernel holds the directory
            // for this creation and we its stripe: the name is still the one just made.
            if sys::unlink_at(dirfd, name, 0).is_err() {
                let _ = sys::unlink_at(dirfd, name, libc::AT_REMOVEDIR);
            }
        })?;
        let removal = |st: &libc::stat| if is_dir(st) { libc::AT_REMOVEDIR } else { 0 };
        if tag::read_fd(fd.as_fd())?.is_some() {
            // Not the inode we just made: refuse rather than charge something twice.
            return Err(Errno(libc::EAGAIN));
        }
        let entry = self.register_new(acct, backing, fd.as_fd(), project).inspect_err(|_| {
            if let Ok(st) = sys::stat_fd(fd.as_fd()) {
                let _ = sys::unlink_at(dirfd, name, removal(&st));
            }
        })?;
        Ok((entry, None))
    }

    /// Tags and charges a just-created inode (`fd`: any descriptor of it) and registers it:
    /// one lookup reference. Its tag is not cached here: the first `tag_of` reads it.
    fn register_new(
        &self,
        acct: &Op<'_>,
        backing: BackingIndex,
        fd: BorrowedFd<'_>,
        project: u32,
    ) -> Result<Entry, Errno> {
        let (st, handle) = acct.charge_new(backing, fd, project)?;
        self.register(self.backing(backing)?, &st, handle)
    }

    pub fn mkdir(&self, ctx: &Ctx, parent: u64, name: &OsStr, mode: u32, umask: u32) -> Result<Entry, Errno> {
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        self.create_with(ctx, parent, &name, 4096, |dirfd| sys::mkdir_at(dirfd, &name, mode & 0o7777).map(|()| None))
            .map(|(e, _)| e)
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
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        self.create_with(ctx, parent, &name, 0, |dirfd| {
            sys::mknod_at(dirfd, &name, mode, u64::from(rdev)).map(|()| None)
        })
        .map(|(e, _)| e)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: u64, name: &OsStr, target: &std::path::Path) -> Result<Entry, Errno> {
        let name = entry_name(name)?;
        let target = CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))?;
        // ext4 keeps targets under 60 bytes in the inode; longer ones take a block.
        let bytes = if target.as_bytes().len() >= 60 { 4096 } else { 0 };
        self.create_with(ctx, parent, &name, bytes, |dirfd| sys::symlink_at(&target, dirfd, &name).map(|()| None))
            .map(|(e, _)| e)
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
        let name = entry_name(name)?;
        self.apply_umask(umask)?;
        let open_flags = super::file::backing_open_flags(flags) | libc::O_CREAT;
        let share = self.st.opens.limits.take_share(ctx.uid)?;
        let (entry, fd) = self.create_with(ctx, parent, &name, 0, |dirfd| {
            sys::openat_beneath(dirfd, &name, open_flags, mode & 0o7777).map(Some)
        })?;
        // The descriptor that made the file is dropped: the open shares the inode's data one.
        drop(fd.ok_or(Errno(libc::EIO))?);
        let inode = self.inode(entry.attr.ino)?;
        let opened =
            self.files().register_open_in(ctx, inode, flags, share).inspect_err(|_| self.forget(entry.attr.ino, 1))?;
        Ok((entry, opened))
    }

    /// A new name for inode `id`. The link is made with the daemon's credentials (linking by
    /// descriptor needs CAP_DAC_READ_SEARCH); the kernel has already checked the caller's
    /// permission on the new parent and the protected_hardlinks rules. A link into another
    /// project is EXDEV: one inode, one project.
    pub fn link(&self, ctx: &Ctx, id: u64, newparent: u64, newname: &OsStr) -> Result<Entry, Errno> {
        let (inode, fd) = self.resolve(id)?;
        let (dir, dirfd) = self.resolve_dir(newparent)?;
        let name = entry_name(newname)?;
        self.refuse_private(&dir, &name, libc::EPERM)?;
        if inode.backing != dir.backing || matches!(self.be.router.place(&dir, &name), Place::Routed(_)) {
            return Err(Errno(libc::EXDEV));
        }
        let mut acct = self.begin(&[(inode.backing, inode.ino), (dir.backing, dir.ino)]);
        let itag = self.tag_of(&inode, fd.as_fd())?;
        let pt = acct.track(&dir, dirfd.as_fd())?;
        if itag.project != pt.tag.project {
            return Err(Errno(libc::EXDEV));
        }
        let st = sys::stat_fd(fd.as_fd())?;
        acct.reserve(ctx, &[Subject::User(st.st_uid), Subject::Project(itag.project)], 0, 0)?;
        acct.reserve_dir_growth(ctx, &pt)?;
        if acct.is_new(inode.key(), itag.birth) {
            acct.dir_dirty(dir.key());
        }
        acct.run(|_| {
            sys::link_fd(fd.as_fd(), dirfd.as_fd(), &name)
                .and_then(|()| self.lookup_at(dir.backing, dirfd.as_fd(), &name))
        })
    }

    pub fn unlink(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.remove(ctx, parent, name, 0)
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.remove(ctx, parent, name, libc::AT_REMOVEDIR)
    }

    fn remove(&self, ctx: &Ctx, parent: u64, name: &OsStr, flags: i32) -> Result<(), Errno> {
        let (dir, dirfd) = self.resolve_dir(parent)?;
        let cname = entry_name(name)?;
        self.refuse_private(&dir, &cname, libc::ENOENT)?;
        match self.be.router.place(&dir, &cname) {
            Place::Routed(r) => {
                self.routed().on_routed_parent(&r, Parents::Existing, |kparent| self.remove(ctx, kparent, name, flags))
            }
            Place::OnPath(Some(state)) if flags == libc::AT_REMOVEDIR => {
                self.routed().rmdir_on_path(ctx, &dir, dirfd.as_fd(), cname, &state)
            }
            _ => self.remove_here(ctx, &dir, dirfd.as_fd(), cname, flags),
        }
    }

    pub(in crate::passthrough) fn remove_here(
        &self,
        ctx: &Ctx,
        dir: &Inode,
        dirfd: BorrowedFd<'_>,
        name: CString,
        flags: i32,
    ) -> Result<(), Errno> {
        let b = dir.backing;
        let (mut acct, v) = self.begin_removal(dir, dirfd, &name)?;
        // The directory is not tracked: ext4 never gives a directory's blocks back when a name
        // goes (inline or block directories alike), so a removal leaves its charge as it was.
        let victim = acct.track_entry(b, dirfd, &name, v.st, v.handle)?;
        // A file this removal frees is held across the unlink, so that ext4 frees it off the
        // request's path (`inode::evict`); any other victim's descriptor is closed here, and
        // a pinned one's (still open) after the call.
        let held = (b == BackingIndex::MAIN && Evictions::wants(&v.st)).then_some(v.fd);
        acct.run(|acct| {
            as_caller(ctx, || sys::unlink_at(dirfd, &name, flags))?;
            if acct.gone(&victim)
                && let Some(fd) = held
            {
                self.st.evictions.hold(victim.key, fd);
            }
            Ok(())
        })
    }

    pub fn readlink(&self, id: u64) -> Result<Vec<u8>, Errno> {
        let (inode, fd) = self.resolve(id)?;
        if inode.kind != libc::S_IFLNK {
            return Err(Errno(libc::EINVAL));
        }
        sys::readlink_fd(fd.as_fd())
    }
}
