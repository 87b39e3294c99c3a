//! Requests as the kernel writes them to /dev/fuse: a `fuse_in_header`, then the opcode's
//! fixed part, then names (NUL-terminated) or data. Every length is checked; a request this
//! code cannot read is an error value, never a panic (the kernel is trusted, but a short or
//! garbled request must not take a thread down).

use std::fmt;

use super::abi::{self, op};

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the opcode's fixed part needs.
    Short { opcode: u32, need: usize, have: usize },
    /// A name without its terminating NUL.
    Unterminated { opcode: u32 },
    /// The header's length disagrees with the bytes read.
    Length { said: u32, read: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { opcode, need, have } => {
                write!(f, "FUSE request (opcode {opcode}) too short: {have} bytes, {need} needed")
            }
            DecodeError::Unterminated { opcode } => write!(f, "FUSE request (opcode {opcode}) has a name without NUL"),
            DecodeError::Length { said, read } => write!(f, "FUSE request says {said} bytes, {read} were read"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// `fuse_in_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// INIT's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    /// `flags | flags2 << 32` (flags2 only with `INIT_EXT`).
    pub flags: u64,
}

/// SETATTR's arguments (`fuse_setattr_in`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SetAttrIn {
    pub valid: u32,
    pub fh: u64,
    pub size: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One request's operation and arguments, borrowing names and data from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Init(InitIn),
    Destroy,
    Interrupt {
        unique: u64,
    },
    Lookup {
        name: &'a [u8],
    },
    Forget {
        nlookup: u64,
    },
    /// `(node, nlookup)` pairs, 16 bytes each.
    BatchForget {
        pairs: &'a [u8],
    },
    GetAttr {
        fh: Option<u64>,
    },
    SetAttr(SetAttrIn),
    ReadLink,
    Symlink {
        name: &'a [u8],
        target: &'a [u8],
    },
    MkNod {
        mode: u32,
        rdev: u32,
        umask: u32,
        name: &'a [u8],
    },
    MkDir {
        mode: u32,
        umask: u32,
        name: &'a [u8],
    },
    Unlink {
        name: &'a [u8],
    },
    RmDir {
        name: &'a [u8],
    },
    Rename {
        newdir: u64,
        flags: u32,
        name: &'a [u8],
        newname: &'a [u8],
    },
    Link {
        oldnode: u64,
        newname: &'a [u8],
    },
    Open {
        flags: u32,
    },
    Read {
        fh: u64,
        offset: u64,
        size: u32,
    },
    Write {
        fh: u64,
        offset: u64,
        write_flags: u32,
        data: &'a [u8],
    },
    StatFs,
    Release {
        fh: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    SetXattr {
        flags: u32,
        name: &'a [u8],
        value: &'a [u8],
    },
    GetXattr {
        size: u32,
        name: &'a [u8],
    },
    ListXattr {
        size: u32,
    },
    RemoveXattr {
        name: &'a [u8],
    },
    Flush {
        fh: u64,
    },
    OpenDir,
    ReadDir {
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
    },
    ReleaseDir,
    FsyncDir {
        datasync: bool,
    },
    Access {
        mask: u32,
    },
    Create {
        flags: u32,
        mode: u32,
        umask: u32,
        name: &'a [u8],
    },
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Lseek {
        fh: u64,
        offset: i64,
        whence: u32,
    },
    CopyFileRange {
        fh_in: u64,
        off_in: u64,
        node_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    },
    Ioctl,
    /// An opcode this file system does not implement (answered ENOSYS).
    Unknown,
}

impl Op<'_> {
    /// Requests the kernel expects no reply to.
    pub fn is_forget(&self) -> bool {
        matches!(self, Op::Forget { .. } | Op::BatchForget { .. })
    }
}

/// The `(node, nlookup)` pairs of a BATCH_FORGET.
pub fn forget_pairs(pairs: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    pairs.chunks_exact(16).map(|c| (ne_u64(&c[..8]), ne_u64(&c[8..])))
}

fn ne_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_ne_bytes(a)
}

/// Reads a request's fixed part (`fixed`), then its names and data (`rest`): the two arrive
/// contiguous from /dev/fuse and in separate buffers over io_uring.
struct Cursor<'a> {
    fixed: &'a [u8],
    rest: &'a [u8],
    opcode: u32,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let from = if self.fixed.is_empty() { &mut self.rest } else { &mut self.fixed };
        if from.len() < n {
            return Err(DecodeError::Short { opcode: self.opcode, need: n, have: from.len() });
        }
        let (head, tail) = from.split_at(n);
        *from = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(ne_u64(self.take(8)?))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(drop)
    }

    /// A NUL-terminated name (from the names and data), without its NUL.
    fn name(&mut self) -> Result<&'a [u8], DecodeError> {
        self.fixed = &[];
        let end = self.rest.iter().position(|&b| b == 0).ok_or(DecodeError::Unterminated { opcode: self.opcode })?;
        let name = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(name)
    }

    /// `n` bytes of data (from the names and data).
    fn data(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.fixed = &[];
        self.take(n)
    }
}

/// The size of an opcode's fixed argument structure (what io_uring puts in the ring entry's
/// `op_in`; names and data follow in the payload). INIT's is read whole.
pub fn fixed_len(opcode: u32) -> usize {
    match opcode {
        op::FORGET | op::MKDIR | op::RENAME | op::LINK | op::OPEN | op::OPENDIR => 8,
        op::SETXATTR | op::GETXATTR | op::LISTXATTR | op::ACCESS => 8,
        op::GETATTR | op::MKNOD | op::FSYNC | op::FSYNCDIR | op::CREATE | op::RENAME2 => 16,
        op::INTERRUPT | op::BATCH_FORGET => 8,
        op::RELEASE | op::RELEASEDIR | op::FLUSH | op::LSEEK => 24,
        op::FALLOCATE | op::IOCTL => 32,
        op::READ | op::WRITE | op::READDIR | op::READDIRPLUS => abi::WRITE_IN_LEN,
        op::COPY_FILE_RANGE => 56,
        op::SETATTR => 88,
        op::INIT => 64,
        _ => 0,
    }
}

/// `fuse_in_header`, from its 40 bytes; the total length it states, and the length of the
/// extension headers at the end of the request.
pub fn header(b: &[u8]) -> Result<(Header, u32, usize), DecodeError> {
    if b.len() < abi::IN_HEADER_LEN {
        return Err(DecodeError::Short { opcode: 0, need: abi::IN_HEADER_LEN, have: b.len() });
    }
    let u32_at = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let h = Header {
        opcode: u32_at(4),
        unique: ne_u64(&b[8..16]),
        nodeid: ne_u64(&b[16..24]),
        uid: u32_at(24),
        gid: u32_at(28),
        pid: u32_at(32),
    };
    let total_extlen = u16::from_ne_bytes([b[36], b[37]]);
    Ok((h, u32_at(0), usize::from(total_extlen) * 8))
}

/// Decodes one request of `buf` (exactly the bytes one read of /dev/fuse returned).
pub fn decode(buf: &[u8]) -> Result<(Header, Op<'_>), DecodeError> {
    let (h, len, ext) = header(buf)?;
    if len as usize != buf.len() {
        return Err(DecodeError::Length { said: len, read: buf.len() });
    }
    let args = &buf[abi::IN_HEADER_LEN..];
    // Extension headers (security context, supplementary groups) follow the arguments; none
    // is asked for, and any the kernel sends is cut off rather than read as a name.
    if ext > args.len() {
        return Err(DecodeError::Short { opcode: h.opcode, need: ext, have: args.len() });
    }
    let args = &args[..args.len() - ext];
    let (fixed, rest) = args.split_at(fixed_len(h.opcode).min(args.len()));
    Ok((h, decode_args(h.opcode, fixed, rest)?))
}

/// Decodes one request delivered over io_uring: the 40-byte header, the ring entry's `op_in`
/// (at least the opcode's fixed part) and its payload (names and data).
pub fn decode_split<'a>(head: &[u8], op_in: &'a [u8], payload: &'a [u8]) -> Result<(Header, Op<'a>), DecodeError> {
    let (h, _, ext) = header(head)?;
    let fixed = &op_in[..fixed_len(h.opcode).min(op_in.len())];
    let payload = &payload[..payload.len().saturating_sub(ext)];
    Ok((h, decode_args(h.opcode, fixed, payload)?))
}

/// The operation of `opcode` from its fixed part and its names and data.
fn decode_args<'a>(opcode: u32, fixed: &'a [u8], rest: &'a [u8]) -> Result<Op<'a>, DecodeError> {
    let mut c = Cursor { fixed, rest, opcode };
    let o = match opcode {
        op::INIT => {
            let (major, minor, max_readahead, flags) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            // 7.36+: flags2 (only meaningful with INIT_EXT).
            let flags2 = if c.fixed.len() >= 4 { c.u32()? } else { 0 };
            let mut all = u64::from(flags);
            if all & abi::init::INIT_EXT != 0 {
                all |= u64::from(flags2) << 32;
            }
            Op::Init(InitIn { major, minor, max_readahead, flags: all })
        }
        op::DESTROY => Op::Destroy,
        op::INTERRUPT => Op::Interrupt { unique: c.u64()? },
        op::LOOKUP => Op::Lookup { name: c.name()? },
        op::FORGET => Op::Forget { nlookup: c.u64()? },
        op::BATCH_FORGET => {
            let count = c.u32()? as usize;
            c.skip(4)?;
            Op::BatchForget { pairs: c.data(count.saturating_mul(16))? }
        }
        op::GETATTR => {
            let flags = c.u32()?;
            c.skip(4)?;
            let fh = c.u64()?;
            Op::GetAttr { fh: (flags & abi::GETATTR_FH != 0).then_some(fh) }
        }
        op::SETATTR => {
            let valid = c.u32()?;
            c.skip(4)?;
            let (fh, size) = (c.u64()?, c.u64()?);
            c.skip(8)?; // lock_owner
            let (atime, mtime) = (c.u64()? as i64, c.u64()? as i64);
            c.skip(8)?; // ctime
            let (atimensec, mtimensec) = (c.u32()?, c.u32()?);
            c.skip(4)?; // ctimensec
            let mode = c.u32()?;
            c.skip(4)?;
            let (uid, gid) = (c.u32()?, c.u32()?);
            Op::SetAttr(SetAttrIn {
                valid,
                fh,
                size,
                atime: (atime, atimensec),
                mtime: (mtime, mtimensec),
                mode,
                uid,
                gid,
            })
        }
        op::READLINK => Op::ReadLink,
        op::SYMLINK => {
            let name = c.name()?;
            Op::Symlink { name, target: c.name()? }
        }
        op::MKNOD => {
            let (mode, rdev, umask) = (c.u32()?, c.u32()?, c.u32()?);
            c.skip(4)?;
            Op::MkNod { mode, rdev, umask, name: c.name()? }
        }
        op::MKDIR => {
            let (mode, umask) = (c.u32()?, c.u32()?);
            Op::MkDir { mode, umask, name: c.name()? }
        }
        op::UNLINK => Op::Unlink { name: c.name()? },
        op::RMDIR => Op::RmDir { name: c.name()? },
        op::RENAME => {
            let newdir = c.u64()?;
            let name = c.name()?;
            Op::Rename { newdir, flags: 0, name, newname: c.name()? }
        }
        op::RENAME2 => {
            let (newdir, flags) = (c.u64()?, c.u32()?);
            c.skip(4)?;
            let name = c.name()?;
            Op::Rename { newdir, flags, name, newname: c.name()? }
        }
        op::LINK => {
            let oldnode = c.u64()?;
            Op::Link { oldnode, newname: c.name()? }
        }
        op::OPEN => Op::Open { flags: c.u32()? },
        op::READ | op::READDIR | op::READDIRPLUS => {
            let (fh, offset, size) = (c.u64()?, c.u64()?, c.u32()?);
            match opcode {
                op::READ => Op::Read { fh, offset, size },
                _ => Op::ReadDir { fh, offset, size, plus: opcode == op::READDIRPLUS },
            }
        }
        op::WRITE => {
            let (fh, offset, size, write_flags) = (c.u64()?, c.u64()?, c.u32()?, c.u32()?);
            c.skip(16)?; // lock_owner, flags, padding
            let data = c.data(size as usize)?;
            Op::Write { fh, offset, write_flags, data }
        }
        op::STATFS => Op::StatFs,
        op::RELEASE => Op::Release { fh: c.u64()? },
        op::FSYNC | op::FSYNCDIR => {
            let fh = c.u64()?;
            let datasync = c.u32()? & abi::FSYNC_FDATASYNC != 0;
            match opcode {
                op::FSYNC => Op::Fsync { fh, datasync },
                _ => Op::FsyncDir { datasync },
            }
        }
        op::SETXATTR => {
            // The 8-byte form: FUSE_SETXATTR_EXT is never asked for.
            let (size, flags) = (c.u32()?, c.u32()?);
            let name = c.name()?;
            Op::SetXattr { flags, name, value: c.data(size as usize)? }
        }
        op::GETXATTR => {
            let size = c.u32()?;
            c.skip(4)?;
            Op::GetXattr { size, name: c.name()? }
        }
        op::LISTXATTR => Op::ListXattr { size: c.u32()? },
        op::REMOVEXATTR => Op::RemoveXattr { name: c.name()? },
        op::FLUSH => Op::Flush { fh: c.u64()? },
        op::OPENDIR => Op::OpenDir,
        op::RELEASEDIR => Op::ReleaseDir,
        op::ACCESS => Op::Access { mask: c.u32()? },
        op::CREATE => {
            let (flags, mode, umask) = (c.u32()?, c.u32()?, c.u32()?);
            c.skip(4)?;
            Op::Create { flags, mode, umask, name: c.name()? }
        }
        op::FALLOCATE => {
            let (fh, offset, length, mode) = (c.u64()?, c.u64()?, c.u64()?, c.u32()?);
            Op::Fallocate { fh, offset, length, mode }
        }
        op::LSEEK => {
            let (fh, offset, whence) = (c.u64()?, c.u64()? as i64, c.u32()?);
            Op::Lseek { fh, offset, whence }
        }
        op::COPY_FILE_RANGE => Op::CopyFileRange {
            fh_in: c.u64()?,
            off_in: c.u64()?,
            node_out: c.u64()?,
            fh_out: c.u64()?,
            off_out: c.u64()?,
            len: c.u64()?,
            flags: c.u64()?,
        },
        op::IOCTL => Op::Ioctl,
        _ => Op::Unknown,
    };
    Ok(o)
}
