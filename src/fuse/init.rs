//! Capability negotiation with the kernel at FUSE INIT.

use super::FrontOptions;
use crate::wire::abi::{self, init};
use crate::wire::decode::InitIn;
use crate::wire::encode::InitOut;

/// Why INIT was refused.
#[derive(Debug)]
pub struct InitError(pub String);

/// The capabilities quotafs asks for, each with why. A capability the kernel lacks is logged
/// and done without, never fatal.
///
/// Not asked for, on purpose:
/// * `FUSE_ASYNC_DIO`: the kernel's asynchronous direct-I/O path turns a short write, which is
///   how a write reaching a limit ends, into EIO; synchronous O_DIRECT gives the writer the
///   short count and then EDQUOT, as ext4 does (`tests/odirect_limit.rs`);
/// * `FUSE_PASSTHROUGH`: a passthrough open makes the kernel refuse every later
///   non-passthrough open of the inode, and passthrough writes bypass the limits
///   (docs/design.md §4);
/// * `FUSE_WRITEBACK_CACHE`: it would move EDQUOT from write() to close()/fsync();
/// * `FUSE_SETXATTR_EXT`, `FUSE_SECURITY_CTX`, `FUSE_CREATE_SUPP_GROUP`: request layouts
///   `wire::decode` does not read.
fn wanted(opts: &FrontOptions) -> Vec<(&'static str, u64)> {
    let mut want = vec![
        // Reads of one file in parallel, and writes larger than a page.
        ("async read", init::ASYNC_READ),
        ("big writes", init::BIG_WRITES),
        ("max pages", init::MAX_PAGES),
        // readdirplus when it pays (the kernel decides per directory stream).
        ("readdirplus", init::DO_READDIRPLUS | init::READDIRPLUS_AUTO),
        // Lookups and creates in one directory run in parallel.
        ("parallel dirops", init::PARALLEL_DIROPS),
        // The kernel does not GETXATTR security.capability before every write: writes run
        // with the writer's credentials, so ext4 clears setuid/setgid/capabilities itself.
        ("killpriv v2", init::HANDLE_KILLPRIV_V2),
        ("cache symlinks", init::CACHE_SYMLINKS),
        // The kernel sends mode and umask unmasked; the worker thread takes the caller's
        // umask and ext4 applies it, unless the parent has a default ACL (POSIX semantics).
        ("dont mask", init::DONT_MASK),
        // NFS export: the kernel may LOOKUP(node id, ".") and (dir, "..") to reopen file
        // handles; node ids and generations are the backing's, stable across restarts.
        ("export support", init::EXPORT_SUPPORT),
        // OPENDIR is answered ENOSYS once (readdir is stateless).
        ("no opendir", init::NO_OPENDIR_SUPPORT),
    ];
    if opts.acl {
        want.push(("posix acl", init::POSIX_ACL));
    }
    if opts.transport != crate::config::Transport::Classic {
        // Requests over io_uring ring entries once every queue has one (`uring`).
        want.push(("io_uring", init::OVER_IO_URING));
    }
    want
}

/// The reply to the kernel's INIT: its version if it speaks ours (7.36 or later), the wanted
/// capabilities it offers, and the sizes of `opts`.
pub fn negotiate(kernel: &InitIn, opts: &FrontOptions) -> Result<InitOut, InitError> {
    if kernel.major != abi::KERNEL_VERSION || kernel.minor < abi::MIN_MINOR_VERSION {
        return Err(InitError(format!(
            "the kernel speaks FUSE {}.{}; quotafs needs {}.{} or later (Linux 5.17+)",
            kernel.major,
            kernel.minor,
            abi::KERNEL_VERSION,
            abi::MIN_MINOR_VERSION
        )));
    }
    let mut flags = init::INIT_EXT;
    for (name, bits) in wanted(opts) {
        if kernel.flags & bits == bits {
            flags |= bits;
        } else {
            tracing::warn!(capability = name, "kernel lacks a FUSE capability");
        }
    }
    let page = 4096u32;
    let max_write = opts.max_write.max(page);
    let max_pages = max_write.div_ceil(page).min(u32::from(u16::MAX)) as u16;
    // Read requests as large as writes; the kernel offers its largest readahead and the mount
    // raises its window itself afterwards (`FrontOptions::read_ahead_kb`).
    let max_readahead = kernel.max_readahead.min(max_write);
    tracing::info!(max_write, minor = kernel.minor.min(abi::KERNEL_MINOR_VERSION), "FUSE session initialised");
    Ok(InitOut {
        major: abi::KERNEL_VERSION,
        minor: kernel.minor.min(abi::KERNEL_MINOR_VERSION),
        max_readahead,
        flags,
        max_background: 64,
        congestion_threshold: 48,
        max_write,
        max_pages,
    })
}
