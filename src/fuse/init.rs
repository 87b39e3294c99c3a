//! Capability negotiation with the kernel at FUSE INIT.

use fuser::{InitFlags, KernelConfig};

use super::FrontOptions;

/// Asks the kernel for each capability quotafs uses. A capability the kernel lacks is logged
/// and done without, never fatal.
///
/// Not asked for, on purpose:
/// * `FUSE_ASYNC_DIO`: the kernel's asynchronous direct-I/O path turns a short write, which is
///   how a write reaching a limit ends, into EIO; synchronous O_DIRECT gives the writer the
///   short count and then EDQUOT, as ext4 does (`tests/odirect_limit.rs`);
/// * `FUSE_PASSTHROUGH`: a passthrough open makes the kernel refuse every later
///   non-passthrough open of the inode, and passthrough writes bypass the limits
///   (docs/design.md §4);
/// * `FUSE_WRITEBACK_CACHE`: it would move EDQUOT from write() to close()/fsync().
pub(super) fn negotiate(config: &mut KernelConfig, opts: &FrontOptions) {
    let mut want = vec![
        // readdirplus when it pays (the kernel decides per directory stream).
        ("readdirplus", InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO),
        // Lookups and creates in one directory run in parallel.
        ("parallel dirops", InitFlags::FUSE_PARALLEL_DIROPS),
        // The kernel does not GETXATTR security.capability before every write: writes run
        // with the writer's credentials, so ext4 clears setuid/setgid/capabilities itself.
        ("killpriv v2", InitFlags::FUSE_HANDLE_KILLPRIV_V2),
        ("cache symlinks", InitFlags::FUSE_CACHE_SYMLINKS),
        // The kernel sends mode and umask unmasked; the worker thread takes the caller's
        // umask and ext4 applies it, unless the parent has a default ACL (POSIX semantics).
        ("dont mask", InitFlags::FUSE_DONT_MASK),
        // NFS export: the kernel may LOOKUP(node id, ".") and (dir, "..") to reopen file
        // handles; node ids and generations are the backing's, stable across restarts.
        ("export support", InitFlags::FUSE_EXPORT_SUPPORT),
    ];
    if opts.acl {
        want.push(("posix acl", InitFlags::FUSE_POSIX_ACL));
    }
    for (name, flags) in want {
        if let Err(missing) = config.add_capabilities(flags) {
            tracing::warn!(capability = name, ?missing, "kernel lacks a FUSE capability");
        }
    }
    if let Err(max) = config.set_max_write(opts.max_write) {
        let _ = config.set_max_write(max);
    }
    // Read requests as large as writes (max_pages follows the larger of the two); the
    // kernel offers its default readahead as the most it accepts here, and the mount raises
    // the window itself afterwards (`FrontOptions::read_ahead_kb`).
    if let Err(max) = config.set_max_readahead(opts.max_write) {
        let _ = config.set_max_readahead(max);
    }
    let _ = config.set_max_background(64);
    tracing::info!(max_write = opts.max_write, "FUSE session initialised");
}
