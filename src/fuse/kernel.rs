//! The FUSE device and the mount, as system calls: open /dev/fuse, clone a descriptor of the
//! connection for another reader, mount(2) a connection on a directory, unmount it. The only
//! `unsafe` of the FUSE front lives here.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

fn cstring(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{} contains a NUL byte", p.display())))
}

/// A new descriptor of /dev/fuse (not yet a connection: mount one on it, or clone one).
pub fn open_device() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open("/dev/fuse").map_err(|e| {
        io::Error::new(e.kind(), format!("cannot open /dev/fuse ({e}); is the fuse module loaded and are we root?"))
    })
}

/// A /dev/fuse descriptor a supervisor left open across exec (its number given in the
/// environment): checked to be open and to be the FUSE device (char 10:229) before it is owned.
pub fn inherited(fd: i32) -> io::Result<File> {
    let not_fuse = || io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {fd} is not /dev/fuse"));
    if fd < 3 {
        return Err(not_fuse());
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the valid out-pointer; a closed fd is EBADF.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(10, 229) {
        return Err(not_fuse());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is open (fstat above), is the FUSE device, and nothing else in this process
    // owns it: it was inherited for this purpose and is taken once, here.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Leaves `dev` open across exec (for the serving process a supervisor starts).
pub fn keep_across_exec(dev: &File) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own, with a plain integer argument.
    if unsafe { libc::fcntl(dev.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FUSE_DEV_IOC_CLONE` (`_IOR(229, 0, uint32_t)`).
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;

/// Another descriptor of the connection `fd` serves, with its own queue of requests being
/// processed (a reply must be written to the descriptor its request was read from).
pub fn clone_device(fd: BorrowedFd<'_>) -> io::Result<File> {
    let new = open_device()?;
    let mut src: u32 = fd.as_raw_fd() as u32;
    // SAFETY: `new` is an open descriptor we own; the ioctl reads one u32 from a valid pointer.
    let r = unsafe { libc::ioctl(new.as_raw_fd(), FUSE_DEV_IOC_CLONE, &mut src as *mut u32) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// Mounts the connection of `dev` on `mountpoint` as `fuse.<subtype>` with source `fsname`,
/// `nosuid,nodev`, the kernel's permission checks and access for every user (we are root).
pub fn mount(dev: &File, mountpoint: &Path, fsname: &str, subtype: &str) -> io::Result<()> {
    let target = cstring(mountpoint)?;
    let source = CString::new(fsname.replace('\0', ""))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file system name with a NUL byte"))?;
    let fstype = CString::new(format!("fuse.{subtype}"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "subtype with a NUL byte"))?;
    let mode = std::fs::metadata(mountpoint)?;
    use std::os::unix::fs::MetadataExt;
    let data = CString::new(format!(
        "fd={},rootmode={:o},user_id=0,group_id=0,default_permissions,allow_other",
        dev.as_raw_fd(),
        mode.mode() & libc::S_IFMT
    ))
    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mount data with a NUL byte"))?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `mountpoint`; with `lazy`, detaches a busy mount (it ends when its last user goes).
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let target = cstring(mountpoint)?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `target` is a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes reads of `dev` return EAGAIN instead of waiting (the flag belongs to the open file
/// description: every process holding it sees it).
pub fn set_nonblocking(dev: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller holds open, with integer arguments.
    let flags = unsafe { libc::fcntl(dev.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    // SAFETY: as above.
    if unsafe { libc::fcntl(dev.as_raw_fd(), libc::F_SETFL, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `dev` has a request to read (or its connection is gone: the read says which),
/// or `stop` becomes readable. Returns false for `stop`.
pub fn wait_readable(dev: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd { fd: dev.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: stop.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
        if fds[0].revents != 0 {
            return Ok(true);
        }
    }
}
