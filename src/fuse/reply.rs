//! The answer to one request: sent once, from whichever thread served the request, on the
//! descriptor the request was read from. A reply dropped unsent answers EIO, so no request
//! is left waiting in the kernel (a handler that panics, a job dropped by a stopping pool).

use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use crate::backing::Errno;
use crate::wire::{FileAttr, Out, abi};

pub struct Reply {
    unique: u64,
    sink: Option<Sink>,
}

/// Where an answer goes: written to the /dev/fuse descriptor the request came from, or into
/// the io_uring entry that holds the request (then committed).
enum Sink {
    Dev(Arc<Channel>),
    Ring(super::uring::Slot),
}

impl Sink {
    fn send(self, unique: u64, msg: &[u8], extra: &[u8]) {
        match self {
            Sink::Dev(ch) => {
                if let Err(e) = ch.send(&[msg, extra])
                    && e.raw_os_error() != Some(libc::ENOENT)
                {
                    tracing::warn!(unique, error = %e, "cannot send a FUSE reply");
                }
            }
            Sink::Ring(slot) => slot.commit(msg, extra),
        }
    }
}

impl Reply {
    pub(super) fn new(unique: u64, ch: Arc<Channel>) -> Reply {
        Reply { unique, sink: Some(Sink::Dev(ch)) }
    }

    pub(super) fn ring(unique: u64, slot: super::uring::Slot) -> Reply {
        Reply { unique, sink: Some(Sink::Ring(slot)) }
    }

    fn send(mut self, out: Out, error: i32, extra: &[u8]) {
        let Some(sink) = self.sink.take() else { return };
        let msg = out.finish(self.unique, error, extra.len());
        sink.send(self.unique, &msg, extra);
    }

    /// An error reply: `errno` is a positive errno.
    pub fn error(self, errno: i32) {
        self.send(Out::with_capacity(abi::OUT_HEADER_LEN), -errno, &[]);
    }

    pub fn ok(self) {
        self.send(Out::with_capacity(abi::OUT_HEADER_LEN), 0, &[]);
    }

    pub fn entry(self, attr_ttl: Duration, entry_ttl: Duration, attr: &FileAttr, generation: u64) {
        let mut o = Out::new();
        o.entry(attr.ino, generation, entry_ttl, attr_ttl, attr);
        self.send(o, 0, &[]);
    }

    /// A negative entry: "no such name", cached for `ttl`.
    pub fn negative_entry(self, ttl: Duration, attr: &FileAttr) {
        let mut o = Out::new();
        o.entry(0, 0, ttl, Duration::ZERO, attr);
        self.send(o, 0, &[]);
    }

    pub fn attr(self, ttl: Duration, attr: &FileAttr) {
        let mut o = Out::new();
        o.attr_out(ttl, attr);
        self.send(o, 0, &[]);
    }

    /// Data (READ, READLINK, GETXATTR, LISTXATTR), written from `data` without a copy.
    pub fn data(self, data: &[u8]) {
        self.send(Out::with_capacity(abi::OUT_HEADER_LEN), 0, data);
    }

    /// A READ's answer: up to `size` bytes that `read` writes into the buffer it is given and
    /// counts, or its error. Over io_uring the buffer is the ring entry's own payload, so the
    /// data is copied once on its way to the kernel (from the backing's page cache into the
    /// entry), not a second time from a buffer of ours; over /dev/fuse it is a buffer of the
    /// serving thread's, kept for its next read.
    pub fn data_read(mut self, size: usize, read: impl FnOnce(&mut [u8]) -> Result<usize, Errno>) {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if let Some(Sink::Ring(slot)) = self.sink.take_if(|s| matches!(s, Sink::Ring(_))) {
            return slot.commit_read(self.unique, size, read);
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match read(&mut buf[..size]) {
                Ok(n) => self.data(&buf[..n.min(size)]),
                Err(e) => self.error(e.0),
            }
        })
    }

    pub fn opened(self, fh: u64, open_flags: u32) {
        let mut o = Out::new();
        o.open(fh, open_flags);
        self.send(o, 0, &[]);
    }

    pub fn created(self, ttl: Duration, attr: &FileAttr, generation: u64, fh: u64, open_flags: u32) {
        let mut o = Out::new();
        o.entry(attr.ino, generation, ttl, ttl, attr).open(fh, open_flags);
        self.send(o, 0, &[]);
    }

    pub fn written(self, n: u32) {
        let mut o = Out::new();
        o.u32(n).u32(0);
        self.send(o, 0, &[]);
    }

    /// GETXATTR/LISTXATTR with size 0: the size the value would take.
    pub fn xattr_size(self, n: u32) {
        let mut o = Out::new();
        o.u32(n).u32(0);
        self.send(o, 0, &[]);
    }

    pub fn offset(self, off: i64) {
        let mut o = Out::new();
        o.u64(off as u64);
        self.send(o, 0, &[]);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn statfs(
        self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) {
        let mut o = Out::new();
        o.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize);
        self.send(o, 0, &[]);
    }

    /// A finished body built by the caller (directory listings).
    pub fn body(self, out: Out) {
        self.send(out, 0, &[]);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let msg = Out::with_capacity(abi::OUT_HEADER_LEN).finish(self.unique, -libc::EIO, 0);
            sink.send(self.unique, &msg, &[]);
        }
    }
}

/// A directory listing being filled, up to the size the kernel asked for.
pub struct DirBuf {
    out: Out,
    max: usize,
}

impl DirBuf {
    pub fn new(max: u32) -> DirBuf {
        let max = max as usize;
        DirBuf { out: Out::with_capacity(abi::OUT_HEADER_LEN + max.min(1 << 20)), max }
    }

    /// Adds an entry; true if it did not fit (the listing is full).
    pub fn add(&mut self, ino: u64, next_offset: u64, kind: u32, name: &[u8]) -> bool {
        !self.out.dirent(self.max, ino, next_offset, kind, name)
    }

    /// Adds an entry with its attributes (READDIRPLUS); true if it did not fit.
    pub fn add_plus(
        &mut self,
        next_offset: u64,
        name: &[u8],
        generation: u64,
        entry_ttl: Duration,
        attr: &FileAttr,
    ) -> bool {
        !self.out.direntplus(self.max, next_offset, name, generation, entry_ttl, entry_ttl, attr)
    }

    pub fn send(self, reply: Reply) {
        reply.body(self.out);
    }
}
