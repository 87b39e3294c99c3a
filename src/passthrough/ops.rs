//! The operations' view of the layer: `Ops` borrows the long-lived `Backend` and the process's
//! `ServingState` (two references, `Copy`), and hands out one type per concern, each a thin
//! wrapper over it: `Names` (namespace.rs), `Attrs` (attr.rs), `Files` (file.rs), `Dirs`
//! (dir.rs), `Pins` (account.rs: opens and closes of unlinked files), `Projects`
//! (project.rs), `Routed` (routing.rs). Every concern reaches the state the same way
//! (`self.be`, `self.st`), so what an operation touches that a new process would have to
//! rebuild is what it reads from `st`.
//!
//! What every concern shares lives here: resolving a node id to its inode and descriptor,
//! registering an entry handed to the kernel, the tag cache. The accounting guard is begun
//! from `Ops` too (`accounting.rs`).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::Entry;
use super::account::untagged;
use super::backend::Backend;
use super::session::ServingState;
use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::inode::{self, Inode};
use crate::tag::{self, Tag};

/// The backend and the serving state, borrowed for one operation.
#[derive(Clone, Copy)]
pub(super) struct Ops<'a> {
    pub be: &'a Backend,
    pub st: &'a ServingState,
}

macro_rules! concern {
    ($(#[$doc:meta])* $name:ident, $make:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(super) struct $name<'a>(Ops<'a>);

        impl<'a> std::ops::Deref for $name<'a> {
            type Target = Ops<'a>;
            fn deref(&self) -> &Ops<'a> {
                &self.0
            }
        }

        impl<'a> Ops<'a> {
            pub fn $make(self) -> $name<'a> {
                $name(self)
            }
        }
    };
}

concern!(
    /// Name operations: lookup, create, mkdir, mknod, symlink, link, unlink, rmdir, rename,
    /// readlink (`namespace.rs`).
    Names,
    names
);
concern!(
    /// Attributes, statfs and extended attributes (`attr.rs`, `statfs.rs`).
    Attrs,
    attrs
);
concern!(
    /// Open files and their data (`file.rs`).
    Files,
    files
);
concern!(
    /// Directory listings (`dir.rs`).
    Dirs,
    dirs
);
concern!(
    /// The pin protocol of opens and last closes of unlinked files (`account.rs`).
    Pins,
    pins
);
concern!(
    /// Project assignment of a tree (`project.rs`).
    Projects,
    projects
);
concern!(
    /// What the router's answers mean for nodes and accounting (`routing.rs`).
    Routed,
    routed
);

impl<'a> Ops<'a> {
    pub fn backing(&self, index: BackingIndex) -> Result<&'a Backing, Errno> {
        self.be.backing(index)
    }

    /// The inode of node `id`. After a takeover the kernel names nodes an earlier process
    /// handed out: a plain id the table does not hold is resolved from the id itself (as an
    /// NFS handle is, `Names::lookup_node`), and then held with one reference.
    pub fn inode(&self, id: u64) -> Result<Arc<Inode>, Errno> {
        match self.st.nodes.get(id) {
            Err(Errno(libc::ESTALE)) if self.st.init.adopted() => {
                self.names().lookup_node(id)?;
                self.st.nodes.get(id)
            }
            r => r,
        }
    }

    /// The inode and an `O_PATH` fd of it.
    pub fn resolve(&self, id: u64) -> Result<(Arc<Inode>, Arc<OwnedFd>), Errno> {
        let inode = self.inode(id)?;
        let fd = self.st.nodes.path_fd(&inode, self.backing(inode.backing)?)?;
        Ok((inode, fd))
    }

    /// A directory's inode and `O_PATH` fd; ENOTDIR for anything else.
    pub fn resolve_dir(&self, id: u64) -> Result<(Arc<Inode>, Arc<OwnedFd>), Errno> {
        let (inode, fd) = self.resolve(id)?;
        if !inode.is_dir() {
            return Err(Errno(libc::ENOTDIR));
        }
        Ok((inode, fd))
    }

    /// Hands the inode `st`/`handle` of `backing` to the kernel: one lookup reference.
    pub fn register(&self, backing: &Backing, st: &libc::stat, handle: sys::Handle) -> Result<Entry, Errno> {
        if st.st_dev != backing.dev {
            // Another file system is mounted inside the backing: its handles would not resolve
            // against our mount fd, so it is not served.
            tracing::warn!(dev = st.st_dev, "refusing to cross a mount point inside the backing");
            return Err(Errno(libc::EACCES));
        }
        let id = inode::node_id(backing, st.st_ino)?;
        let inode = self.st.nodes.reference(id, backing.index, st.st_ino, handle, st.st_mode & libc::S_IFMT);
        Ok(Entry { attr: super::to_attr(st, inode.id), generation: u64::from(inode.generation) })
    }

    /// Gives back `n` lookup references to node `id`.
    pub fn forget(&self, id: u64, n: u64) {
        self.st.nodes.forget(id, n);
    }

    /// Refuses `name` in directory `dir` with `errno` if it is the daemon's own entry (the
    /// ledger's journal directory at a backing root): it does not exist for the mount.
    pub fn refuse_private(&self, dir: &Inode, name: &std::ffi::CStr, errno: i32) -> Result<(), Errno> {
        if self.backing(dir.backing)?.is_private(dir.ino, name) { Err(Errno(errno)) } else { Ok(()) }
    }

    /// The tag the inode table holds, still current, for the inode `handle` (ext4 number
    /// `ino`) if the kernel holds it (the victim of an unlink the kernel just looked up): the
    /// same handle (number and generation) under its plain node id, so never another inode
    /// that reused the number.
    pub fn cached_tag(&self, backing: BackingIndex, handle: &sys::Handle, ino: u64) -> Option<Tag> {
        let id = crate::inode::node_id(self.backing(backing).ok()?, ino).ok()?;
        let inode = self.st.nodes.get(id).ok()?;
        if inode.backing != backing || inode.handle != *handle {
            return None;
        }
        self.current_tag(&inode).ok()
    }

    /// The tag of `inode`, from its cache while no tag in its stripe was written since the
    /// cache was filled, else read through `fd` (any descriptor of it). A stale cached project
    /// would log wrong "before" values, which recovery then replays (design Appendix A).
    pub fn tag_of(&self, inode: &Inode, fd: BorrowedFd<'_>) -> Result<Tag, Errno> {
        let stamp = match self.current_tag(inode) {
            Ok(t) => return Ok(t),
            Err(stamp) => stamp,
        };
        let t = tag::read_fd(fd)?.unwrap_or_else(|| untagged(inode.key()));
        *inode.tag.lock() = Some((t, stamp));
        Ok(t)
    }

    /// `inode`'s cached tag if still current, else the stripe's tag stamp to cache a fresh
    /// read under (read before the tag is, as `stripes` requires).
    fn current_tag(&self, inode: &Inode) -> Result<Tag, u64> {
        let stamp = self.st.nodes.stripes().tag_stamp(inode.backing, inode.ino);
        match *inode.tag.lock() {
            Some((t, s)) if s == stamp => Ok(t),
            _ => Err(stamp),
        }
    }
}
