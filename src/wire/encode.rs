//! Replies and notifications as the kernel reads them from /dev/fuse: a `fuse_out_header`
//! (length, negated errno or notification code, the request's unique), then the opcode's
//! reply structure. Builders append to a `Vec<u8>`; the header is written last, once the
//! length is known (`finish`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::abi;
use super::attr::FileAttr;

/// A reply or notification being built: header space first, then the body.
pub struct Out {
    buf: Vec<u8>,
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out::with_capacity(abi::OUT_HEADER_LEN + abi::ENTRY_OUT_LEN + abi::OPEN_OUT_LEN)
    }

    pub fn with_capacity(n: usize) -> Out {
        let mut buf = Vec::with_capacity(n.max(abi::OUT_HEADER_LEN));
        buf.resize(abi::OUT_HEADER_LEN, 0);
        Out { buf }
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Zero bytes up to the next multiple of 8 of the body.
    fn pad8(&mut self) {
        let body = self.buf.len() - abi::OUT_HEADER_LEN;
        self.buf.resize(self.buf.len() + (body.next_multiple_of(8) - body), 0);
    }

    /// Bytes of body so far.
    pub fn body_len(&self) -> usize {
        self.buf.len() - abi::OUT_HEADER_LEN
    }

    /// Cuts the body back to `len` bytes (a directory entry that did not fit).
    pub fn truncate_body(&mut self, len: usize) {
        self.buf.truncate(abi::OUT_HEADER_LEN + len);
    }

    /// The finished message: header for `unique` with `error` (0, a negated errno, or a
    /// notification code with unique 0), `extra` bytes still to follow in the same write.
    pub fn finish(mut self, unique: u64, error: i32, extra: usize) -> Vec<u8> {
        let len = (self.buf.len() + extra) as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[4..8].copy_from_slice(&error.to_ne_bytes());
        self.buf[8..16].copy_from_slice(&unique.to_ne_bytes());
        self.buf
    }

    /// `fuse_attr`.
    pub fn attr(&mut self, a: &FileAttr) -> &mut Self {
        let (at, atn) = time(a.atime);
        let (mt, mtn) = time(a.mtime);
        let (ct, ctn) = time(a.ctime);
        self.u64(a.ino).u64(a.size).u64(a.blocks).u64(at as u64).u64(mt as u64).u64(ct as u64);
        self.u32(atn).u32(mtn).u32(ctn);
        self.u32(a.kind.mode_bits() | u32::from(a.perm)).u32(a.nlink).u32(a.uid).u32(a.gid).u32(a.rdev);
        self.u32(a.blksize).u32(a.flags)
    }

    /// `fuse_entry_out`: a node, its generation and attributes with their cache lifetimes.
    pub fn entry(
        &mut self,
        node: u64,
        generation: u64,
        entry_ttl: Duration,
        attr_ttl: Duration,
        a: &FileAttr,
    ) -> &mut Self {
        self.u64(node).u64(generation).u64(entry_ttl.as_secs()).u64(attr_ttl.as_secs());
        self.u32(entry_ttl.subsec_nanos()).u32(attr_ttl.subsec_nanos());
        self.attr(a)
    }

    /// `fuse_attr_out`.
    pub fn attr_out(&mut self, ttl: Duration, a: &FileAttr) -> &mut Self {
        self.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
        self.attr(a)
    }

    /// `fuse_open_out`.
    pub fn open(&mut self, fh: u64, open_flags: u32) -> &mut Self {
        self.u64(fh).u32(open_flags).u32(0)
    }

    /// `fuse_kstatfs`.
    #[allow(clippy::too_many_arguments)]
    pub fn statfs(
        &mut self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) -> &mut Self {
        self.u64(blocks).u64(bfree).u64(bavail).u64(files).u64(ffree);
        self.u32(bsize).u32(namelen).u32(frsize).u32(0);
        self.bytes(&[0u8; 24])
    }

    /// `fuse_dirent` with its name, padded to 8 bytes; false (and nothing added) if it
    /// would take the body past `max` bytes.
    pub fn dirent(&mut self, max: usize, ino: u64, next_offset: u64, kind: u32, name: &[u8]) -> bool {
        let size = (abi::DIRENT_LEN + name.len()).next_multiple_of(8);
        if self.body_len() + size > max {
            return false;
        }
        self.u64(ino).u64(next_offset).u32(name.len() as u32).u32(kind).bytes(name);
        self.pad8();
        true
    }

    /// `fuse_direntplus`: an entry, then the dirent; false (and nothing added) past `max`.
    #[allow(clippy::too_many_arguments)]
    pub fn direntplus(
        &mut self,
        max: usize,
        next_offset: u64,
        name: &[u8],
        generation: u64,
        entry_ttl: Duration,
        attr_ttl: Duration,
        a: &FileAttr,
    ) -> bool {
        let size = (abi::ENTRY_OUT_LEN + abi::DIRENT_LEN + name.len()).next_multiple_of(8);
        if self.body_len() + size > max {
            return false;
        }
        self.entry(a.ino, generation, entry_ttl, attr_ttl, a);
        self.u64(a.ino).u64(next_offset).u32(name.len() as u32).u32(a.kind.dirent_type()).bytes(name);
        self.pad8();
        true
    }
}

/// Seconds and nanoseconds since the epoch (negative seconds before it, nanoseconds always
/// forward).
fn time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// The negotiated INIT reply (`fuse_init_out`, 64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u64,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub max_pages: u16,
}

impl InitOut {
    /// One line of its fields, for a process taking over the connection (`parse`).
    pub fn to_text(&self) -> String {
        format!(
            "fuse-init-v1 {} {} {} {} {} {} {} {}\n",
            self.major,
            self.minor,
            self.max_readahead,
            self.flags,
            self.max_background,
            self.congestion_threshold,
            self.max_write,
            self.max_pages
        )
    }

    /// The agreement `to_text` wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<InitOut> {
        let mut f = text.strip_prefix("fuse-init-v1 ")?.split_whitespace();
        let mut n = || f.next()?.parse::<u64>().ok();
        let i = InitOut {
            major: u32::try_from(n()?).ok()?,
            minor: u32::try_from(n()?).ok()?,
            max_readahead: u32::try_from(n()?).ok()?,
            flags: n()?,
            max_background: u16::try_from(n()?).ok()?,
            congestion_threshold: u16::try_from(n()?).ok()?,
            max_write: u32::try_from(n()?).ok()?,
            max_pages: u16::try_from(n()?).ok()?,
        };
        Some(i)
    }
}

impl Out {
    pub fn init(&mut self, i: &InitOut) -> &mut Self {
        self.u32(i.major).u32(i.minor).u32(i.max_readahead).u32(i.flags as u32);
        self.u16(i.max_background).u16(i.congestion_threshold).u32(i.max_write);
        self.u32(1); // time_gran: nanoseconds
        self.u16(i.max_pages).u16(0); // map_alignment
        self.u32((i.flags >> 32) as u32);
        self.u32(0); // max_stack_depth
        self.u16(0); // request_timeout
        self.bytes(&[0u8; 22])
    }
}

/// FUSE_NOTIFY_INVAL_INODE: drop the cached data of `node` in `[offset, offset + len)` (len 0:
/// to the end) and its attributes.
pub fn notify_inval_inode(node: u64, offset: i64, len: i64) -> Vec<u8> {
    let mut o = Out::with_capacity(abi::OUT_HEADER_LEN + 24);
    o.u64(node).u64(offset as u64).u64(len as u64);
    o.finish(0, abi::notify::INVAL_INODE, 0)
}

/// FUSE_NOTIFY_INVAL_ENTRY: drop the cached entry `name` of directory `parent` (a negative
/// one too) and the directory's attributes. `fuse_notify_inval_entry_out` (parent, namelen,
/// flags 0), then the name and its NUL, unpadded: the kernel wants the exact length.
pub fn notify_inval_entry(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut o = Out::with_capacity(abi::OUT_HEADER_LEN + 16 + name.len() + 1);
    o.u64(parent).u32(name.len() as u32).u32(0).bytes(name).bytes(&[0]);
    o.finish(0, abi::notify::INVAL_ENTRY, 0)
}

/// FUSE_NOTIFY_RESEND: the kernel queues every request it sent and has no reply to again.
pub fn notify_resend() -> Vec<u8> {
    Out::with_capacity(abi::OUT_HEADER_LEN).finish(0, abi::notify::RESEND, 0)
}
