//! Name operations: lookup, create, mkdir, mknod, symlink, link, unlink, rmdir, rename, readlink.
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

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::accounting::{Op, Tracked};
use super::file::Opened;
use super::{Ctx, Entry, Passthrough};
use crate::backing::creds::{as_caller, set_thread_umask};
use crate::backing::{Backing, BackingIndex, Errno, entry_name, sys};
use crate::inode::{self, Inode, ROOT_ID};
use crate::quota::{Charge, Subject};
use crate::route::Step;
use crate::tag;

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Passthrough {
    /// Refuses `name` in directory `dir` with `errno` if it is the daemon's own entry (the
    /// ledger's journal directory at a backing root): it does not exist for the mount.
    pub(super) fn refuse_private(&self, dir: &Inode, name: &CStr, errno: i32) -> Result<(), Errno> {
        if self.backing(dir.backing)?.is_private(dir.ino, name) { Err(Errno(errno)) } else { Ok(()) }
    }

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
                if let Some(e) = self.routed_dotdot(&dir, dirfd.as_fd())? {
                    return Ok(e);
                }
                c"..".to_owned()
            }
            _ => entry_name(name)?,
        };
        self.refuse_private(&dir, &name, libc::ENOENT)?;
        let step = if name.as_bytes() == b"." || name.as_bytes() == b".." { None } else { self.step_of(&dir, &name) };
        if let Some(Step::Routed { backing, path, .. }) = &step {
            return self.routed_lookup(*backing, path);
        }
        let e = self.lookup_at(dir.backing, dirfd.as_fd(), &name)?;
        self.mark_child(step.as_ref(), &e);
        Ok(e)
    }

    /// LOOKUP(id, ".") for a node id not in the table: open the ext4 inode by number (a
    /// generation of 0 skips ext4's check; the kernel compares our generation with the one in
    /// the NFS handle and answers ESTALE itself on a mismatch). A deleted inode is ESTALE; an
    /// inode outside the backing root is ESTALE too, never served.
    fn lookup_node(&self, id: u64) -> Result<Entry, Errno> {
        let stale = Errno(libc::ESTALE);
        let backing = self.backing(inode::backing_of(id))?;
        if inode::is_alias(id) {
            // Aliases live only while the kernel holds them in this daemon's table.
            return Err(stale);
        }
        let ino = if id == ROOT_ID { backing.root_ino } else { id & inode::INO_MASK };
        let ino32 = u32::try_from(ino).map_err(|_| stale)?;
        let fd = match backing.open_handle(&sys::Handle::ext4(ino32, 0), libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno(libc::ESTALE | libc::ENOENT | libc::EINVAL)) => return Err(stale),
            Err(e) => return Err(e),
        };
        let st = sys::stat_fd(fd.as_fd())?;
        if st.st_nlink == 0 || st.st_ino != ino || inode::node_id(backing, st.st_ino)? != id {
            return Err(stale);
        }
        if !self.beneath_root(backing, fd.as_fd(), &st)? {
            tracing::warn!(node = id, "refusing a handle for an inode outside the backing root");
            return Err(stale);
        }
        let handle = sys::fd_to_handle(fd.as_fd())?;
        self.register(backing, &st, handle)
    }

    /// Whether the inode `fd` (with stat `st`) lies beneath `backing`'s root. A backing that is
    /// its file system's root holds everything on it. Otherwise a directory is walked up by
    /// `..`; a non-directory has no way up, so it must carry our tag (every inode in the tree
    /// is tagged at first mount, and every inode made through the mount at birth).
    ///
    /// The ledger's journal directory and everything in it are not beneath the root in this
    /// sense: they are never served.
    fn beneath_root(&self, backing: &Backing, fd: BorrowedFd<'_>, st: &libc::stat) -> Result<bool, Errno> {
        let journal = self.ledger.journal_dir_ino(backing.index);
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

    pub(super) fn lookup_at(&self, backing: BackingIndex, dirfd: BorrowedFd<'_>, name: &CStr) -> Result<Entry, Errno> {
        let backing = self.backing(backing)?;
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
        if self.apply_umask.load(std::sync::atomic::Ordering::Relaxed) { set_thread_umask(umask) } else { Ok(()) }
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
    pub(super) fn create_in_project(
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
        let step = self.step_of(&dir, name);
        if let Some(Step::Routed { backing, path, .. }) = &step {
            let kparent = self.hidden_parent(*backing, path)?;
            let r = self.create_in_project(ctx, kparent, name, new_bytes, project, make);
            self.forget(kparent, 1);
            return r;
        }
        let backing = self.backing(dir.backing)?;
        let mut acct = self.begin(&[dir.ino]);
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
            self.mark_child(step.as_ref(), e);
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
        let fd = Self::entry_fd(dirfd, name).inspect_err(|_| {
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
        let share = self.limits.take_share(ctx.uid)?;
        let (entry, fd) = self.create_with(ctx, parent, &name, 0, |dirfd| {
            sys::openat_beneath(dirfd, &name, open_flags, mode & 0o7777).map(Some)
        })?;
        // The descriptor that made the file is dropped: the open shares the inode's data one.
        drop(fd.ok_or(Errno(libc::EIO))?);
        let inode = self.inode(entry.attr.ino.0)?;
        let opened =
            self.register_open_in(ctx, inode, flags, share).inspect_err(|_| self.forget(entry.attr.ino.0, 1))?;
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
        if inode.backing != dir.backing || matches!(self.step_of(&dir, &name), Some(Step::Routed { .. })) {
            return Err(Errno(libc::EXDEV));
        }
        let mut acct = self.begin(&[inode.ino, dir.ino]);
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
        match self.step_of(&dir, &cname) {
            Some(Step::Routed { backing, path, .. }) => {
                // The routed directory itself: removed on its backing.
                let kparent = match self.routed_lookup_parent(backing, &path) {
                    Ok(p) => p,
                    Err(Errno(libc::ENOENT | libc::ENOTDIR)) => return Err(Errno(libc::ENOENT)),
                    Err(e) => return Err(e),
                };
                let r = self.remove(ctx, kparent, name, flags);
                self.forget(kparent, 1);
                r
            }
            Some(Step::Local(Some(state))) if flags == libc::AT_REMOVEDIR => {
                // A directory on a route's path: what it holds on the routed backing counts.
                if self.hidden_not_empty(&state)? {
                    return Err(Errno(libc::ENOTEMPTY));
                }
                self.remove_here(ctx, &dir, dirfd.as_fd(), cname, flags)?;
                self.remove_hidden(&state);
                Ok(())
            }
            _ => self.remove_here(ctx, &dir, dirfd.as_fd(), cname, flags),
        }
    }

    fn remove_here(
        &self,
        ctx: &Ctx,
        dir: &Inode,
        dirfd: BorrowedFd<'_>,
        name: CString,
        flags: i32,
    ) -> Result<(), Errno> {
        let b = dir.backing;
        let (mut acct, _) = self.begin_entries(&[dir], &[(dirfd, &name)])?;
        acct.track(dir, dirfd)?;
        let victim = acct.track_at(b, dirfd, &name)?;
        acct.run(|acct| {
            as_caller(ctx, || sys::unlink_at(dirfd, &name, flags))?;
            acct.gone(&victim);
            Ok(())
        })
    }

    /// `renameat2` with RENAME_NOREPLACE and RENAME_EXCHANGE; RENAME_WHITEOUT is refused.
    /// Node ids follow inodes, not names, so the table needs no update. A file moved into a
    /// directory of another project takes its usage there; a directory, or a file with more
    /// than one name, answers EXDEV (in either direction of an exchange).
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
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let (from, fromfd) = self.resolve_dir(parent)?;
        let (to, tofd) = self.resolve_dir(newparent)?;
        if from.backing != to.backing {
            return Err(Errno(libc::EXDEV));
        }
        let b = from.backing.0;
        let cname = entry_name(name)?;
        let cnewname = entry_name(newname)?;
        self.refuse_private(&from, &cname, libc::ENOENT)?;
        self.refuse_private(&to, &cnewname, libc::EPERM)?;
        let mut moved_routes = None;
        if self.routing() && b == 0 {
            let (s1, s2) = (self.step_of(&from, &cname), self.step_of(&to, &cnewname));
            match (s1, s2) {
                (
                    Some(Step::Routed { backing: k1, path: p1, .. }),
                    Some(Step::Routed { backing: k2, path: p2, .. }),
                ) => {
                    // A routed directory renamed to another routed place of the same backing.
                    if k1 != k2 {
                        return Err(Errno(libc::EXDEV));
                    }
                    let sp = self.routed_lookup_parent(k1, &p1)?;
                    let dp = match self.hidden_parent(k2, &p2) {
                        Ok(d) => d,
                        Err(e) => {
                            self.forget(sp, 1);
                            return Err(e);
                        }
                    };
                    let r = self.rename(ctx, sp, name, dp, newname, flags);
                    self.forget(sp, 1);
                    self.forget(dp, 1);
                    return r;
                }
                (Some(Step::Routed { .. }), _) | (_, Some(Step::Routed { .. })) => return Err(Errno(libc::EXDEV)),
                (s1, s2) => {
                    let src_is_dir = sys::stat_at(fromfd.as_fd(), &cname).is_ok_and(|st| is_dir(&st));
                    if src_is_dir {
                        match (s1, s2) {
                            (Some(Step::Local(Some(a))), Some(Step::Local(Some(bs))))
                                if crate::route::Routes::same_shape(&a, &bs) && !exchange =>
                            {
                                moved_routes = Some((a, bs));
                            }
                            (Some(Step::Local(Some(a))), _) if !self.hidden_counterparts(&a).is_empty() => {
                                return Err(Errno(libc::EXDEV));
                            }
                            (Some(Step::Local(Some(_))), _) => moved_routes = None,
                            // A directory moving onto a route's path could hide its own entries
                            // behind routed names: it is copied instead (mv does that on EXDEV).
                            (_, Some(Step::Local(Some(_)))) => return Err(Errno(libc::EXDEV)),
                            _ => {}
                        }
                    }
                }
            }
        }
        let r = self.rename_here(ctx, &from, fromfd.as_fd(), &cname, &to, tofd.as_fd(), &cnewname, flags);
        if r.is_ok() && self.routing() && b == 0 {
            if let Some((a, bs)) = &moved_routes
                && let Err(e) = self.move_hidden(a, bs)
            {
                tracing::error!(error = %e, "a directory moved but its routed part did not; `quotafs check` reports it");
            }
            self.inodes.reset_routes();
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_here(
        &self,
        ctx: &Ctx,
        from: &Inode,
        fromfd: BorrowedFd<'_>,
        name: &CStr,
        to: &Inode,
        tofd: BorrowedFd<'_>,
        newname: &CStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let b = from.backing;
        let (mut acct, sts) = self.begin_entries(&[from, to], &[(fromfd, name), (tofd, newname)])?;
        let Some(src_st) = sts[0] else { return Err(Errno(libc::ENOENT)) };
        let target_st = sts[1].filter(|t| t.st_ino != src_st.st_ino);
        let ft = acct.track(from, fromfd)?;
        let tt = if from.id == to.id { None } else { Some(acct.track(to, tofd)?) };
        let to_project = tt.as_ref().map_or(ft.tag.project, |t| t.tag.project);
        // An untagged inode is being made or was made before a crash: new either way.
        let src_t = tag::read_at(fromfd, name)?;
        let src_tag = src_t.map_or(ft.tag.project, |t| t.project);
        let cross = src_tag != to_project;
        let tgt_t = match target_st {
            Some(_) => tag::read_at(tofd, newname)?,
            None => None,
        };
        let tgt_tag = tgt_t.map_or(to_project, |t| t.project);
        let back_cross = exchange && target_st.is_some() && tgt_tag != ft.tag.project;
        // One inode, one project: a directory, or a file with other names (which stay in the
        // old tree), cannot change project by a rename; `mv` copies instead.
        let keeps_its_project = |st: &libc::stat| is_dir(st) || st.st_nlink > 1;
        if (cross && keeps_its_project(&src_st)) || (back_cross && target_st.is_some_and(|t| keeps_its_project(&t))) {
            return Err(Errno(libc::EXDEV));
        }
        // A file moving into another project must fit there (and the exchanged one back).
        if cross {
            acct.reserve(ctx, &[Subject::Project(to_project)], (src_st.st_blocks as u64) * 512, 1)?;
        }
        if let Some(t) = target_st.filter(|_| back_cross) {
            acct.reserve(ctx, &[Subject::Project(ft.tag.project)], (t.st_blocks as u64) * 512, 1)?;
        }
        // A new name in the target directory may grow it (a replaced or exchanged one does
        // not).
        match (&sts[1], &tt) {
            (Some(_), _) => {}
            (None, Some(tt)) => acct.reserve_dir_growth(ctx, tt)?,
            (None, None) => acct.reserve_dir_growth(ctx, &ft)?,
        }
        // What the rename will change, logged before it happens.
        let src = if cross { Some(acct.track_at(b, fromfd, name)?) } else { None };
        let target = match target_st {
            Some(_) if exchange && back_cross => Some(acct.track_at(b, tofd, newname)?),
            Some(_) if !exchange => Some(acct.track_at(b, tofd, newname)?),
            _ => None,
        };
        // An inode the recovery snapshot may lack is found only by listing its directory: the
        // one it moves to must be listed too.
        let src_key = self.key_at(b, fromfd, name)?;
        if acct.is_new(src_key, src_t.map_or(u64::MAX, |t| t.birth)) {
            acct.dir_dirty(to.key());
        }
        if exchange
            && target_st.is_some()
            && acct.is_new(self.key_at(b, tofd, newname)?, tgt_t.map_or(u64::MAX, |t| t.birth))
        {
            acct.dir_dirty(from.key());
        }
        acct.run(|acct| {
            as_caller(ctx, || sys::rename_at(fromfd, name, tofd, newname, flags))?;
            if let Some(s) = &src {
                self.move_project(acct, s, tofd, newname, to_project);
            }
            match &target {
                Some(t) if exchange => self.move_project(acct, t, fromfd, name, ft.tag.project),
                Some(t) => acct.gone(t),
                None => {}
            }
            Ok(())
        })
    }

    /// The ledger key of `name` in `dir`.
    fn key_at(&self, backing: BackingIndex, dir: BorrowedFd<'_>, name: &CStr) -> Result<crate::ids::InodeRef, Errno> {
        let st = sys::stat_at(dir, name)?;
        let h = sys::name_to_handle(dir, name)?;
        Ok(crate::ids::InodeRef { backing, ino: st.st_ino, generation: h.ext4_generation().unwrap_or(0) })
    }

    /// Re-tags a renamed file (now `name` in `dir`) with `project` and moves its usage there.
    fn move_project(&self, acct: &Op<'_>, t: &Tracked, dir: BorrowedFd<'_>, name: &CStr, project: u32) {
        let result = Self::entry_fd(dir, name).and_then(|fd| {
            let written = tag::write_fd(fd.as_fd(), tag::Tag { project, birth: t.tag.birth });
            self.inodes.stripes().tag_written(t.key.ino);
            written?;
            sys::stat_fd(fd.as_fd())
        });
        match result {
            Ok(st) => acct.moved(t, Charge::of(&st, project)),
            Err(e) => tracing::error!(ino = t.key.ino, error = %e, "cannot re-tag a file moved to another project"),
        }
    }

    pub fn readlink(&self, id: u64) -> Result<Vec<u8>, Errno> {
        let (inode, fd) = self.resolve(id)?;
        if inode.kind != libc::S_IFLNK {
            return Err(Errno(libc::EINVAL));
        }
        sys::readlink_fd(fd.as_fd())
    }
}
