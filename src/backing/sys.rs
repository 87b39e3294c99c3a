//! Thin, documented wrappers around the Linux system calls quotafs makes on a backing file
//! system. This file and `creds.rs` are the only places in quotafs with `unsafe`.
//!
//! Every wrapper takes file descriptors and single path components, never a path string that
//! walks directories: a name is always resolved relative to a directory fd with
//! `AT_SYMLINK_NOFOLLOW` / `O_NOFOLLOW` (or `openat2` with `RESOLVE_BENEATH`), so a symlink a
//! tenant swaps in cannot lead the daemon anywhere.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::Errno;

pub type SysResult<T> = Result<T, Errno>;

fn last_errno() -> Errno {
    Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

fn cvt(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(last_errno()) } else { Ok(ret) }
}

fn cvt_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(last_errno()) } else { Ok(ret) }
}

fn cvt_size(ret: libc::ssize_t) -> SysResult<usize> {
    if ret < 0 { Err(last_errno()) } else { Ok(ret as usize) }
}

fn owned(fd: libc::c_int) -> SysResult<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const EMPTY: &CStr = c"";

/// Largest file handle we keep inline. ext4 uses 8 bytes (`FILEID_INO32_GEN`: inode number
/// and generation, little endian); 16 leaves room for the parent-carrying variant.
pub const HANDLE_MAX: usize = 16;

/// A kernel file handle (`struct file_handle`), as `name_to_handle_at` returns it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub kind: i32,
    len: u8,
    bytes: [u8; HANDLE_MAX],
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({}:", self.kind)?;
        for b in self.bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// `FILEID_INO32_GEN`, the handle type ext4 hands out for a plain `name_to_handle_at`.
pub const FILEID_INO32_GEN: i32 = 1;

impl Handle {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// An ext4 handle built from an inode number and generation. Generation 0 tells ext4 not
    /// to check it (`ext4_nfs_get_inode`), which lets a node id alone be reopened.
    pub fn ext4(ino: u32, generation: u32) -> Handle {
        let mut bytes = [0u8; HANDLE_MAX];
        bytes[..4].copy_from_slice(&ino.to_le_bytes());
        bytes[4..8].copy_from_slice(&generation.to_le_bytes());
        Handle { kind: FILEID_INO32_GEN, len: 8, bytes }
    }

    /// The inode number carried in an ext4 handle, if this is one.
    pub fn ext4_ino(&self) -> Option<u32> {
        (self.kind == FILEID_INO32_GEN && self.len >= 8)
            .then(|| u32::from_le_bytes(self.bytes[..4].try_into().expect("4 bytes")))
    }

    /// The inode generation carried in an ext4 handle, if this is one.
    pub fn ext4_generation(&self) -> Option<u32> {
        (self.kind == FILEID_INO32_GEN && self.len >= 8)
            .then(|| u32::from_le_bytes(self.bytes[4..8].try_into().expect("4 bytes")))
    }
}

#[repr(C)]
struct RawHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; HANDLE_MAX],
}

fn to_handle(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> SysResult<Handle> {
    let mut raw = RawHandle { handle_bytes: HANDLE_MAX as u32, handle_type: 0, f_handle: [0; HANDLE_MAX] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a `struct file_handle` with room for HANDLE_MAX bytes, as its
    // `handle_bytes` says; the kernel writes at most that many. `name` is NUL-terminated.
    let ret = unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            name.as_ptr(),
            (&raw mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            flags,
        )
    };
    cvt(ret)?;
    Ok(Handle { kind: raw.handle_type, len: raw.handle_bytes as u8, bytes: raw.f_handle })
}

/// The handle of `name` in `dir`, never following a final symlink.
pub fn name_to_handle(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<Handle> {
    to_handle(dir, name, 0)
}

/// The handle of the inode `fd` refers to (any fd, including `O_PATH`).
pub fn fd_to_handle(fd: BorrowedFd<'_>) -> SysResult<Handle> {
    to_handle(fd, EMPTY, libc::AT_EMPTY_PATH)
}

/// Opens the inode a handle names, on the file system `mount` lives on.
pub fn open_by_handle(mount: BorrowedFd<'_>, handle: &Handle, flags: libc::c_int) -> SysResult<OwnedFd> {
    let mut raw = RawHandle { handle_bytes: handle.len as u32, handle_type: handle.kind, f_handle: handle.bytes };
    // SAFETY: `raw` is a valid `struct file_handle` whose `handle_bytes` does not exceed its
    // array; the kernel only reads it.
    owned(unsafe {
        libc::open_by_handle_at(mount.as_raw_fd(), (&raw mut raw).cast::<libc::file_handle>(), flags | libc::O_CLOEXEC)
    })
}

/// `open(2)` of an absolute path chosen by the operator (the backing root, the state dir);
/// never used for a tenant-controlled name.
pub fn open_path(path: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: `path` is NUL-terminated.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Opens `name` in `dir` with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)`: the name cannot climb out of `dir` nor pass through any symlink.
pub fn openat_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: u32) -> SysResult<OwnedFd> {
    let mut how: libc::open_how = unsafe_zeroed_open_how();
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 { u64::from(mode) } else { 0 };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `how` is a fully initialised `struct open_how` and we pass its exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(cvt_long(ret)? as libc::c_int)
}

fn unsafe_zeroed_open_how() -> libc::open_how {
    // SAFETY: `open_how` is a plain C struct of integers; all-zero is a valid value.
    unsafe { MaybeUninit::<libc::open_how>::zeroed().assume_init() }
}

fn zeroed_stat() -> libc::stat {
    // SAFETY: `stat` is a plain C struct of integers; all-zero is a valid value.
    unsafe { MaybeUninit::<libc::stat>::zeroed().assume_init() }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<libc::stat> {
    let mut st = zeroed_stat();
    // SAFETY: `st` is a valid out-pointer; `name` is NUL-terminated.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `fstat` of any fd, `O_PATH` included.
pub fn stat_fd(fd: BorrowedFd<'_>) -> SysResult<libc::stat> {
    let mut st = zeroed_stat();
    // SAFETY: `st` is a valid out-pointer; the empty path with AT_EMPTY_PATH names `fd` itself.
    cvt(unsafe {
        libc::fstatat(fd.as_raw_fd(), EMPTY.as_ptr(), &mut st, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
    })?;
    Ok(st)
}

pub fn statfs_fd(fd: BorrowedFd<'_>) -> SysResult<libc::statfs> {
    // SAFETY: `statfs` is a plain C struct; zero is valid, and the kernel fills it.
    let mut st: libc::statfs = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub fn mknod_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: plain syscall with NUL-terminated strings; the target is stored, not followed.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Makes a new name for the inode `fd` refers to (`linkat(fd, "", ..., AT_EMPTY_PATH)`; needs
/// CAP_DAC_READ_SEARCH, so it runs with the daemon's own credentials).
pub fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: plain syscall on valid fds and NUL-terminated names.
    cvt(unsafe { libc::linkat(fd.as_raw_fd(), EMPTY.as_ptr(), dir.as_raw_fd(), name.as_ptr(), libc::AT_EMPTY_PATH) })
        .map(drop)
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn rename_at(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    flags: u32,
) -> SysResult<()> {
    // SAFETY: plain syscall on valid fds and NUL-terminated names.
    cvt(unsafe { libc::renameat2(old_dir.as_raw_fd(), old.as_ptr(), new_dir.as_raw_fd(), new.as_ptr(), flags) })
        .map(drop)
}

/// The target of the symlink `fd` (an `O_PATH` fd of the link itself).
pub fn readlink_fd(fd: BorrowedFd<'_>) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its whole length, which we pass.
    let n = cvt_size(unsafe { libc::readlinkat(fd.as_raw_fd(), EMPTY.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf)
}

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`: works on `O_PATH` fds (Linux 6.6+).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> SysResult<()> {
    // SAFETY: plain syscall; the empty path with AT_EMPTY_PATH names `fd` itself.
    cvt_long(unsafe { libc::syscall(libc::SYS_fchmodat2, fd.as_raw_fd(), EMPTY.as_ptr(), mode, libc::AT_EMPTY_PATH) })
        .map(drop)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`; `None` leaves that id unchanged.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> SysResult<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: plain syscall; -1 (u32::MAX) means "unchanged" to the kernel.
    cvt(unsafe {
        libc::fchownat(fd.as_raw_fd(), EMPTY.as_ptr(), uid, gid, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
    })
    .map(drop)
}

/// A timestamp argument for `utimens_fd`.
#[derive(Clone, Copy, Debug)]
pub enum TimeSpec {
    Omit,
    Now,
    At { secs: i64, nanos: u32 },
}

impl TimeSpec {
    fn raw(self) -> libc::timespec {
        match self {
            TimeSpec::Omit => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
            TimeSpec::Now => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
            TimeSpec::At { secs, nanos } => libc::timespec { tv_sec: secs, tv_nsec: i64::from(nanos) },
        }
    }
}

pub fn utimens_fd(fd: BorrowedFd<'_>, atime: TimeSpec, mtime: TimeSpec) -> SysResult<()> {
    let times = [atime.raw(), mtime.raw()];
    // SAFETY: `times` holds two valid timespecs; AT_EMPTY_PATH names `fd` itself.
    cvt(unsafe {
        libc::utimensat(fd.as_raw_fd(), EMPTY.as_ptr(), times.as_ptr(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
    })
    .map(drop)
}

pub fn truncate_fd(fd: BorrowedFd<'_>, size: u64) -> SysResult<()> {
    let size = i64::try_from(size).map_err(|_| Errno(libc::EFBIG))?;
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }).map(drop)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> SysResult<()> {
    let offset = i64::try_from(offset).map_err(|_| Errno(libc::EFBIG))?;
    let len = i64::try_from(len).map_err(|_| Errno(libc::EFBIG))?;
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) }).map(drop)
}

pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    let offset = i64::try_from(offset).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `buf` is writable for its whole length, which we pass.
    cvt_size(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) })
}

pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> SysResult<usize> {
    let offset = i64::try_from(offset).map_err(|_| Errno(libc::EFBIG))?;
    // SAFETY: `buf` is readable for its whole length, which we pass.
    cvt_size(unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset) })
}

/// `pwritev2` of one buffer with `RWF_*` flags (`RWF_APPEND` writes at the end of file,
/// whatever `offset`; `RWF_SYNC`/`RWF_DSYNC` as O_SYNC/O_DSYNC for this write only).
pub fn pwrite_flags(fd: BorrowedFd<'_>, buf: &[u8], offset: u64, flags: i32) -> SysResult<usize> {
    if flags == 0 {
        return pwrite(fd, buf, offset);
    }
    let offset = i64::try_from(offset).map_err(|_| Errno(libc::EFBIG))?;
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one iovec describing `buf`, readable for its whole length; the kernel only reads it.
    cvt_size(unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, offset, flags) })
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { if datasync { libc::fdatasync(fd.as_raw_fd()) } else { libc::fsync(fd.as_raw_fd()) } }).map(drop)
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> SysResult<i64> {
    // SAFETY: plain syscall on a valid fd.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

pub fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: usize,
    flags: u32,
) -> SysResult<usize> {
    let mut off_in = i64::try_from(off_in).map_err(|_| Errno(libc::EINVAL))?;
    let mut off_out = i64::try_from(off_out).map_err(|_| Errno(libc::EFBIG))?;
    // SAFETY: the offsets are valid in/out pointers for the call; the fds are open.
    cvt_size(unsafe {
        libc::copy_file_range(fd_in.as_raw_fd(), &mut off_in, fd_out.as_raw_fd(), &mut off_out, len, flags)
    })
}

/// `faccessat2(fd, "", mode, AT_EMPTY_PATH)` with the thread's current fs credentials.
pub fn access_fd(fd: BorrowedFd<'_>, mode: i32) -> SysResult<()> {
    // SAFETY: plain syscall; the empty path with AT_EMPTY_PATH names `fd` itself.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mode,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    })
    .map(drop)
}

/// One entry of a directory read with `getdents64`.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    /// Cookie to `lseek` to for the entry after this one.
    pub next_offset: i64,
    /// `DT_*` type.
    pub kind: u8,
    pub name: CString,
}

/// Reads the next batch of entries from a directory fd at its current position.
/// An empty result means end of directory.
pub fn read_dir(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<Vec<DirEntry>> {
    // SAFETY: `buf` is writable for its whole length, which we pass.
    let n =
        cvt_long(unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) })? as usize;
    let mut out = Vec::new();
    let mut pos = 0;
    // linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type, char d_name[].
    while pos + 19 <= n {
        let ino = u64::from_ne_bytes(buf[pos..pos + 8].try_into().expect("8 bytes"));
        let off = i64::from_ne_bytes(buf[pos + 8..pos + 16].try_into().expect("8 bytes"));
        let reclen = u16::from_ne_bytes(buf[pos + 16..pos + 18].try_into().expect("2 bytes")) as usize;
        let kind = buf[pos + 18];
        if reclen == 0 || pos + reclen > n {
            break;
        }
        let name = CStr::from_bytes_until_nul(&buf[pos + 19..pos + reclen]).map_err(|_| Errno(libc::EIO))?;
        out.push(DirEntry { ino, next_offset: off, kind, name: name.to_owned() });
        pos += reclen;
    }
    Ok(out)
}

/// `fgetxattr`; with an empty `buf` it returns the value's size.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its whole length, which we pass (NULL-safe when empty).
    cvt_size(unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn set_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8], flags: i32) -> SysResult<()> {
    // SAFETY: `value` is readable for its whole length, which we pass.
    cvt(unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), flags) }).map(drop)
}

pub fn list_xattr(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its whole length, which we pass.
    cvt_size(unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn remove_xattr(fd: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: plain syscall with a NUL-terminated name.
    cvt(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Lazily detaches the mount at `path` (`umount2(MNT_DETACH)`).
pub fn umount_detach(path: &CStr) -> SysResult<()> {
    // SAFETY: plain syscall with a NUL-terminated path.
    cvt(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Raises the soft open-file limit to the hard limit (allowed without CAP_SYS_RESOURCE);
/// returns the limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `want` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// `flock(LOCK_EX | LOCK_NB)`: false if another process holds the lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> SysResult<bool> {
    // SAFETY: plain syscall on a valid fd.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(Errno(libc::EWOULDBLOCK)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `syncfs`: flushes every dirty page and inode of the file system `fd` lives on.
pub fn syncfs(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// x86-64 number of `getxattrat` (Linux 6.13+); the libc crate does not have it yet.
const SYS_GETXATTRAT: libc::c_long = 464;

#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// The xattr `xname` of `name` in `dir`, not following a final symlink (`getxattrat` with
/// AT_SYMLINK_NOFOLLOW); `dir` may be an `O_PATH` fd. Returns the value's length.
/// Kernels before 6.13 lack `getxattrat`: the same is then done with an `O_PATH` open of the
/// entry and `/proc/self/fd` (one more syscall and a descriptor).
pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &CStr, xname: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    static NO_GETXATTRAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !NO_GETXATTRAT.load(std::sync::atomic::Ordering::Relaxed) {
        match getxattrat(dir, name, xname, buf) {
            Err(Errno(libc::ENOSYS)) => NO_GETXATTRAT.store(true, std::sync::atomic::Ordering::Relaxed),
            other => return other,
        }
    }
    let fd = open_entry(dir, name)?;
    get_xattr_of(fd.as_fd(), xname, buf)
}

fn getxattrat(dir: BorrowedFd<'_>, name: &CStr, xname: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    let mut args = XattrArgs { value: buf.as_mut_ptr() as u64, size: buf.len() as u32, flags: 0 };
    // SAFETY: `args` points at `buf`, writable for `size` bytes; the strings are NUL-terminated
    // and we pass the exact size of the argument struct.
    cvt_long(unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            xname.as_ptr(),
            &raw mut args,
            std::mem::size_of::<XattrArgs>(),
        )
    })
    .map(|n| n as usize)
}

/// Starts reading the page that holds the end of `fd`'s file into the page cache and returns
/// without waiting for it. An append to a file whose size is not page-aligned must read that
/// page first (read-modify-write); asked at the open, the read overlaps what comes before the
/// first write. Best effort: an error only means no prefetch.
pub fn prefetch_tail(fd: BorrowedFd<'_>) {
    const PAGE: i64 = 4096;
    let Ok(st) = stat_fd(fd) else { return };
    if st.st_size <= 0 || st.st_size % PAGE == 0 {
        return;
    }
    // SAFETY: plain syscall on a valid fd; it touches no memory of ours.
    unsafe { libc::posix_fadvise(fd.as_raw_fd(), st.st_size & !(PAGE - 1), PAGE, libc::POSIX_FADV_WILLNEED) };
}

/// `/proc/self/fd/N` of a descriptor. The kernel resolves this magic link to exactly the inode
/// the descriptor holds, whatever its type; no tenant-controlled name is walked.
fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// Reads xattr `xname` of the inode `fd` refers to; works for `O_PATH` descriptors of any
/// inode type, symlinks included (xattr calls on the fd itself refuse `O_PATH`).
pub fn get_xattr_of(fd: BorrowedFd<'_>, xname: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    let path = proc_fd_path(fd);
    // SAFETY: `buf` is writable for its whole length, which we pass; strings are NUL-terminated.
    cvt_size(unsafe { libc::getxattr(path.as_ptr(), xname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Sets xattr `xname` on the inode `fd` refers to (any inode type, `O_PATH` fds included).
pub fn set_xattr_of(fd: BorrowedFd<'_>, xname: &CStr, value: &[u8]) -> SysResult<()> {
    let path = proc_fd_path(fd);
    // SAFETY: `value` is readable for its whole length, which we pass; strings are NUL-terminated.
    cvt(unsafe { libc::setxattr(path.as_ptr(), xname.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// Opens `name` in `dir` as an `O_PATH` descriptor of the entry itself (never following it).
pub fn open_entry(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })
}

/// The parent of directory `dir`, as an `O_PATH` descriptor (the root's parent is itself).
pub fn openat_dotdot(dir: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    open_dotdot(dir, libc::O_PATH)
}

/// The parent of directory `dir`, opened with `flags` (`O_PATH` or `O_RDONLY`).
pub fn open_dotdot(dir: BorrowedFd<'_>, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall on a valid fd and a NUL-terminated name.
    owned(unsafe {
        libc::openat(dir.as_raw_fd(), c"..".as_ptr(), flags | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
    })
}

/// A fanotify group watching the whole file system of `fd` for changes to names, data and
/// attributes (events carry the changer's pid; no descriptors are opened for them).
pub fn fanotify_watch_fs(fd: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with flag arguments.
    let group = owned(unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_REPORT_FID,
            (libc::O_RDONLY | libc::O_CLOEXEC) as libc::c_uint,
        )
    })?;
    let mask = libc::FAN_MODIFY
        | libc::FAN_ATTRIB
        | libc::FAN_CLOSE_WRITE
        | libc::FAN_CREATE
        | libc::FAN_DELETE
        | libc::FAN_MOVED_FROM
        | libc::FAN_MOVED_TO
        | libc::FAN_DELETE_SELF
        | libc::FAN_ONDIR;
    // SAFETY: both fds are valid; a NULL path marks the file system `fd` is on.
    cvt(unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            mask,
            fd.as_raw_fd(),
            std::ptr::null(),
        )
    })?;
    Ok(group)
}

/// Reads a batch of fanotify events and returns the pid of each (a short read of nothing when
/// `timeout_ms` passes without one).
pub fn fanotify_pids(group: BorrowedFd<'_>, buf: &mut [u8], timeout_ms: i32) -> SysResult<Vec<i32>> {
    let mut pfd = libc::pollfd { fd: group.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    if cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })? == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: `buf` is writable for its whole length, which we pass.
    let n = cvt_size(unsafe { libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
    let mut pids = Vec::new();
    let mut at = 0;
    while at + meta <= n {
        // SAFETY: the kernel wrote a whole event metadata struct at `at` (checked against `n`);
        // read_unaligned because the buffer has byte alignment.
        let m: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        if m.event_len < meta as u32 {
            break;
        }
        if m.fd >= 0 {
            // SAFETY: an event fd is ours to close (none are sent with FAN_REPORT_FID).
            unsafe { libc::close(m.fd) };
        }
        pids.push(m.pid);
        at += m.event_len as usize;
    }
    Ok(pids)
}

/// Lowers the calling thread's CPU priority to `nice` (Linux keeps a nice value per thread).
pub fn set_thread_nice(nice: i32) -> SysResult<()> {
    // SAFETY: gettid and setpriority touch no memory; PRIO_PROCESS with a thread id applies
    // to that thread only.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) }).map(drop)
}

/// The uid of the process at the other end of a connected Unix socket (`SO_PEERCRED`): the
/// kernel's word, not the peer's.
pub fn peer_uid(sock: BorrowedFd<'_>) -> SysResult<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid out-buffer of `len` bytes for SO_PEERCRED.
    cvt(unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len)
    })?;
    Ok(cred.uid)
}

/// `poll(2)` on `fds` for at most `timeout_ms` (negative: no limit). Returns how many entries
/// have events in `revents`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> SysResult<usize> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structures.
    cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }).map(|n| n as usize)
}

/// Sends `sig` to process group `pgid` (a child started with `process_group(0)`: its pid).
pub fn kill_group(pgid: u32, sig: libc::c_int) -> SysResult<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| Errno(libc::ESRCH))?;
    if pgid <= 1 {
        return Err(Errno(libc::ESRCH));
    }
    // SAFETY: kill(2) takes plain integers; a negative pid names a process group (never 0
    // or -1, which would signal our own group or every process: refused above).
    cvt(unsafe { libc::kill(-pgid, sig) }).map(|_| ())
}

/// A new memfd named `name`, without `MFD_CLOEXEC` (it is made to be inherited across exec).
pub fn memfd_inheritable(name: &std::ffi::CStr) -> SysResult<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the call returns a new descriptor or -1.
    owned(unsafe { libc::memfd_create(name.as_ptr(), 0) })
}

/// Takes ownership of descriptor `fd`, inherited from the parent process, once it is known to
/// be an open regular file (a memfd is one); EBADF otherwise. Marked close-on-exec.
pub fn inherited_regular(fd: i32) -> SysResult<OwnedFd> {
    if fd < 3 {
        return Err(Errno(libc::EBADF));
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the valid out-pointer; a closed fd is EBADF.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno(libc::EBADF));
    }
    // SAFETY: F_SETFD on an open descriptor with a plain integer argument.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the descriptor is open (fstat succeeded), and the parent handed it to this
    // process alone to own: nothing else in this process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
