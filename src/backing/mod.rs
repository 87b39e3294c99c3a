//! The backing stores: ext4 directories reached only through file descriptors.
//!
//! `sys` and `creds` hold every `unsafe` block and libc call in quotafs; the rest of the daemon
//! talks to the backing through the safe functions they export.

pub mod creds;
pub mod sys;

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::ids::BackingIndex;
pub use sys::Handle;

/// Why a backing could not be opened, locked, claimed or given its index. Display is the whole
/// message an operator sees; every variant is refused before the daemon serves anything.
#[derive(Debug)]
pub enum BackingError {
    /// A call on a backing root, or on a directory above it, failed with `errno`; `what` says
    /// which (`cannot open backing /srv/a`).
    Io { what: String, errno: Errno },
    /// Another quotafs process (`by`: a daemon, named by its state dir when known) holds the
    /// backing's lock.
    InUse { path: PathBuf, by: String },
    /// What is recorded on the backing (its index or owner attribute) is malformed or does not
    /// fit the configuration; the message names the fix.
    Refused(String),
    /// A path quotafs was given contains a NUL byte.
    NulInPath(PathBuf),
}

impl BackingError {
    fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(Errno) -> BackingError {
        let what = format!("{what} {}", path.display());
        move |errno| BackingError::Io { what, errno }
    }
}

impl std::fmt::Display for BackingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackingError::Io { what, errno } => write!(f, "{what}: {errno}"),
            BackingError::InUse { path, by } => {
                write!(f, "backing {} is in use by {by} (or by a `quotafs check` on it); stop it first", path.display())
            }
            BackingError::Refused(m) => f.write_str(m),
            BackingError::NulInPath(path) => write!(f, "path {} contains a NUL byte", path.display()),
        }
    }
}

impl std::error::Error for BackingError {}

/// For callers that only print the message (the daemon's start errors, `check`).
impl From<BackingError> for String {
    fn from(e: BackingError) -> String {
        e.to_string()
    }
}

/// An errno value. The FUSE front is the only place that turns it into a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// ext4's `f_type` (EXT4_SUPER_MAGIC, shared with ext2/ext3).
pub const EXT4_MAGIC: i64 = 0xEF53;

/// A human name for a `statfs` magic number, for error messages.
pub fn fs_type_name(magic: i64) -> String {
    let name = match magic {
        0xEF53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x6573_5546 => "fuse",
        0x794C_7630 => "overlayfs",
        0x6969 => "nfs",
        0x2FC1_2FC1 => "zfs",
        0xCA45_1A4E => "bcachefs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        _ => return format!("unknown (f_type {magic:#x})"),
    };
    name.to_string()
}

/// One backing directory, opened once at start.
#[derive(Debug)]
pub struct Backing {
    pub index: BackingIndex,
    pub path: PathBuf,
    /// `O_RDONLY | O_DIRECTORY` fd of the backing root; also the mount fd for `open_by_handle_at`
    /// (which refuses an `O_PATH` fd).
    root: OwnedFd,
    /// Device and inode of the backing root.
    pub dev: u64,
    pub root_ino: u64,
    /// Whether the backing root is its file system's root (then every inode is beneath it).
    fs_root: bool,
}

impl Backing {
    /// Opens `path` as a backing store. `path` must already be validated (see `config`).
    pub fn open(index: BackingIndex, path: &Path) -> Result<Backing, BackingError> {
        let c = cstring(path)?;
        let root = sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(BackingError::io("cannot open backing", path))?;
        let st = sys::stat_fd(root.as_fd()).map_err(BackingError::io("cannot stat backing", path))?;
        let parent = sys::openat_dotdot(root.as_fd())
            .and_then(|p| sys::stat_fd(p.as_fd()))
            .map_err(BackingError::io("cannot stat the parent of backing", path))?;
        let fs_root = parent.st_dev == st.st_dev && parent.st_ino == st.st_ino;
        Ok(Backing { index, path: path.to_path_buf(), root, dev: st.st_dev, root_ino: st.st_ino, fs_root })
    }

    pub fn root_is_fs_root(&self) -> bool {
        self.fs_root
    }

    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Whether entry `name` of the directory with inode number `dir_ino` is the daemon's own:
    /// at the backing root, any name that begins with `JOURNAL_DIR` (the ledger's journal and
    /// the temporary name it is made under). Never served through the mount (so no tenant can
    /// make one), never counted, never re-tagged.
    pub fn is_private(&self, dir_ino: u64, name: &CStr) -> bool {
        dir_ino == self.root_ino && name.to_bytes().starts_with(JOURNAL_DIR.to_bytes())
    }

    /// Opens the inode named by `handle` on this backing's file system: that inode and no
    /// other. ext4 checks the generation of a handle unless it is 0, and inodes made by
    /// `mke2fs -d` or `debugfs` have generation 0, so a handle of one of them would open
    /// whatever inode later took its number (a deleted file's record would then find the new
    /// file, and a recovery charge it twice: found by the power-cut rig). Such a handle is
    /// checked here: ESTALE unless the inode opened still has generation 0.
    pub fn open_handle(&self, handle: &Handle, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        let fd = sys::open_by_handle(self.root.as_fd(), handle, flags)?;
        if handle.ext4_generation() == Some(0) && sys::fd_to_handle(fd.as_fd())?.ext4_generation() != Some(0) {
            return Err(Errno(libc::ESTALE));
        }
        Ok(fd)
    }

    /// Opens inode number `ino` of this backing's file system, whatever its generation.
    pub fn open_number(&self, ino: u32, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        sys::open_by_handle(self.root.as_fd(), &Handle::ext4(ino, 0), flags)
    }
}

/// The directory at each backing root where the ledger keeps the records that ride in the
/// backing's own journal (docs/design.md §16). Hidden from the mount.
pub const JOURNAL_DIR: &CStr = c".quotafs-journal";

/// Names the backing index stored in each backing root (1 byte), so that a backing keeps its
/// index, and its inodes their node ids, whatever order the routes are listed in.
const INDEX_XATTR: &CStr = c"trusted.quotafs.backing";

fn stored_index(b: &Backing) -> Result<Option<BackingIndex>, BackingError> {
    let mut buf = [0u8; 8];
    match sys::get_xattr(b.root_fd(), INDEX_XATTR, &mut buf) {
        Ok(1) => Ok(Some(BackingIndex(buf[0]))),
        Ok(n) => {
            Err(BackingError::Refused(format!("backing {}: its index tag has {n} bytes, expected 1", b.path.display())))
        }
        Err(Errno(libc::ENODATA)) => Ok(None),
        Err(e) => Err(BackingError::io("cannot read the index tag of backing", &b.path)(e)),
    }
}

/// Names the ledger a backing belongs to, in each backing root: `<ledger id> <state dir>`
/// (the id from the state dir's `ledger-id` file; the path only for messages). A backing
/// belongs to one ledger: writes through a second one would never be charged in the first.
pub const OWNER_XATTR: &CStr = c"trusted.quotafs.ledger";

/// The ledger a backing belongs to (see `OWNER_XATTR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Random, made once per state dir.
    pub id: String,
    /// Where that state dir was when it claimed the backing.
    pub state_dir: String,
}

impl Owner {
    fn parse(value: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(value).ok()?;
        let (id, dir) = text.split_once(' ')?;
        (!id.is_empty()).then(|| Owner { id: id.to_string(), state_dir: dir.to_string() })
    }
}

impl Backing {
    /// The ledger this backing belongs to; `None` if none has claimed it yet.
    pub fn owner(&self) -> Result<Option<Owner>, BackingError> {
        read_owner(self.root_fd(), &self.path)
    }

    /// The nearest directory above this backing root on its file system that a ledger claims
    /// as a backing (its path and owner): this backing would then be part of that one's tree.
    pub fn enclosing_owner(&self) -> Result<Option<(PathBuf, Owner)>, BackingError> {
        if self.fs_root {
            return Ok(None);
        }
        let fail = |e: Errno| BackingError::io("cannot read the directories above backing", &self.path)(e);
        let mut below = self.root_ino;
        let mut dir = sys::open_dotdot(self.root_fd(), libc::O_RDONLY).map_err(fail)?;
        for depth in 1..=4096 {
            let st = sys::stat_fd(dir.as_fd()).map_err(fail)?;
            // Another file system (above its root), or `/` (its own parent).
            if st.st_dev != self.dev || st.st_ino == below {
                return Ok(None);
            }
            let path = self.path.ancestors().nth(depth).unwrap_or(Path::new("?")).to_path_buf();
            if let Some(owner) = read_owner(dir.as_fd(), &path)? {
                return Ok(Some((path, owner)));
            }
            below = st.st_ino;
            dir = sys::open_dotdot(dir.as_fd(), libc::O_RDONLY).map_err(fail)?;
        }
        Ok(None)
    }

    /// Records `owner` as the ledger this backing belongs to.
    pub fn claim(&self, owner: &Owner) -> Result<(), BackingError> {
        let value = format!("{} {}", owner.id, owner.state_dir);
        sys::set_xattr(self.root_fd(), OWNER_XATTR, value.as_bytes(), 0)
            .map_err(BackingError::io("cannot record the owner of backing", &self.path))?;
        sys::fsync(self.root_fd(), false).map_err(BackingError::io("cannot sync backing", &self.path))
    }

    /// Takes an exclusive `flock` on the backing root for as long as this `Backing` lives, so
    /// that one process at a time (a daemon, or an offline `check`) works on it.
    fn lock(&self) -> Result<(), BackingError> {
        match sys::try_lock_exclusive(self.root_fd()) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let by = match self.owner() {
                    Ok(Some(o)) => format!("the quotafs daemon of state dir {}", o.state_dir),
                    _ => "another quotafs process".to_string(),
                };
                Err(BackingError::InUse { path: self.path.clone(), by })
            }
            Err(e) => Err(BackingError::io("cannot lock backing", &self.path)(e)),
        }
    }
}

/// The owner recorded on directory `fd` (at `path`, for messages), if any.
fn read_owner(fd: BorrowedFd<'_>, path: &Path) -> Result<Option<Owner>, BackingError> {
    let mut buf = [0u8; 4096];
    match sys::get_xattr(fd, OWNER_XATTR, &mut buf) {
        Ok(n) => Owner::parse(&buf[..n]).map(Some).ok_or_else(|| {
            let attr = OWNER_XATTR.to_string_lossy();
            BackingError::Refused(format!(
                "{}: the attribute {attr} is malformed; remove it (setfattr -x {attr} {}) and mount again",
                path.display(),
                path.display()
            ))
        }),
        Err(Errno(libc::ENODATA)) => Ok(None),
        Err(e) => Err(BackingError::io("cannot read the owner of backing", path)(e)),
    }
}

/// A routed backing to open: the name its route goes by in messages (the route's pattern) and
/// its directory.
pub type RoutedDir<'a> = (&'a str, &'a Path);

/// Opens the main backing (index 0) and every routed backing (`routed`), each at the index
/// stored in its root (a new one gets the lowest free index, stored at once). Returns the
/// backings in index order; each is locked (`Backing::lock`) while it lives. A gap (a backing
/// the ledger knows that no route names any more) is refused: its usage would silently vanish.
/// The routing table over them is `route::Routes::over`.
pub fn open_all(main: &Path, routed: &[RoutedDir<'_>]) -> Result<Vec<Backing>, BackingError> {
    open_all_checked(main, routed, &|_| Ok(()))
}

/// `open_all`, with `accept` asked about each backing once it is locked and before anything is
/// written to any of them (its `Err` is returned as it is; the caller's error type carries
/// both its own refusals and `BackingError`s).
pub fn open_all_checked<E: From<BackingError>>(
    main: &Path,
    routed: &[RoutedDir<'_>],
    accept: &dyn Fn(&Backing) -> Result<(), E>,
) -> Result<Vec<Backing>, E> {
    let mut opened = Vec::with_capacity(routed.len() + 1);
    for dir in std::iter::once(main).chain(routed.iter().map(|(_, d)| *d)) {
        let b = Backing::open(BackingIndex::MAIN, dir)?;
        b.lock()?;
        accept(&b)?;
        opened.push(b);
    }
    let mut opened = opened.into_iter();
    let mut all: Vec<Backing> = opened.next().into_iter().collect();
    let refused = |message: String| E::from(BackingError::Refused(message));
    match stored_index(&all[0])? {
        Some(BackingIndex::MAIN) => {}
        Some(BackingIndex(i)) => {
            return Err(refused(format!(
                "{} is the backing of a route (index {i}), not a main backing; check --backing and the routes",
                main.display()
            )));
        }
        None => sys::set_xattr(all[0].root_fd(), INDEX_XATTR, &[0], 0)
            .map_err(BackingError::io("cannot tag backing", main))?,
    }
    let mut pending = Vec::new();
    for ((label, dir), mut b) in routed.iter().zip(opened) {
        match stored_index(&b)? {
            Some(BackingIndex::MAIN) => {
                return Err(refused(format!("route {label:?}: {} is a main backing, not a route's", dir.display())));
            }
            Some(i) if all.iter().any(|o| o.index == i) => {
                return Err(refused(format!(
                    "route {label:?}: {} has index {}, like another backing (a copy?)",
                    dir.display(),
                    i.0
                )));
            }
            Some(i) => {
                b.index = i;
                all.push(b);
            }
            None => pending.push(b),
        }
    }
    for mut b in pending {
        let free = (1..=u8::MAX)
            .map(BackingIndex)
            .find(|i| !all.iter().any(|o| o.index == *i))
            .ok_or_else(|| refused(format!("too many backings: at most {} routed backings", u8::MAX)))?;
        sys::set_xattr(b.root_fd(), INDEX_XATTR, &[free.0], 0)
            .map_err(BackingError::io("cannot tag backing", &b.path))?;
        b.index = free;
        all.push(b);
    }
    all.sort_by_key(|b| b.index);
    if let Some((pos, b)) = all.iter().enumerate().find(|(pos, b)| b.index.as_usize() != *pos) {
        return Err(refused(format!(
            "backing {} has index {} but no configured backing has index {pos}: a route was removed. \
             Put it back, or to retire it for good remove the attribute `trusted.quotafs.backing` from {} \
             and its data, then run `quotafs check --repair`",
            b.path.display(),
            b.index.0,
            b.path.display()
        )));
    }
    Ok(all)
}

/// `path` as a C string.
pub fn cstring(path: &Path) -> Result<CString, BackingError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| BackingError::NulInPath(path.to_path_buf()))
}

/// A single, validated directory-entry name: 1 to 255 bytes, no `/`, no NUL.
/// `.` and `..` are refused here; the operations that accept them say so explicitly.
pub fn entry_name(name: &OsStr) -> Result<CString, Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
        return Err(Errno(libc::EINVAL));
    }
    if b.len() > 255 {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    CString::new(b).map_err(|_| Errno(libc::EINVAL))
}

/// The name of an xattr as a C string.
pub fn xattr_name(name: &OsStr) -> Result<CString, Errno> {
    CString::new(name.as_bytes()).map_err(|_| Errno(libc::EINVAL))
}

/// The empty C string used with `AT_EMPTY_PATH`.
pub const EMPTY_NAME: &CStr = c"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_backing_and_the_way_out() {
        let busy = BackingError::InUse { path: "/srv/a".into(), by: "the quotafs daemon of state dir /s".into() };
        assert_eq!(
            busy.to_string(),
            "backing /srv/a is in use by the quotafs daemon of state dir /s (or by a `quotafs check` on it); stop it first"
        );
        let io = BackingError::io("cannot lock backing", Path::new("/srv/a"))(Errno(libc::EIO));
        assert!(matches!(io, BackingError::Io { errno: Errno(libc::EIO), .. }));
        assert!(io.to_string().starts_with("cannot lock backing /srv/a: "), "{io}");
        assert!(matches!(cstring(Path::new("/a\0b")), Err(BackingError::NulInPath(_))));
    }
}
