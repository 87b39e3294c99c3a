//! The passthrough layer: every file-system operation, done on the backing store through
//! descriptors, returning `Result<_, Errno>`. It knows nothing of the FUSE wire protocol (the
//! `fuse` front turns results into replies). Each usage-changing operation goes through one
//! guard, `accounting::Op`, which reserves against limits, logs and settles its charge with the
//! ledger around the syscall itself.
//!
//! State apart from operations, as fuse-backend-rs keeps them:
//! * `backend::Backend`: what outlives a serving process (backings, ledger, quota enforcer,
//!   router, options), rebuilt by any process from the config and the disk;
//! * `session::ServingState`: what one serving process holds for the kernel (node table, open
//!   files with their counts and descriptor budget, INIT settings), each part documented with
//!   whether a new process could rebuild it;
//! * `ops::Ops`: the two borrowed for one operation, handing out one type per concern:
//!   `namespace` (names: lookup, create, link, rename, ...), `attr` (attributes and xattrs),
//!   `statfs` (what `df` shows), `file` (open files and their data), `dir` (directory
//!   listings), `account` (block arithmetic, opens and closes of unlinked files), `project`
//!   (project assignment), `routing`
//!   (what the router's answers mean for nodes and accounting: hidden parents, moved and
//!   removed counterparts); `accounting` is the guard they all change usage through.
//!
//! `Passthrough` (`facade.rs`) owns one `Backend` and one `ServingState` and is the surface the
//! front and the daemon call: each operation is one line that picks its concern.
//!
//! A name operation runs in three steps, operation → route → backing call: it validates the
//! name, asks the router (`crate::passthrough::router::Router`) where the name lives (this directory, or a
//! routed directory on another backing, with its hidden parents made first), and makes its
//! backing call there.

mod account;
mod accounting;
pub mod attr;
pub mod backend;
pub mod dir;
mod facade;
mod file;
mod namespace;
mod ops;
mod project;
pub mod router;
mod routing;
pub mod session;
mod statfs;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::{FileAttr, FileType};

pub use backend::Backend;
pub use dir::DirEntryOut;
pub use facade::Passthrough;
pub use file::Opened;
pub use project::AssignError;
pub use session::ServingState;

use crate::backing::creds::Caller;
use crate::inode::ROOT_ID;

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
        ino: id,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: to_time(st.st_atime, st.st_atime_nsec),
        mtime: to_time(st.st_mtime, st.st_mtime_nsec),
        ctime: to_time(st.st_ctime, st.st_ctime_nsec),
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
