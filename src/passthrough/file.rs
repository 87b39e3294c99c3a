//! Open files and their data: open, read, write, fsync, fallocate, lseek, copy_file_range,
//! release.
//!
//! # How an open is served (docs/design.md §4)
//! Every open of a regular file is served through the FUSE page cache (`FOPEN_KEEP_CACHE`),
//! whatever its flags and whatever other opens of the inode exist: the kernel then never
//! refuses an open for how another process opened the same file (it refuses any
//! non-passthrough open of an inode that has a passthrough open, so passthrough is not used).
//! Without the writeback cache, every write() reaches the daemon before it returns, where the
//! limits are checked; shared mappings are written back through WRITE requests on a writable
//! handle. `O_DIRECT` is served by the kernel's direct-I/O path (READ/WRITE requests, with the
//! page cache written back and invalidated around them); the daemon's descriptor is buffered.
//!
//! # Descriptors
//! An open holds its inode's shared data descriptor for its access (one read-only, one
//! read-write per inode; `inode::handles`), counted against the opener's share of open files.
//! Append and sync flags are applied per write (`RWF_*`), never to the shared descriptor.

use std::os::fd::AsFd;
use std::sync::Arc;

use super::Ctx;
use super::ops::Files;
use crate::backing::creds::as_caller;
use crate::backing::{Errno, sys};
use crate::inode::Inode;
use crate::inode::handles::{Budget, DataFd, OpenFile, Share};
use crate::inode::open_table::OpenRecord;

/// A successful open: the FUSE file handle and the open file.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    pub file: Arc<OpenFile>,
}

fn is_writable(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// The flags a new file is created with on the backing, from the flags of a FUSE create: the
/// access mode (so ext4 checks it as the caller), O_EXCL and O_TRUNC. The open file then uses
/// the inode's shared data descriptor like any other open.
pub(super) fn backing_open_flags(flags: i32) -> i32 {
    (flags & (libc::O_ACCMODE | libc::O_EXCL | libc::O_TRUNC)) | libc::O_NOFOLLOW | libc::O_CLOEXEC
}

/// `RWF_*` flags every write through an open with `flags` carries.
fn write_flags(flags: i32) -> i32 {
    let mut rwf = 0;
    if flags & libc::O_APPEND != 0 {
        rwf |= libc::RWF_APPEND;
    }
    if flags & libc::O_SYNC == libc::O_SYNC {
        rwf |= libc::RWF_SYNC;
    } else if flags & libc::O_DSYNC != 0 {
        rwf |= libc::RWF_DSYNC;
    }
    rwf
}

impl<'a> Files<'a> {
    /// The inode's shared data descriptor for reading (`writable` false; a read-write one
    /// serves too) or for reading and writing, opened by handle if no open holds one.
    fn data_fd(
        &self,
        inode: &Inode,
        writable: bool,
        flags: i32,
        uid: u32,
        budget: Budget,
    ) -> Result<Arc<DataFd>, Errno> {
        let mut slots = inode.data.lock();
        let held = if writable { slots[1].upgrade() } else { slots[0].upgrade().or_else(|| slots[1].upgrade()) };
        if let Some(fd) = held {
            return Ok(fd);
        }
        let backing = self.backing(inode.backing)?;
        let access = if writable { libc::O_RDWR } else { libc::O_RDONLY };
        let open = |extra: i32| {
            self.st.opens.limits.open_data(uid, budget, || {
                backing.open_handle(&inode.handle, extra | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            })
        };
        match open(access) {
            Ok(fd) => {
                slots[usize::from(writable)] = Arc::downgrade(&fd);
                Ok(fd)
            }
            // An append-only (or otherwise restricted) inode refuses a plain read-write
            // descriptor: this open gets one of its own, with its own access and O_APPEND.
            Err(Errno(libc::EPERM)) if writable => open(flags & (libc::O_ACCMODE | libc::O_APPEND)),
            Err(e) => Err(e),
        }
    }

    /// Registers an open of `inode` by `ctx` with open flags `flags`: counted against the
    /// opener's share (EMFILE past it), holding the inode's shared data descriptor.
    pub(super) fn register_open(&self, ctx: &Ctx, inode: Arc<Inode>, flags: i32) -> Result<Opened, Errno> {
        let share = self.st.opens.limits.take_share(ctx.uid)?;
        self.register_open_in(ctx, inode, flags, share)
    }

    /// `register_open` with the opener's share already taken (a create takes it before it
    /// makes the file, so that EMFILE leaves nothing behind, as on ext4).
    pub(super) fn register_open_in(
        &self,
        ctx: &Ctx,
        inode: Arc<Inode>,
        flags: i32,
        share: Share,
    ) -> Result<Opened, Errno> {
        let record = OpenRecord { node: inode.id, key: inode.key(), flags, opener: *ctx };
        let file = self.open_file(ctx, inode, flags, share, Budget::Open)?;
        // Recorded before the reply: a handle the kernel holds is always in the table.
        let recorded = self.st.opens.table.get().and_then(|t| t.record(&record));
        let (fh, file) = match recorded {
            Some(fh) => (fh, self.st.opens.handles.insert_at(fh, file)),
            None => self.st.opens.handles.insert(file),
        };
        Ok(Opened { fh, file })
    }

    /// The open file of `inode` for `ctx` with `flags`: its shared data descriptor, counted as
    /// an open by the pin protocol.
    fn open_file(
        &self,
        ctx: &Ctx,
        inode: Arc<Inode>,
        flags: i32,
        share: Share,
        budget: Budget,
    ) -> Result<OpenFile, Errno> {
        let writable = is_writable(flags);
        let fd = self.data_fd(&inode, writable, flags, ctx.uid, budget)?;
        if flags & libc::O_APPEND != 0 && flags & libc::O_TRUNC == 0 {
            sys::prefetch_tail(fd.as_fd());
        }
        self.pins().opened(&inode, fd.as_fd());
        Ok(OpenFile::new(inode, fd, writable, write_flags(flags), *ctx, share))
    }

    /// The open file of handle `fh`: this process's, or one an earlier process issued
    /// (recorded in the supervisor's open-file table), reopened now on its first use.
    /// EBADF for a handle neither issued; ESTALE for a recorded file that is gone (unlinked,
    /// its descriptors died with the earlier process) or whose inode number names another file
    /// now.
    pub(super) fn file(&self, fh: u64) -> Result<Arc<OpenFile>, Errno> {
        match self.st.opens.handles.get(fh) {
            Err(Errno(libc::EBADF)) if self.st.init.adopted() => self.reopen(fh),
            r => r,
        }
    }

    fn reopen(&self, fh: u64) -> Result<Arc<OpenFile>, Errno> {
        let _one = self.st.opens.reopening.lock();
        if let Ok(file) = self.st.opens.handles.get(fh) {
            return Ok(file);
        }
        let Some(rec) = self.st.opens.inherited.lock().get(&fh).copied() else {
            return Err(Errno(libc::EBADF));
        };
        // By the node id, which resolves by ext4 number beneath the backing root (never by
        // path), and only to the inode recorded: same backing, number and generation.
        // A node id the table does not hold yet (an alias id too: the record's generation
        // says which inode it was) is taken over as the kernel names it.
        let found = match self.st.nodes.get(rec.node) {
            Err(Errno(libc::ESTALE)) => self.names().adopt_recorded(rec.node, rec.key),
            r => r,
        };
        let inode = match found {
            Ok(inode) if inode.key() == rec.key && !inode.is_dir() => inode,
            Ok(_) | Err(Errno(libc::ESTALE | libc::ENOENT)) => {
                tracing::info!(fh, ino = rec.key.ino, "an inherited open file is gone; its holder gets ESTALE");
                return Err(Errno(libc::ESTALE));
            }
            Err(e) => return Err(e),
        };
        let share = self.st.opens.limits.take_share(rec.opener.uid)?;
        let file = self.open_file(&rec.opener, inode, rec.flags, share, Budget::Inherited)?;
        self.st.opens.take_inherited(fh);
        tracing::debug!(fh, ino = rec.key.ino, "reopened an open file an earlier process issued");
        Ok(self.st.opens.handles.insert_at(fh, file))
    }

    pub fn open(&self, ctx: &Ctx, id: u64, flags: i32) -> Result<Opened, Errno> {
        let inode = self.inode(id)?;
        if inode.is_dir() {
            return Err(Errno(libc::EISDIR));
        }
        self.register_open(ctx, inode, flags)
    }

    /// Reads open file `fh` at `offset` into the whole of `buf` (short only at end of file);
    /// the count read. `buf` is the reply's (`Reply::data_read`): the ring entry's payload, or
    /// a buffer the serving thread keeps, so a 1 MiB read costs no allocation.
    pub fn read_into(&self, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let file = self.file(fh)?;
        let mut done = 0;
        while done < buf.len() {
            match sys::pread(file.fd.as_fd(), &mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }

    /// Runs `op` on open file `fh` as a usage-changing operation on its inode (an
    /// `accounting::Op`): tracked before, settled after (also if `op` failed part-way). `alloc`
    /// says what the operation may allocate: `(offset, len, partial)` of a range, checked
    /// against the limits of the file's owner and project; `op` gets the length it may use.
    fn changing<T>(
        &self,
        ctx: &Ctx,
        fh: u64,
        alloc: Option<(u64, u64, bool)>,
        op: impl FnOnce(&OpenFile, u64) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let file = self.file(fh)?;
        let inode = Arc::clone(&file.inode);
        let mut acct = self.begin(&[(inode.backing, inode.ino)]);
        let t = acct.track(&inode, file.fd.as_fd())?;
        let len = match alloc {
            Some((offset, len, partial)) => acct.reserve_range(ctx, &t, file.fd.as_fd(), offset, len, partial)?,
            None => 0,
        };
        acct.run(|_| op(&file, len))
    }

    /// Writes `data` at `offset` as the handle's opener (so ext4 clears setuid/setgid bits for
    /// a non-root writer, and the opener's exemption, not the request's uid, decides). A write
    /// that fails part-way, or that would pass a quota limit part-way, returns the count
    /// written (EDQUOT if nothing fits). A write-back of the page cache (`cached`: a shared
    /// mapping's dirty pages) is all or nothing: the kernel drops a short count silently, but
    /// reports an error to the next msync/fsync.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], cached: bool) -> Result<usize, Errno> {
        let file = self.file(fh)?;
        let ctx = &file.opener;
        self.changing(ctx, fh, Some((offset, data.len() as u64, !cached)), |file, len| {
            let data = &data[..len as usize];
            as_caller(ctx, || {
                let mut done = 0;
                while done < data.len() {
                    let at = offset + done as u64;
                    match sys::pwrite_flags(file.fd.as_fd(), &data[done..], at, file.write_flags) {
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
        let file = self.file(fh)?;
        sys::fsync(file.fd.as_fd(), datasync)
    }

    pub fn release(&self, fh: u64) {
        if let Some(file) = self.st.opens.handles.remove(fh) {
            self.pins().closed(file.inode.key());
        }
        // An inherited handle released unused was never counted by this process.
        self.st.opens.take_inherited(fh);
        if let Some(table) = self.st.opens.table.get() {
            table.clear(fh);
        }
    }

    /// fallocate as the handle's opener.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> Result<(), Errno> {
        let file = self.file(fh)?;
        let ctx = &file.opener;
        // Punching a hole or collapsing a range frees space; everything else may allocate.
        let frees = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_COLLAPSE_RANGE) != 0;
        let alloc = (!frees).then_some((offset, len, false));
        self.changing(ctx, fh, alloc, |file, _| as_caller(ctx, || sys::fallocate(file.fd.as_fd(), mode, offset, len)))
    }

    /// SEEK_DATA / SEEK_HOLE (the kernel answers the other whences itself).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> Result<i64, Errno> {
        let file = self.file(fh)?;
        sys::lseek(file.fd.as_fd(), offset, whence)
    }

    /// copy_file_range as the destination handle's opener.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<usize, Errno> {
        let src = self.file(fh_in)?;
        let ctx = &self.file(fh_out)?.opener;
        self.changing(ctx, fh_out, Some((off_out, len, true)), |dst, len| {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            as_caller(ctx, || sys::copy_file_range(src.fd.as_fd(), off_in, dst.fd.as_fd(), off_out, len, flags))
        })
    }
}
