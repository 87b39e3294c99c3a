//! The passthrough layer: every file-system operation, done on the backing store through
//! descriptors, returning `Result<_, Errno>`. It knows nothing of the FUSE wire protocol (the
//! `fuse` front turns results into replies). Each usage-changing operation goes through one
//! guard, `accounting::Op`, which reserves against limits, logs and settles its charge with the
//! ledger around the syscall itself.
//!
//! Operations are grouped by concern: `namespace` (names: lookup, create, link, rename, ...),
//! `attr` (attributes and xattrs), `file` (open files and their data), `dir` (directory
//! listings), `accounting` (the guard), `account` (block arithmetic, tag cache, opens and
//! closes of unlinked files), `project` (project assignment), `routing` (what the router's
//! answers mean for nodes and accounting: hidden parents, moved and removed counterparts).
//!
//! A name operation runs in three steps, operation → route → backing call: it validates the
//! name, asks the router (`crate::passthrough::router::Router`) where the name lives (this directory, or a
//! routed directory on another backing, with its hidden parents made first), and makes its
//! backing call there.

mod account;
mod accounting;
pub mod attr;
pub mod dir;
mod file;
mod namespace;
mod project;
pub mod router;
mod routing;
mod statfs;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

pub use dir::DirEntryOut;
pub use file::Opened;
pub use project::AssignError;

use crate::backing::creds::Caller;
use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::ids::InodeRef;
use crate::inode::handles::{HandleTable, OpenFile, OpenLimits};
use crate::inode::{self, Inode, InodeTable, ROOT_ID, Stripes};
use crate::ledger::{Beside, Ledger};
use crate::passthrough::router::Router;
use crate::quota::enforce::Enforcer;
use dashmap::DashMap;

/// Settings of the passthrough layer (from the validated config).
#[derive(Clone, Debug)]
pub struct Options {
    /// Entries in the `O_PATH` fd cache.
    pub fd_cache: usize,
    /// Subtrees served from other backings (empty: one backing).
    pub routes: crate::route::Routes,
    /// Files one non-root uid may hold open through the mount (`inode::handles`).
    pub opens_per_uid: usize,
    /// Data descriptors the daemon may hold for open files in all.
    pub max_data_fds: usize,
}

/// An entry handed to the kernel: attributes and generation. Each one returned by this layer
/// has taken one lookup reference (see `inode`).
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub attr: FileAttr,
    pub generation: u64,
}

/// File-system statistics of a backing, as `statfs` reports them.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

pub struct Passthrough {
    backings: Arc<Vec<Backing>>,
    ledger: Arc<Ledger>,
    /// Limits in force, grace timers, refusals (loaded from the ledger's store).
    quota: Arc<Enforcer>,
    /// Open handles per inode (an unlinked inode stays charged until its last close).
    open_count: DashMap<InodeRef, u32>,
    inodes: InodeTable,
    files: HandleTable<OpenFile>,
    /// The descriptor budget of open files.
    limits: Arc<OpenLimits>,
    /// Where operations on names run (routed subtrees).
    router: Router,
    opts: Options,
    /// Apply the request's umask when creating (set when FUSE_DONT_MASK is negotiated: the
    /// kernel then leaves the umask to the file system).
    apply_umask: std::sync::atomic::AtomicBool,
}

impl Passthrough {
    /// The layer over `backings`, settling with `ledger`, enforcing `quota`; `stripes` are the
    /// inode table's locks and tag stamps, shared with what changes inodes outside a request.
    pub fn new(
        backings: Arc<Vec<Backing>>,
        ledger: Arc<Ledger>,
        quota: Arc<Enforcer>,
        stripes: Arc<Stripes>,
        opts: Options,
    ) -> Result<Passthrough, String> {
        let inodes = InodeTable::new(opts.fd_cache, stripes);
        let root = backings.first().ok_or("no backing store configured")?;
        let handle = sys::fd_to_handle(root.root_fd())
            .map_err(|e| format!("backing {} cannot give file handles ({e}); it must be ext4", root.path.display()))?;
        inodes.insert_root(root.index, root.root_ino, handle);
        let router = Router::new(opts.routes.clone(), Arc::clone(&backings));
        Ok(Passthrough {
            backings,
            ledger,
            quota,
            open_count: DashMap::new(),
            inodes,
            files: HandleTable::new(),
            limits: OpenLimits::new(opts.opens_per_uid, opts.max_data_fds),
            router,
            opts,
            apply_umask: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn set_apply_umask(&self, on: bool) {
        self.apply_umask.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Nodes the kernel currently holds.
    pub fn cached_inodes(&self) -> usize {
        self.inodes.len()
    }

    /// Node ids the kernel holds on backing `index`.
    pub fn held_nodes(&self, index: BackingIndex) -> Vec<u64> {
        self.inodes.ids_on(index)
    }

    /// The descriptor budget of open files.
    pub fn open_limits(&self) -> &OpenLimits {
        &self.limits
    }

    /// Open file handles held.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The quota enforcer: limits in force, grace timers, refusals.
    pub fn quota(&self) -> &Arc<Enforcer> {
        &self.quota
    }

    /// The inode table's stripe locks and tag stamps.
    pub fn stripes(&self) -> &Arc<Stripes> {
        self.inodes.stripes()
    }

    /// What the ledger borrows from this layer for a checkpoint or a reconcile.
    pub fn beside(&self) -> Beside<'_> {
        Beside { stripes: self.inodes.stripes(), quota: &self.quota }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn backing(&self, index: BackingIndex) -> Result<&Backing, Errno> {
        self.backings.get(index.0 as usize).ok_or(Errno(libc::ESTALE))
    }

    fn inode(&self, id: u64) -> Result<Arc<Inode>, Errno> {
        self.inodes.get(id)
    }

    /// The inode and an `O_PATH` fd of it.
    fn resolve(&self, id: u64) -> Result<(Arc<Inode>, Arc<OwnedFd>), Errno> {
        let inode = self.inode(id)?;
        let fd = self.inodes.path_fd(&inode, self.backing(inode.backing)?)?;
        Ok((inode, fd))
    }

    /// A directory's inode and `O_PATH` fd; ENOTDIR for anything else.
    fn resolve_dir(&self, id: u64) -> Result<(Arc<Inode>, Arc<OwnedFd>), Errno> {
        let (inode, fd) = self.resolve(id)?;
        if !inode.is_dir() {
            return Err(Errno(libc::ENOTDIR));
        }
        Ok((inode, fd))
    }

    fn register(&self, backing: &Backing, st: &libc::stat, handle: sys::Handle) -> Result<Entry, Errno> {
        if st.st_dev != backing.dev {
            // Another file system is mounted inside the backing: its handles would not resolve
            // against our mount fd, so it is not served.
            tracing::warn!(dev = st.st_dev, "refusing to cross a mount point inside the backing");
            return Err(Errno(libc::EACCES));
        }
        let id = inode::node_id(backing, st.st_ino)?;
        let inode = self.inodes.reference(id, backing.index, st.st_ino, handle, st.st_mode & libc::S_IFMT);
        Ok(Entry { attr: to_attr(st, inode.id), generation: u64::from(inode.generation) })
    }

    pub fn forget(&self, id: u64, n: u64) {
        self.inodes.forget(id, n);
    }

    pub fn getattr(&self, id: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        if let Some(fh) = fh
            && let Ok(file) = self.files.get(fh)
            && file.node == id
        {
            // The open file's own inode, even if its node id now names a newer file.
            return Ok(to_attr(&sys::stat_fd(file.fd.as_fd())?, id));
        }
        let (_, fd) = self.resolve(id)?;
        Ok(to_attr(&sys::stat_fd(fd.as_fd())?, id))
    }
}

/// The caller context every operation receives from the front.
pub type Ctx = Caller;

fn to_time(secs: i64, nanos: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// Attributes as the mount shows them: the backing's, with the node id as inode number.
pub fn to_attr(st: &libc::stat, id: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: to_time(st.st_atime, st.st_atime_nsec),
        mtime: to_time(st.st_mtime, st.st_mtime_nsec),
        ctime: to_time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// True if `id` is the mount root.
pub fn is_root(id: u64) -> bool {
    id == ROOT_ID
}
