//! The FUSE front: takes the kernel's decoded requests (`crate::wire`), calls the layer
//! below, and turns its `Result` into a reply. This is the only place an errno becomes a
//! reply; nothing here looks at a message string.
//!
//! `mod.rs` holds the request handlers (`FuseFront::handle`); `front` the front's state and
//! the helpers they share (dispatch to a backing's pool, replies, conversions); `pool` the
//! per-backing worker pools; `init` the INIT negotiation; `session` the threads that read
//! /dev/fuse; `channel` one descriptor of the connection; `reply` a request's answer;
//! `kernel` the device and mount system calls.

mod channel;
pub mod export;
mod front;
mod init;
mod kernel;
pub mod pool;
mod reply;
mod resend;
mod session;
mod uring;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::backing::Errno;
use crate::inode::ROOT_ID;
use crate::passthrough::attr::{SetAttr, XattrReply};
use crate::wire::{Header, Op, abi};
use export::Touched;

pub use front::{FrontOptions, FuseFront, invalidate_backing, set_read_ahead};
use front::{caller, time_spec};
pub use reply::{DirBuf, Reply};
use resend::Made;
pub use session::{Handover, Notifier, Session, Unmounter, refuse_all};
pub use uring::kernel_offers as uring_offered;

/// A supervisor's side of a connection (docs/design.md §18): opens /dev/fuse and mounts it on
/// `mountpoint`, then makes `readers - 1` clones; the first descriptor is the connection's.
pub fn open_connection(mountpoint: &Path, fsname: &str, readers: usize) -> std::io::Result<Vec<std::fs::File>> {
    let dev = kernel::open_device()?;
    kernel::mount(&dev, mountpoint, fsname, "quotafs")?;
    let mut devs = Vec::with_capacity(readers.max(1));
    for _ in 1..readers.max(1) {
        devs.push(kernel::clone_device(std::os::fd::AsFd::as_fd(&dev))?);
    }
    devs.insert(0, dev);
    Ok(devs)
}

/// Leaves the supervisor's descriptors open across the exec of a serving process.
pub fn keep_across_exec(devs: &[std::fs::File]) -> std::io::Result<()> {
    devs.iter().try_for_each(kernel::keep_across_exec)
}

/// The descriptors a supervisor handed to this process (`QUOTAFS_SUPERVISED_FDS`).
pub fn inherited(fds: &[i32]) -> std::io::Result<Vec<std::fs::File>> {
    fds.iter().map(|&fd| kernel::inherited(fd)).collect()
}

/// Unmounts `mountpoint` lazily (a supervisor's last word when its connection cannot go on).
pub fn detach(mountpoint: &Path) -> std::io::Result<()> {
    kernel::unmount(mountpoint, true)
}

fn os(name: &[u8]) -> Box<OsStr> {
    OsStr::from_bytes(name).into()
}

impl FuseFront {
    /// FORGET and each pair of BATCH_FORGET (no reply).
    pub(super) fn forget(&self, node: u64, nlookup: u64) {
        self.forget_node(node, nlookup);
        // The victim of an unlink is held until its FORGET (`inode::evict`).
        self.ops.release_evictions();
    }

    /// Serves one request (not INIT, FORGET or INTERRUPT, which the session answers).
    pub(super) fn handle(&self, h: &Header, op: Op<'_>, reply: Reply) {
        // The daemon's node ids from here on (`export::View`).
        let node = self.view.inward(h.nodeid);
        let c = caller(h);
        let resent = h.unique & resend::UNIQUE_RESEND != 0;
        match op {
            Op::Lookup { name } => {
                let name = os(name);
                self.dispatch(node, move |me| match me.lookup(node, &name) {
                    // Negative entries are cached too: a create after a failed lookup is the
                    // common small-file pattern, and every name change goes through this mount.
                    Err(Errno(libc::ENOENT)) => {
                        reply.negative_entry(me.opts.entry_ttl, &crate::passthrough::dir::dot_attr(0))
                    }
                    r => me.reply_entry(reply, r),
                });
            }
            Op::GetAttr { fh } => self.dispatch(node, move |me| match me.ops.getattr(node, fh) {
                Ok(attr) => reply.attr(me.opts.attr_ttl, &me.outward(&attr, false)),
                Err(e) => reply.error(e.0),
            }),
            Op::SetAttr(s) => {
                let valid = s.valid;
                let has = |bit: u32| valid & bit != 0;
                let a = SetAttr {
                    mode: has(abi::fattr::MODE).then_some(s.mode),
                    uid: has(abi::fattr::UID).then_some(s.uid),
                    gid: has(abi::fattr::GID).then_some(s.gid),
                    size: has(abi::fattr::SIZE).then_some(s.size),
                    atime: time_spec(has(abi::fattr::ATIME), has(abi::fattr::ATIME_NOW), s.atime),
                    mtime: time_spec(has(abi::fattr::MTIME), has(abi::fattr::MTIME_NOW), s.mtime),
                    fh: has(abi::fattr::FH).then_some(s.fh),
                };
                self.dispatch(node, move |me| match me.ops.setattr(&c, node, &a) {
                    Ok(attr) => {
                        me.touched(&[match a.size {
                            Some(_) => Touched::Data { node, offset: 0, len: 0 },
                            None => Touched::Attr(node),
                        }]);
                        reply.attr(me.opts.attr_ttl, &me.outward(&attr, false))
                    }
                    Err(e) => reply.error(e.0),
                });
            }
            Op::ReadLink => self.dispatch(node, move |me| match me.ops.readlink(node) {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(e.0),
            }),
            Op::MkNod { mode, rdev, umask, name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    let r = me.ops.mknod(&c, node, &name, mode, umask, rdev);
                    let r = me.resent_entry(resent, &c, node, &name, Made::Kind(mode), r);
                    me.touched_entry(r.is_ok(), node, &name);
                    me.reply_entry(reply, r)
                });
            }
            Op::MkDir { mode, umask, name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    let r = me.ops.mkdir(&c, node, &name, mode, umask);
                    let r = me.resent_entry(resent, &c, node, &name, Made::Kind(libc::S_IFDIR), r);
                    me.touched_entry(r.is_ok(), node, &name);
                    me.reply_entry(reply, r)
                });
            }
            Op::Unlink { name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    let r = me.resent_removal(resent, me.ops.unlink(&c, node, &name));
                    me.touched_entry(r.is_ok(), node, &name);
                    me.reply_unit(reply, r)
                });
            }
            Op::RmDir { name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    let r = me.resent_removal(resent, me.ops.rmdir(&c, node, &name));
                    me.touched_entry(r.is_ok(), node, &name);
                    me.reply_unit(reply, r)
                });
            }
            Op::Symlink { name, target } => {
                let (name, target) = (os(name), os(target));
                self.dispatch(node, move |me| {
                    let r = me.ops.symlink(&c, node, &name, Path::new(&*target));
                    let r = me.resent_entry(resent, &c, node, &name, Made::Kind(libc::S_IFLNK), r);
                    me.touched_entry(r.is_ok(), node, &name);
                    me.reply_entry(reply, r)
                });
            }
            Op::Rename { newdir, flags, name, newname } => {
                let (name, newname) = (os(name), os(newname));
                let newdir = self.view.inward(newdir);
                self.dispatch(node, move |me| {
                    let r = me.ops.rename(&c, node, &name, newdir, &newname, flags);
                    let r = me.resent_rename(resent, newdir, &newname, r);
                    if r.is_ok() {
                        me.touched(&[
                            Touched::Entry { parent: node, name: name.as_bytes().into() },
                            Touched::Entry { parent: newdir, name: newname.as_bytes().into() },
                        ]);
                    }
                    me.reply_unit(reply, r)
                });
            }
            Op::Link { oldnode, newname } => {
                // Served with the new parent's backing, like every name operation.
                let newname = os(newname);
                let oldnode = self.view.inward(oldnode);
                self.dispatch(node, move |me| {
                    let r = me.ops.link(&c, oldnode, node, &newname);
                    let r = me.resent_entry(resent, &c, node, &newname, Made::LinkTo(oldnode), r);
                    if r.is_ok() {
                        me.touched(&[
                            Touched::Entry { parent: node, name: newname.as_bytes().into() },
                            Touched::Attr(oldnode),
                        ]);
                    }
                    me.reply_entry(reply, r)
                });
            }
            Op::Open { flags } => self.dispatch(node, move |me| match me.ops.open(&c, node, flags as i32) {
                Ok(opened) => reply.opened(opened.fh, Self::FOPEN),
                Err(e) => reply.error(e.0),
            }),
            Op::Read { fh, offset, size } => self.dispatch(node, move |me| {
                reply.data_read(size as usize, |buf| me.ops.read_into(fh, offset, buf));
            }),
            Op::Write { fh, offset, write_flags, data } => {
                // The request's uid is not used: a write is performed and charged as the
                // handle's opener (write-back of a shared mapping arrives as uid 0).
                let cached = write_flags & abi::WRITE_CACHE != 0;
                if self.serves_inline(node) {
                    self.pools.inline(0, || {
                        let r = self.ops.write(fh, offset, data, cached);
                        let _writing = self.touched_data(&r, node, offset, data.len());
                        self.reply_write(node, offset, data.len(), cached, r, reply);
                    });
                    return;
                }
                let data = data.to_vec();
                self.dispatch(node, move |me| {
                    let r = me.ops.write(fh, offset, &data, cached);
                    let _writing = me.touched_data(&r, node, offset, data.len());
                    me.reply_write(node, offset, data.len(), cached, r, reply);
                });
            }
            // Nothing is buffered in the daemon (FOPEN_NOFLUSH makes this rare).
            Op::Flush { .. } => reply.ok(),
            Op::Release { fh } => self.dispatch(node, move |me| {
                me.ops.release(fh);
                reply.ok();
            }),
            Op::Fsync { fh, datasync } => {
                self.dispatch(node, move |me| me.reply_unit(reply, me.ops.fsync(fh, datasync)))
            }
            // ENOSYS once: the kernel then stops sending OPENDIR/RELEASEDIR and caches readdir
            // results; `readdir` is stateless.
            Op::OpenDir => reply.error(libc::ENOSYS),
            Op::ReleaseDir => reply.ok(),
            Op::ReadDir { offset, size, plus: false, .. } => self.dispatch(node, move |me| {
                let mut buf = DirBuf::new(size);
                let r = me.ops.readdir(node, offset as i64, false, |e| {
                    let ino = me.dirent_ino(node, e);
                    buf.add(ino, e.next_offset as u64, e.kind.dirent_type(), e.name.as_bytes())
                });
                match r {
                    Ok(()) => buf.send(reply),
                    Err(e) => reply.error(e.0),
                }
            }),
            Op::ReadDir { offset, size, plus: true, .. } => self.dispatch(node, move |me| {
                let ttl = me.opts.entry_ttl;
                let mut buf = DirBuf::new(size);
                let r = me.ops.readdir(node, offset as i64, true, |e| {
                    let name = e.name.as_bytes();
                    match &e.entry {
                        Some(entry) => {
                            let attr = me.outward(&entry.attr, false);
                            let full = buf.add_plus(e.next_offset as u64, name, entry.generation, ttl, &attr);
                            if !full {
                                me.handed(entry.attr.ino);
                            }
                            full
                        }
                        None => {
                            let attr = crate::passthrough::dir::dot_attr(me.dirent_ino(node, e));
                            buf.add_plus(e.next_offset as u64, name, 0, Duration::ZERO, &attr)
                        }
                    }
                });
                match r {
                    Ok(()) => buf.send(reply),
                    Err(e) => reply.error(e.0),
                }
            }),
            Op::FsyncDir { datasync } => {
                self.dispatch(node, move |me| me.reply_unit(reply, me.ops.fsyncdir(node, datasync)))
            }
            Op::StatFs => self.dispatch(node, move |me| match me.ops.statfs(&c, node) {
                Ok(s) => reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize),
                Err(e) => reply.error(e.0),
            }),
            Op::SetXattr { flags, name, value } => {
                let (name, value) = (os(name), value.to_vec());
                self.dispatch(node, move |me| {
                    let r = me.ops.setxattr(&c, node, &name, &value, flags as i32);
                    if r.is_ok() {
                        me.touched(&[Touched::Attr(node)]);
                    }
                    me.reply_unit(reply, r)
                });
            }
            Op::GetXattr { size, name } => {
                let name = os(name);
                self.dispatch(node, move |me| me.reply_xattr(reply, me.ops.getxattr(node, &name, size)));
            }
            Op::ListXattr { size } => {
                self.dispatch(node, move |me| me.reply_xattr(reply, me.ops.listxattr(node, size)))
            }
            Op::RemoveXattr { name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    let r = me.ops.removexattr(&c, node, &name);
                    if r.is_ok() {
                        me.touched(&[Touched::Attr(node)]);
                    }
                    me.reply_unit(reply, r)
                });
            }
            Op::Access { mask } => {
                self.dispatch(node, move |me| me.reply_unit(reply, me.ops.access(&c, node, mask as i32)))
            }
            Op::Create { flags, mode, umask, name } => {
                let name = os(name);
                self.dispatch(node, move |me| {
                    // Always O_EXCL on the backing: a CREATE only ever makes a file, never
                    // opens and charges one that is there. Resent, EEXIST goes to
                    // `resent_create` (the first attempt may have made it, docs/design.md
                    // §18.2). Otherwise the name exists though the kernel's entry said not
                    // (a negative entry cached while a move on the backing or another
                    // connection put a file there): ESTALE, on which the kernel looks the name
                    // up again and opens what is there the ordinary way, with the caller's
                    // permission checked and O_TRUNC accounted (design §17.1).
                    let asked_excl = flags as i32 & libc::O_EXCL != 0;
                    let r = match me.ops.create(&c, node, &name, mode, umask, flags as i32 | libc::O_EXCL) {
                        Err(Errno(libc::EEXIST)) if !resent && !asked_excl => Err(Errno(libc::ESTALE)),
                        r => r,
                    };
                    match me.resent_create(resent, &c, node, &name, flags as i32, r) {
                        Ok((entry, opened)) => {
                            me.touched(&[Touched::Entry { parent: node, name: name.as_bytes().into() }]);
                            let attr = me.outward(&entry.attr, true);
                            reply.created(me.opts.entry_ttl, &attr, entry.generation, opened.fh, Self::FOPEN)
                        }
                        Err(e) => reply.error(e.0),
                    }
                });
            }
            // As the handle's opener, like write.
            Op::Fallocate { fh, offset, length, mode } => self.dispatch(node, move |me| {
                let r = me.ops.fallocate(fh, offset, length, mode as i32);
                if r.is_ok() {
                    me.touched(&[Touched::Data { node, offset: offset as i64, len: length as i64 }]);
                }
                me.reply_unit(reply, r)
            }),
            Op::Lseek { fh, offset, whence } => {
                self.dispatch(node, move |me| match me.ops.lseek(fh, offset, whence as i32) {
                    Ok(off) => reply.offset(off),
                    Err(e) => reply.error(e.0),
                })
            }
            // As the destination handle's opener, on the pool of the destination's backing (the
            // one written), like every other request of that node.
            Op::CopyFileRange { fh_in, off_in, node_out, fh_out, off_out, len, flags } => {
                let node_out = self.view.inward(node_out);
                self.dispatch(node_out, move |me| {
                    match me.ops.copy_file_range(fh_in, off_in, fh_out, off_out, len, flags as u32) {
                        Ok(n) => {
                            me.touched(&[Touched::Data { node: node_out, offset: off_out as i64, len: n as i64 }]);
                            reply.written(n as u32)
                        }
                        Err(e) => reply.error(e.0),
                    }
                })
            }
            // No ioctl is passed to the backing: FS_IOC_FSSETXATTR would let a tenant change its
            // own project id, and others reach into the backing file system's internals.
            Op::Ioctl => reply.error(libc::ENOTTY),
            Op::Destroy => reply.ok(),
            Op::Init(_) | Op::Forget { .. } | Op::BatchForget { .. } | Op::Interrupt { .. } | Op::Unknown => {
                reply.error(libc::ENOSYS)
            }
        }
    }

    /// A name operation on `name` in `parent` that succeeded touched that entry.
    fn touched_entry(&self, ok: bool, parent: u64, name: &OsStr) {
        if ok {
            self.touched(&[Touched::Entry { parent, name: name.as_bytes().into() }]);
        }
    }

    /// A write of `len` bytes at `offset` of `node` that succeeded touched that range; keep
    /// the returned value until the reply is sent (`export::Fabric::write_served`).
    pub(super) fn touched_data(
        &self,
        r: &Result<usize, Errno>,
        node: u64,
        offset: u64,
        len: usize,
    ) -> Option<export::Writing<'_>> {
        match (&self.fabric, r) {
            (Some(f), Ok(_)) => f.write_served(self.view.conn, node, offset as i64, len as i64),
            _ => None,
        }
    }

    /// The inode number of a directory entry as this connection's kernel sees it: `..` of an
    /// export's top is the top itself.
    fn dirent_ino(&self, dir: u64, e: &crate::passthrough::dir::DirEntryOut) -> u64 {
        if dir == self.view.root && e.name.as_bytes() == b".." { ROOT_ID } else { self.view.outward(e.ino) }
    }

    fn reply_unit(&self, reply: Reply, r: Result<(), Errno>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.0),
        }
    }

    fn reply_xattr(&self, reply: Reply, r: Result<XattrReply, Errno>) {
        match r {
            Ok(XattrReply::Size(n)) => reply.xattr_size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e.0),
        }
    }
}
