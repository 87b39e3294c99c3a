//! STATFS as tenants and an NFS server should see it: the quota that binds the files under a
//! node, not the backing's size, wherever a limit binds them.
//!
//! Each of the two figure pairs comes from the first of these subjects with a limit of its
//! kind (hard, else soft): size and free blocks from a byte limit, files and free files from an
//! inode limit (so `df -i` follows an inode limit whether or not a byte limit is set):
//! 1. the node's project (its tag; project 0 too, which a default project limit binds);
//! 2. when root asks about a user's home (a directory directly beneath the mount root owned by
//!    a uid other than root: what `quotafs nfs exports --users` exports): that owner. An NFS
//!    server or an operator asks as root; only the home directory itself answers so, not what
//!    lies beneath it, and any other caller gets its own figures (a tenant does not learn
//!    another's quota by `df` of their home);
//! 3. the caller.
//!
//! A figure no subject limits is the backing's. Free blocks and free files are never more than
//! the backing has. Usage is the live ledger's, limits the enforcer's: a change shows at once.

use std::os::fd::{AsFd, BorrowedFd};

use super::ops::Attrs;
use super::{Ctx, FsStats};
use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::inode;
use crate::quota::Subject;

impl<'a> Attrs<'a> {
    pub fn statfs(&self, ctx: &Ctx, id: u64) -> Result<FsStats, Errno> {
        let backing = self.backing(inode::backing_of(id))?;
        let s = sys::statfs_fd(backing.root_fd())?;
        let raw = FsStats {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: s.f_namelen as u32,
            frsize: s.f_frsize as u32,
        };
        let mut subjects = Vec::with_capacity(3);
        if let Ok((inode, fd)) = self.resolve(id) {
            subjects.push(Subject::Project(self.tag_of(&inode, fd.as_fd()).map(|t| t.project).unwrap_or(0)));
            if ctx.uid == 0
                && let Some(owner) = home_owner(backing, fd.as_fd())
            {
                subjects.push(Subject::User(owner));
            }
        }
        subjects.push(Subject::User(ctx.uid));
        Ok(self.bound_figures(raw, &subjects))
    }

    /// `raw` with each figure pair replaced by the first subject's of `subjects` that limits it.
    fn bound_figures(&self, raw: FsStats, subjects: &[Subject]) -> FsStats {
        let limits: Vec<_> = subjects.iter().filter_map(|&s| self.be.quota.effective(s).map(|l| (s, l))).collect();
        let mut out = raw;
        if let Some((s, limit)) = limits.iter().find_map(|(s, l)| l.bytes_hard.or(l.bytes_soft).map(|b| (*s, b))) {
            let unit = u64::from(raw.frsize.max(1));
            let used = self.be.ledger.table().get(s).bytes.div_ceil(unit);
            let blocks = limit / unit;
            let free = blocks.saturating_sub(used);
            out.blocks = blocks;
            out.bfree = free.min(raw.bfree);
            out.bavail = free.min(raw.bavail);
        }
        if let Some((s, limit)) = limits.iter().find_map(|(s, l)| l.inodes_hard.or(l.inodes_soft).map(|n| (*s, n))) {
            let used = self.be.ledger.table().get(s).inodes;
            out.files = limit;
            out.ffree = limit.saturating_sub(used).min(raw.ffree);
        }
        out
    }
}

/// The owner of directory `fd` if it is a user's home: a directory directly beneath the mount
/// root (the main backing's root) owned by a uid other than root.
fn home_owner(backing: &Backing, fd: BorrowedFd<'_>) -> Option<u32> {
    if backing.index != BackingIndex(0) {
        return None;
    }
    let st = sys::stat_fd(fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_uid == 0 || st.st_ino == backing.root_ino {
        return None;
    }
    let parent = sys::stat_fd(sys::open_dotdot(fd, libc::O_PATH).ok()?.as_fd()).ok()?;
    (parent.st_dev == backing.dev && parent.st_ino == backing.root_ino).then_some(st.st_uid)
}
