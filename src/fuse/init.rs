//! Capability negotiation with the kernel at FUSE INIT.

use fuser::{InitFlags, KernelConfig};

use super::FrontOptions;

/// Asks the kernel for each capability quotafs uses; returns whether passthrough was granted.
/// A capability the kernel lacks is logged and done without, never fatal.
pub(super) fn negotiate(config: &mut KernelConfig, opts: &FrontOptions, want_passthrough: bool) -> bool {
    let mut want = vec![
        // readdirplus when it pays (the kernel decides per directory stream).
        ("readdirplus", InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO),
        // Lookups and creates in one directory run in parallel.
        ("parallel dirops", InitFlags::FUSE_PARALLEL_DIROPS),
        // The kernel does not GETXATTR security.capability before every write: writes run
        // with the writer's credentials, so ext4 clears setuid/setgid/capabilities itself.
        ("killpriv v2", InitFlags::FUSE_HANDLE_KILLPRIV_V2),
        // Writers are direct-I/O opens; this keeps shared mmap working for them.
        ("direct io mmap", InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP),
        ("async dio", InitFlags::FUSE_ASYNC_DIO),
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
    if want_passthrough {
        want.push(("passthrough", InitFlags::FUSE_PASSTHROUGH));
    }
    let mut passthrough = false;
    for (name, flags) in want {
        match config.add_capabilities(flags) {
            Ok(()) => {
                if flags == InitFlags::FUSE_PASSTHROUGH {
                    passthrough = true;
                }
            }
            Err(missing) => tracing::warn!(capability = name, ?missing, "kernel lacks a FUSE capability"),
        }
    }
    if passthrough && config.set_max_stack_depth(1).is_err() {
        passthrough = false;
    }
    if let Err(max) = config.set_max_write(opts.max_write) {
        let _ = config.set_max_write(max);
    }
    if let Err(max) = config.set_max_readahead(1 << 20) {
        let _ = config.set_max_readahead(max);
    }
    let _ = config.set_max_background(64);
    tracing::info!(passthrough, max_write = opts.max_write, "FUSE session initialised");
    passthrough
}
