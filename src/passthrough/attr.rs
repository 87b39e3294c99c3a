//! Attributes and extended attributes: setattr, get/set/list/remove xattr, access.
//!
//! The `trusted.` xattr namespace is private to quotafs (the project id lives there, issue #4):
//! through the mount it is invisible (get: ENODATA, list: filtered) and untouchable (set,
//! remove: EPERM), for root callers too.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::wire::FileAttr;

use super::ops::Attrs;
use super::{Ctx, to_attr};
use crate::backing::creds::as_caller;
use crate::backing::sys::TimeSpec;
use crate::backing::{Errno, sys, xattr_name};
use crate::inode::Inode;
use crate::quota::Subject;

/// The changes one SETATTR asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSpec>,
    pub mtime: Option<TimeSpec>,
    pub fh: Option<u64>,
}

/// Answer to a getxattr/listxattr: the size asked for, or the bytes.
#[derive(Debug)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

const PRIVATE_PREFIX: &[u8] = b"trusted.";

fn is_private(name: &[u8]) -> bool {
    name.starts_with(PRIVATE_PREFIX)
}

fn sized(data: Vec<u8>, size: u32) -> Result<XattrReply, Errno> {
    if size == 0 {
        Ok(XattrReply::Size(u32::try_from(data.len()).map_err(|_| Errno(libc::E2BIG))?))
    } else if data.len() > size as usize {
        Err(Errno(libc::ERANGE))
    } else {
        Ok(XattrReply::Data(data))
    }
}

impl<'a> Attrs<'a> {
    pub fn getattr(&self, id: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        if let Some(fh) = fh
            && let Ok(file) = self.files().file(fh)
            && file.node == id
        {
            // The open file's own inode, even if its node id now names a newer file.
            return Ok(to_attr(&sys::stat_fd(file.fd.as_fd())?, id));
        }
        let (_, fd) = self.resolve(id)?;
        Ok(to_attr(&sys::stat_fd(fd.as_fd())?, id))
    }

    /// Applies a SETATTR with the caller's credentials, in the order chown, chmod, truncate,
    /// times (a chown may clear setuid bits that a chmod in the same request then sets).
    pub fn setattr(&self, ctx: &Ctx, id: u64, a: &SetAttr) -> Result<FileAttr, Errno> {
        // Through an open file: the inode it was opened on (see `OpenFile::inode`).
        let (inode, pfd) = match a.fh.and_then(|fh| self.files().file(fh).ok()).filter(|f| f.node == id) {
            Some(file) => {
                let inode = std::sync::Arc::clone(&file.inode);
                let fd = self.st.nodes.path_fd(&inode, self.backing(inode.backing)?)?;
                (inode, fd)
            }
            None => self.resolve(id)?,
        };
        // Owner and size changes move usage; mode and times do not.
        let r = if a.uid.is_some() || a.gid.is_some() || a.size.is_some() {
            let mut acct = self.begin(&[(inode.backing, inode.ino)]);
            let t = acct.track(&inode, pfd.as_fd())?;
            let owner = Subject::User(t.st.st_uid);
            let project = Subject::Project(t.tag.project);
            // A new owner takes the whole inode: it must fit under the new owner's limits.
            if let Some(uid) = a.uid.filter(|uid| *uid != t.st.st_uid) {
                acct.reserve(ctx, &[Subject::User(uid)], t.before.bytes, 1)?;
            }
            // Growing a file (a hole: nothing allocated yet) is refused only once over a limit.
            if a.size.is_some_and(|size| size > t.st.st_size as u64) {
                acct.reserve(ctx, &[owner, project], 0, 0)?;
            }
            acct.run(|_| self.apply_setattr(ctx, &inode, pfd.as_fd(), a))
        } else {
            self.apply_setattr(ctx, &inode, pfd.as_fd(), a)
        };
        r.and_then(|()| self.getattr(id, a.fh))
    }

    fn apply_setattr(&self, ctx: &Ctx, inode: &Inode, pfd: BorrowedFd<'_>, a: &SetAttr) -> Result<(), Errno> {
        if a.uid.is_some() || a.gid.is_some() {
            as_caller(ctx, || sys::chown_fd(pfd, a.uid, a.gid))?;
        }
        if let Some(mode) = a.mode {
            as_caller(ctx, || sys::chmod_fd(pfd, mode & 0o7777))?;
        }
        if let Some(size) = a.size {
            let open = a.fh.and_then(|fh| self.files().file(fh).ok()).filter(|f| f.writable && f.node == inode.id);
            match open {
                Some(file) => as_caller(ctx, || sys::truncate_fd(file.fd.as_fd(), size))?,
                None => {
                    if !inode.is_reg() {
                        return Err(Errno(if inode.is_dir() { libc::EISDIR } else { libc::EINVAL }));
                    }
                    let fd =
                        self.backing(inode.backing)?.open_handle(&inode.handle, libc::O_WRONLY | libc::O_NOFOLLOW)?;
                    as_caller(ctx, || sys::truncate_fd(fd.as_fd(), size))?;
                }
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let (at, mt) = (a.atime.unwrap_or(TimeSpec::Omit), a.mtime.unwrap_or(TimeSpec::Omit));
            as_caller(ctx, || sys::utimens_fd(pfd, at, mt))?;
        }
        Ok(())
    }

    /// A real descriptor for xattr calls (they refuse `O_PATH`): regular files and directories
    /// only. Symlinks and special files carry no user xattrs on ext4; they answer ENOTSUP.
    /// A file's data descriptor an open holds serves (the common case: the kernel asks for
    /// `security.capability` before a file's first write), saving an open by handle.
    fn xattr_fd(&self, id: u64) -> Result<XattrFd, Errno> {
        let inode = self.inode(id)?;
        if inode.is_reg() {
            let slots = inode.data.lock();
            if let Some(held) = slots[0].upgrade().or_else(|| slots[1].upgrade()) {
                return Ok(XattrFd::Held(held));
            }
        }
        let flags = if inode.is_dir() {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else if inode.is_reg() {
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW
        } else {
            return Err(Errno(libc::ENOTSUP));
        };
        self.backing(inode.backing)?.open_handle(&inode.handle, flags).map(XattrFd::Own)
    }

    pub fn getxattr(&self, id: u64, name: &OsStr, size: u32) -> Result<XattrReply, Errno> {
        if is_private(name.as_bytes()) {
            return Err(Errno(libc::ENODATA));
        }
        let name = xattr_name(name)?;
        let fd = self.xattr_fd(id).map_err(|e| if e.0 == libc::ENOTSUP { Errno(libc::ENODATA) } else { e })?;
        if size == 0 {
            let n = sys::get_xattr(fd.as_fd(), &name, &mut [])?;
            return Ok(XattrReply::Size(n as u32));
        }
        let mut buf = vec![0u8; size as usize];
        let n = sys::get_xattr(fd.as_fd(), &name, &mut buf)?;
        buf.truncate(n);
        Ok(XattrReply::Data(buf))
    }

    pub fn listxattr(&self, id: u64, size: u32) -> Result<XattrReply, Errno> {
        let fd = match self.xattr_fd(id) {
            Ok(fd) => fd,
            Err(Errno(libc::ENOTSUP)) => return sized(Vec::new(), size),
            Err(e) => return Err(e),
        };
        // The list can grow between the size query and the read: retry on ERANGE.
        let raw = loop {
            let n = sys::list_xattr(fd.as_fd(), &mut [])?;
            let mut buf = vec![0u8; n];
            match sys::list_xattr(fd.as_fd(), &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    break buf;
                }
                Err(Errno(libc::ERANGE)) => continue,
                Err(e) => return Err(e),
            }
        };
        let visible: Vec<u8> =
            raw.split_inclusive(|&b| b == 0).filter(|n| !is_private(n)).flat_map(|n| n.iter().copied()).collect();
        sized(visible, size)
    }

    pub fn setxattr(&self, ctx: &Ctx, id: u64, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
        if is_private(name.as_bytes()) {
            return Err(Errno(libc::EPERM));
        }
        let name = xattr_name(name)?;
        let fd = self.xattr_fd(id)?;
        // An xattr that does not fit in the inode takes a block: that is usage.
        self.xattr_change(ctx, id, &fd, true, || as_caller(ctx, || sys::set_xattr(fd.as_fd(), &name, value, flags)))
    }

    fn xattr_change(
        &self,
        ctx: &Ctx,
        id: u64,
        fd: &impl AsFd,
        allocates: bool,
        op: impl FnOnce() -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let inode = self.inode(id)?;
        let mut acct = self.begin(&[(inode.backing, inode.ino)]);
        let t = acct.track(&inode, fd.as_fd())?;
        // An xattr may take a block: refused once the owner or project is over a limit.
        if allocates {
            acct.reserve(ctx, &[Subject::User(t.st.st_uid), Subject::Project(t.tag.project)], 0, 0)?;
        }
        acct.run(|_| op())
    }

    pub fn removexattr(&self, ctx: &Ctx, id: u64, name: &OsStr) -> Result<(), Errno> {
        if is_private(name.as_bytes()) {
            return Err(Errno(libc::EPERM));
        }
        let name = xattr_name(name)?;
        let fd = self.xattr_fd(id).map_err(|e| if e.0 == libc::ENOTSUP { Errno(libc::ENODATA) } else { e })?;
        self.xattr_change(ctx, id, &fd, false, || as_caller(ctx, || sys::remove_xattr(fd.as_fd(), &name)))
    }

    /// access(2) as the caller (the kernel does not ask when default_permissions is on, but a
    /// mount without it would).
    pub fn access(&self, ctx: &Ctx, id: u64, mask: i32) -> Result<(), Errno> {
        let (_, fd) = self.resolve(id)?;
        as_caller(ctx, || sys::access_fd(fd.as_fd(), mask))
    }
}

/// A descriptor for xattr calls: opened for the call, or an open file's data descriptor.
enum XattrFd {
    Own(OwnedFd),
    Held(std::sync::Arc<crate::inode::handles::DataFd>),
}

impl AsFd for XattrFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            XattrFd::Own(fd) => fd.as_fd(),
            XattrFd::Held(fd) => fd.as_fd(),
        }
    }
}
