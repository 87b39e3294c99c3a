//! The FUSE front: decodes kernel requests (via fuser), calls the layer below, and turns its
//! `Result` into a reply. This is the only place an errno becomes a reply; nothing here looks
//! at a message string.

mod init;
pub mod pool;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, CopyFileRangeFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::backing::Errno;
use crate::backing::creds::Caller;
use crate::backing::sys::TimeSpec;
use crate::ids::BackingIndex;
use crate::passthrough::attr::{SetAttr, XattrReply};
use crate::passthrough::{Entry, Passthrough};

/// Kernel-facing settings.
#[derive(Clone, Debug)]
pub struct FrontOptions {
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    pub max_write: u32,
    pub acl: bool,
}

#[derive(Clone)]
pub struct FuseFront {
    ops: Arc<Passthrough>,
    opts: FrontOptions,
    /// Where each backing's requests run (load isolation).
    pools: Arc<pool::Pools>,
    /// Ranges of cached pages to drop, served by the `invalidate` thread (see `write`).
    invalidate: std::sync::mpsc::Sender<(u64, i64, i64)>,
}

/// Drops the kernel's cached data, attributes and directory listings of every node it holds
/// on backing `index`, after something changed that backing behind the mount's back (the
/// page cache is kept across opens only because every change goes through the mount).
pub fn invalidate_backing(notifier: &fuser::Notifier, ops: &Passthrough, index: BackingIndex) {
    let nodes = ops.held_nodes(index);
    let mut failed = 0usize;
    for node in &nodes {
        // offset 0, len 0: the whole file; ENOENT if the kernel has forgotten it meanwhile.
        match notifier.inval_inode(INodeNo(*node), 0, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(_) => failed += 1,
        }
    }
    if failed > 0 {
        tracing::warn!(backing = index.0, failed, "cannot invalidate cached pages after outside writes");
    }
    tracing::debug!(backing = index.0, nodes = nodes.len(), "cached pages invalidated after outside writes");
}

/// Sets the readahead window of the FUSE mount at `mountpoint` (its backing device info in
/// sysfs). The kernel starts a FUSE mount with its default window (128 KiB) whatever INIT
/// asks; a window of `kb` lets sequential reads arrive as requests of up to `max_write`.
/// Reads /proc/self/mountinfo rather than stat the mount point: the session is not serving
/// yet, so a stat would wait on ourselves.
pub fn set_read_ahead(mountpoint: &Path, kb: u32) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let want = mountpoint.to_string_lossy();
    let dev = info
        .lines()
        .rev()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(4).map(|m| crate::config::unescape_mountinfo(m)).as_deref() == Some(&*want))
        .and_then(|f| f.get(2).map(|d| d.to_string()))
        .ok_or_else(|| format!("{want} is not in /proc/self/mountinfo"))?;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    std::fs::write(&path, kb.to_string()).map_err(|e| format!("{path}: {e}"))
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid(), pid: req.pid() }
}

fn time_spec(t: Option<TimeOrNow>) -> Option<TimeSpec> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSpec::Now,
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let (mut secs, mut nanos) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                TimeSpec::At { secs, nanos }
            }
        },
    })
}

impl FuseFront {
    /// `notifier` is set once the session exists (until then nothing can need invalidating).
    pub fn new(
        ops: Arc<Passthrough>,
        opts: FrontOptions,
        pools: Arc<pool::Pools>,
        notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    ) -> Result<FuseFront, String> {
        let (invalidate, ranges) = std::sync::mpsc::channel::<(u64, i64, i64)>();
        // Never a FUSE worker: invalidating waits for write-back of the pages, which workers serve.
        std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                while let Ok(first) = ranges.recv() {
                    // Whatever else is queued, merged per node: one invalidation of the span.
                    let mut spans = HashMap::<u64, (i64, i64)>::new();
                    for (node, offset, len) in std::iter::once(first).chain(ranges.try_iter()) {
                        let s = spans.entry(node).or_insert((offset, offset + len));
                        *s = (s.0.min(offset), s.1.max(offset + len));
                    }
                    for (node, (start, end)) in spans {
                        if let Some(n) = notifier.get()
                            && let Err(e) = n.inval_inode(INodeNo(node), start, end - start)
                            && e.raw_os_error() != Some(libc::ENOENT)
                        {
                            tracing::warn!(node, error = %e, "cannot drop refused pages from the page cache");
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the invalidation thread: {e}"))?;
        Ok(FuseFront { ops, opts, pools, invalidate })
    }

    /// Replies to a WRITE. A refused write-back of cached pages (a shared mapping's) also has
    /// those pages dropped once the reply is sent: the kernel keeps them, clean, after a
    /// failed write-back, and readers would see bytes that were never stored.
    fn reply_write(&self, ino: u64, offset: u64, len: usize, cached: bool, r: Result<usize, Errno>, reply: ReplyWrite) {
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => {
                reply.error(errno(e));
                if cached {
                    let _ = self.invalidate.send((ino, offset as i64, len as i64));
                }
            }
        }
    }

    /// Runs a request's work for node `node`: on this thread for backing 0, on its backing's
    /// pool otherwise (then with a clone of the front, which is a few `Arc`s).
    fn dispatch(&self, node: u64, job: impl FnOnce(&FuseFront) + Send + 'static) {
        let backing = crate::inode::backing_of(node).0 as usize;
        if self.pools.offloads(backing) {
            let me = self.clone();
            self.pools.run(backing, move || job(&me));
        } else {
            self.pools.inline(backing, || job(self));
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, r: Result<Entry, Errno>) {
        match r {
            Ok(e) => {
                reply.entry_with_ttls(&self.opts.attr_ttl, &self.opts.entry_ttl, &e.attr, Generation(e.generation))
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// How every regular-file open is served (docs/design.md §4): through the page cache,
    /// kept across opens (every change to a file goes through this mount, and the kernel
    /// updates or drops the cached pages it changes); nothing is buffered in the daemon, so
    /// close() needs no FLUSH round trip.
    const FOPEN: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_NOFLUSH);
}

impl Filesystem for FuseFront {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        init::negotiate(config, &self.opts);
        // With FUSE_DONT_MASK the kernel leaves the umask to us: each create runs with the
        // caller's umask on its thread, and ext4 applies it unless the parent directory has
        // a default ACL.
        self.ops.set_apply_umask(config.capabilities().contains(fuser::InitFlags::FUSE_DONT_MASK));
        Ok(())
    }

    fn destroy(&mut self) {
        tracing::info!("session ended");
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.lookup(parent.0, name) {
                // Negative entries are cached too: a create after a failed lookup is the common
                // small-file pattern, and every name change goes through this mount.
                Err(Errno(libc::ENOENT)) => {
                    let attr = crate::passthrough::dir::dot_attr(0);
                    reply.entry_with_ttls(&Duration::ZERO, &me.opts.entry_ttl, &attr, Generation(0));
                }
                r => me.reply_entry(reply, r),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ops.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.dispatch(ino.0, move |me| match me.ops.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&me.opts.attr_ttl, &attr),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let c = caller(req);
        self.dispatch(ino.0, move |me| {
            let a =
                SetAttr { mode, uid, gid, size, atime: time_spec(atime), mtime: time_spec(mtime), fh: fh.map(|f| f.0) };
            match me.ops.setattr(&c, ino.0, &a) {
                Ok(attr) => reply.attr(&me.opts.attr_ttl, &attr),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.dispatch(ino.0, move |me| match me.ops.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            me.reply_entry(reply, me.ops.mknod(&c, parent.0, name, mode, umask, rdev));
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            me.reply_entry(reply, me.ops.mkdir(&c, parent.0, name, mode, umask));
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.unlink(&c, parent.0, name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.rmdir(&c, parent.0, name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let c = caller(req);
        let link_name = link_name.to_owned();
        let target = target.to_owned();
        self.dispatch(parent.0, move |me| {
            let link_name: &OsStr = &link_name;
            let target: &Path = &target;
            me.reply_entry(reply, me.ops.symlink(&c, parent.0, link_name, target));
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let c = caller(req);
        let name = name.to_owned();
        let newname = newname.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            let newname: &OsStr = &newname;
            match me.ops.rename(&c, parent.0, name, newparent.0, newname, flags.bits()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let c = caller(req);
        let newname = newname.to_owned();
        self.dispatch(newparent.0, move |me| {
            let newname: &OsStr = &newname;
            me.reply_entry(reply, me.ops.link(&c, ino.0, newparent.0, newname));
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let c = caller(req);
        self.dispatch(ino.0, move |me| match me.ops.open(&c, ino.0, flags.0) {
            Ok(opened) => reply.opened(FileHandle(opened.fh), Self::FOPEN),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.dispatch(ino.0, move |me| {
            let mut reply = Some(reply);
            let r = me.ops.read(fh.0, offset, size, |data| {
                if let Some(r) = reply.take() {
                    r.data(data);
                }
            });
            if let (Err(e), Some(r)) = (r, reply.take()) {
                r.error(errno(e));
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The request's uid is not used: a write is performed and charged as the handle's
        // opener (write-back of a shared mapping arrives as uid 0).
        let cached = write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        if !self.pools.offloads(crate::inode::backing_of(ino.0).0 as usize) {
            self.pools.inline(0, || {
                let r = self.ops.write(fh.0, offset, data, cached);
                self.reply_write(ino.0, offset, data.len(), cached, r, reply);
            });
            return;
        }
        let data = data.to_vec();
        self.dispatch(ino.0, move |me| {
            let r = me.ops.write(fh.0, offset, &data, cached);
            me.reply_write(ino.0, offset, data.len(), cached, r, reply);
        });
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.dispatch(ino.0, move |me| {
            me.ops.release(fh.0);
            reply.ok();
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.dispatch(ino.0, move |me| match me.ops.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    /// ENOSYS once: the kernel then stops sending OPENDIR/RELEASEDIR and caches readdir
    /// results (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR); `readdir` is stateless.
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.dispatch(ino.0, move |me| {
            let r = me.ops.readdir(ino.0, offset as i64, false, |e| {
                reply.add(INodeNo(e.ino), e.next_offset as u64, e.kind, OsStr::from_bytes(e.name.as_bytes()))
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.dispatch(ino.0, move |me| {
            let ttl = me.opts.entry_ttl;
            let r = me.ops.readdir(ino.0, offset as i64, true, |e| {
                let name = OsStr::from_bytes(e.name.as_bytes());
                match &e.entry {
                    Some(entry) => reply.add(
                        INodeNo(e.ino),
                        e.next_offset as u64,
                        name,
                        &ttl,
                        &entry.attr,
                        Generation(entry.generation),
                    ),
                    None => {
                        let attr = crate::passthrough::dir::dot_attr(e.ino);
                        reply.add(INodeNo(e.ino), e.next_offset as u64, name, &Duration::ZERO, &attr, Generation(0))
                    }
                }
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.dispatch(ino.0, move |me| match me.ops.fsyncdir(ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let c = caller(req);
        self.dispatch(ino.0, move |me| match me.ops.statfs(&c, ino.0) {
            Ok(s) => reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let c = caller(req);
        let name = name.to_owned();
        let value = value.to_vec();
        self.dispatch(ino.0, move |me| {
            let name: &OsStr = &name;
            let value: &[u8] = &value;
            match me.ops.setxattr(&c, ino.0, name, value, flags) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_owned();
        self.dispatch(ino.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.getxattr(ino.0, name, size) {
                Ok(XattrReply::Size(n)) => reply.size(n),
                Ok(XattrReply::Data(d)) => reply.data(&d),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.dispatch(ino.0, move |me| match me.ops.listxattr(ino.0, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(ino.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.removexattr(&c, ino.0, name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let c = caller(req);
        self.dispatch(ino.0, move |me| match me.ops.access(&c, ino.0, mask.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let c = caller(req);
        let name = name.to_owned();
        self.dispatch(parent.0, move |me| {
            let name: &OsStr = &name;
            match me.ops.create(&c, parent.0, name, mode, umask, flags) {
                Ok((entry, opened)) => reply.created(
                    &me.opts.entry_ttl,
                    &entry.attr,
                    Generation(entry.generation),
                    FileHandle(opened.fh),
                    Self::FOPEN,
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // As the handle's opener, like write.
        self.dispatch(ino.0, move |me| match me.ops.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.dispatch(ino.0, move |me| match me.ops.lseek(fh.0, offset, whence) {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(errno(e)),
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // As the destination handle's opener, on the pool of the destination's backing (the
        // one written), like every other request of that node.
        let flags = flags.bits() as u32;
        self.dispatch(ino_out.0, move |me| {
            match me.ops.copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len, flags) {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    /// No ioctl is passed to the backing: FS_IOC_FSSETXATTR would let a tenant change its own
    /// project id, and others reach into the backing file system's internals.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(fuser::Errno::ENOTTY);
    }
}
