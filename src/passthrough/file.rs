//! Open files and their data: open, read, write, fsync, fallocate, lseek, copy_file_range,
//! release.
//!
//! # How an open is served
//! * Read-only opens are served by FUSE passthrough (`OpenMode::Passthrough`): the kernel reads
//!   the backing file itself, at ext4 speed; the daemon sees no READ requests for them.
//! * Opens that can write are `OpenMode::DirectIo`: every write comes to the daemon (where the
//!   limits are checked and usage charged) and none is cached in the FUSE page cache. The
//!   kernel forbids mixing passthrough and page-cached opens of one inode (the second open
//!   fails with EIO); direct-I/O opens may coexist with both, which is why writers use it.
//!   Shared writable mmap still works through FUSE_DIRECT_IO_ALLOW_MMAP.
//! * With passthrough disabled, read-only opens are `OpenMode::Cached` (kernel page cache).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::{Ctx, Passthrough};
use crate::backing::creds::as_caller;
use crate::backing::{Errno, sys};
use crate::inode::Inode;
use crate::inode::handles::OpenFile;
use crate::quota::Subject;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Passthrough,
    DirectIo,
    Cached,
}

/// A successful open: the FUSE file handle, the open file, and how the kernel should serve it.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    pub file: Arc<OpenFile>,
    pub mode: OpenMode,
}

fn is_writable(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// The flags the backing descriptor is opened with, from the flags of a FUSE open/create.
/// O_DIRECT is kept only for read-only opens (the kernel then reads the backing with the
/// application's own aligned buffers); for writes, which go through the daemon's buffers, it
/// is dropped. O_TRUNC never reaches an existing file here: the kernel truncates with setattr.
pub(super) fn backing_open_flags(flags: i32) -> i32 {
    let mut keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME | libc::O_EXCL;
    if !is_writable(flags) {
        keep |= libc::O_DIRECT;
    } else {
        keep |= libc::O_TRUNC;
    }
    (flags & keep) | libc::O_NOFOLLOW | libc::O_CLOEXEC
}

impl Passthrough {
    pub(super) fn register_open(&self, inode: Arc<Inode>, fd: OwnedFd, flags: i32) -> Opened {
        let node = inode.id;
        let writable = is_writable(flags);
        let mode = if writable {
            OpenMode::DirectIo
        } else if self.opts.passthrough {
            OpenMode::Passthrough
        } else {
            OpenMode::Cached
        };
        self.opened(&inode, fd.as_fd());
        let (fh, file) = self.files.insert(OpenFile { node, inode, fd, writable });
        Opened { fh, file, mode }
    }

    pub fn open(&self, id: u64, flags: i32) -> Result<Opened, Errno> {
        let inode = self.inode(id)?;
        if inode.is_dir() {
            return Err(Errno(libc::EISDIR));
        }
        let backing = self.backing(inode.backing)?;
        let fd = backing.open_handle(&inode.handle, backing_open_flags(flags) & !libc::O_TRUNC & !libc::O_EXCL)?;
        Ok(self.register_open(inode, fd, flags))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.files.get(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match sys::pread(file.fd.as_fd(), &mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Runs `op` on open file `fh` as a usage-changing operation on its inode: tracked before,
    /// settled after (also if `op` failed part-way). `alloc` says what the operation may
    /// allocate: `(offset, len, partial)` of a range, checked against the limits of the file's
    /// owner and project; `op` gets the length it may use.
    fn changing<T>(
        &self,
        ctx: &Ctx,
        fh: u64,
        alloc: Option<(u64, u64, bool)>,
        op: impl FnOnce(&OpenFile, u64) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let file = self.files.get(fh)?;
        let inode = Arc::clone(&file.inode);
        let ch = self.ledger.change();
        let _lock = self.ledger.lock_inode(inode.ino);
        let t = self.track(&ch, &inode, file.fd.as_fd())?;
        let subjects = [Subject::User(t.st.st_uid), Subject::Project(t.tag.project)];
        let (reservation, len) = match alloc {
            Some((offset, len, partial)) => {
                let (r, n) = self.reserve_range(ctx, &subjects, file.fd.as_fd(), offset, len, partial)?;
                (Some(r), n)
            }
            None => (None, 0),
        };
        let r = op(&file, len);
        self.settle(&ch, &t, file.fd.as_fd());
        drop(reservation);
        r
    }

    /// Writes `data` at `offset` with the caller's credentials (so ext4 clears setuid/setgid
    /// bits for a non-root writer). A write that fails part-way, or that would pass a quota
    /// limit part-way, returns the count written (EDQUOT if nothing fits).
    pub fn write(&self, ctx: &Ctx, fh: u64, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.changing(ctx, fh, Some((offset, data.len() as u64, true)), |file, len| {
            let data = &data[..len as usize];
            as_caller(ctx, || {
                let mut done = 0;
                while done < data.len() {
                    match sys::pwrite(file.fd.as_fd(), &data[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(_) if done > 0 => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            })
        })
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        let file = self.files.get(fh)?;
        sys::fsync(file.fd.as_fd(), datasync)
    }

    pub fn release(&self, fh: u64) {
        if let Some(file) = self.files.remove(fh) {
            self.closed(file.inode.key());
        }
    }

    pub fn fallocate(&self, ctx: &Ctx, fh: u64, offset: u64, len: u64, mode: i32) -> Result<(), Errno> {
        // Punching a hole or collapsing a range frees space; everything else may allocate.
        let frees = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) != 0;
        let alloc = (!frees).then_some((offset, len, false));
        self.changing(ctx, fh, alloc, |file, _| as_caller(ctx, || sys::fallocate(file.fd.as_fd(), mode, offset, len)))
    }

    /// SEEK_DATA / SEEK_HOLE (the kernel answers the other whences itself).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> Result<i64, Errno> {
        let file = self.files.get(fh)?;
        sys::lseek(file.fd.as_fd(), offset, whence)
    }

    #[expect(clippy::too_many_arguments, reason = "mirrors copy_file_range(2)")]
    pub fn copy_file_range(
        &self,
        ctx: &Ctx,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<usize, Errno> {
        let src = self.files.get(fh_in)?;
        self.changing(ctx, fh_out, Some((off_out, len, true)), |dst, len| {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            as_caller(ctx, || sys::copy_file_range(src.fd.as_fd(), off_in, dst.fd.as_fd(), off_out, len, flags))
        })
    }
}
