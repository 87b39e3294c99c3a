//! Operations on routed places (docs/design.md §14): what the router's answers mean for the
//! node table and the accounting. The router (`crate::passthrough::router::Router`) says where a name lives
//! and what must exist there; this module turns that into nodes (registered, one lookup
//! reference each), makes hidden parents (charged like any new directory) and moves or removes
//! the hidden counterparts of directories changed on backing 0.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use super::ops::Routed;
use super::router::{AfterRename, Place, RoutedDir};
use super::{Ctx, Entry};
use crate::backing::creds::Caller;
use crate::backing::{BackingIndex, Errno, sys};
use crate::inode::Inode;
use crate::route::RouteState;

/// How `on_routed_parent` finds the parent of a routed directory on its backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Parents {
    /// It must exist already (a missing one is ENOENT: the routed directory does not exist).
    Existing,
    /// Made if missing, with the owner, mode and project of backing 0's counterparts.
    Make,
}

impl<'a> Routed<'a> {
    /// Records where a directory `entry`, found or made at `place`, stands against the routes.
    pub(super) fn mark_child(&self, place: &Place, entry: &Entry) {
        if matches!(place, Place::OnPath(_))
            && entry.attr.kind == crate::wire::FileType::Directory
            && let Ok(child) = self.inode(entry.attr.ino)
        {
            self.be.router.mark(place, &child);
        }
    }

    /// LOOKUP of a routed directory: on its backing, or ENOENT.
    pub(super) fn lookup_routed(&self, r: &RoutedDir) -> Result<Entry, Errno> {
        let (last, _) = r.split()?;
        let (backing, parent) = self.be.router.lookup_parent(r)?;
        self.names().lookup_at(backing, parent.as_fd(), last)
    }

    /// LOOKUP(dir, "..") for a routed directory: backing 0's directory at the same path, not
    /// the hidden one. None when `dir` is not routed.
    pub(super) fn lookup_routed_dotdot(&self, dir: &Inode, dirfd: BorrowedFd<'_>) -> Result<Option<Entry>, Errno> {
        let Some(fd) = self.be.router.dotdot(dir, dirfd)? else { return Ok(None) };
        let st = sys::stat_fd(fd.as_fd())?;
        let handle = sys::fd_to_handle(fd.as_fd())?;
        self.register(self.backing(BackingIndex(0))?, &st, handle).map(Some)
    }

    /// Runs `op` on the node of `r`'s parent on its backing (found or made as `parents`
    /// says), giving the node's lookup reference back afterwards.
    pub(super) fn on_routed_parent<T>(
        &self,
        r: &RoutedDir,
        parents: Parents,
        op: impl FnOnce(u64) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let parent = match parents {
            Parents::Make => self.hidden_parent(r)?,
            Parents::Existing => match self.routed_parent_node(r) {
                Ok(p) => p,
                Err(Errno(libc::ENOENT | libc::ENOTDIR)) => return Err(Errno(libc::ENOENT)),
                Err(e) => return Err(e),
            },
        };
        let result = op(parent);
        self.forget(parent, 1);
        result
    }

    /// Makes sure the directories above routed directory `r` exist on its backing (made as
    /// on backing 0: owner, mode, project), and returns the node id of its parent there, with
    /// one lookup reference the caller gives back.
    fn hidden_parent(&self, r: &RoutedDir) -> Result<u64, Errno> {
        let path = &r.path;
        let mut cur = self.node_of_dir(r.backing, &[])?;
        for i in 0..path.len().saturating_sub(1) {
            let name = &path[i];
            let (_, curfd) = self.resolve_dir(cur).inspect_err(|_| self.forget(cur, 1))?;
            let next = match self.names().lookup_at(r.backing, curfd.as_fd(), name) {
                Ok(e) => Ok(e.attr.ino),
                Err(Errno(libc::ENOENT)) => self.make_hidden(cur, &path[..=i]),
                Err(e) => Err(e),
            };
            self.forget(cur, 1);
            cur = next?;
        }
        Ok(cur)
    }

    /// Creates the hidden counterpart of backing 0's directory `path` in `parent` (a node of
    /// the routed backing), charged like any new inode.
    fn make_hidden(&self, parent: u64, path: &[CString]) -> Result<u64, Errno> {
        let like = self.be.router.hidden_template(path)?;
        let name = path.last().ok_or(Errno(libc::EINVAL))?.clone();
        let root = Caller::ROOT;
        let (e, _) = self.names().create_in_project(&root, parent, &name, 4096, Some(like.project), |dirfd| {
            sys::mkdir_at(dirfd, &name, 0o700)?;
            let fd = sys::open_entry(dirfd, &name)?;
            sys::chown_fd(fd.as_fd(), Some(like.uid), Some(like.gid))?;
            sys::chmod_fd(fd.as_fd(), like.mode)?;
            Ok(None)
        })?;
        Ok(e.attr.ino)
    }

    /// The node of the existing parent of routed directory `r` on its backing (one reference
    /// held).
    fn routed_parent_node(&self, r: &RoutedDir) -> Result<u64, Errno> {
        let (_, parents) = r.split()?;
        self.node_of_dir(r.backing, parents)
    }

    /// The node of an existing directory `path` on backing `index` (one reference held).
    fn node_of_dir(&self, index: BackingIndex, path: &[CString]) -> Result<u64, Errno> {
        let (b, fd) = self.be.router.dir_on(index, path)?;
        let st = sys::stat_fd(fd.as_fd())?;
        let handle = sys::fd_to_handle(fd.as_fd())?;
        Ok(self.register(b, &st, handle)?.attr.ino)
    }

    /// RMDIR of a directory on a route's path (`state`: its state): refused while a hidden
    /// counterpart holds entries; its counterparts go with it.
    pub(super) fn rmdir_on_path(
        &self,
        ctx: &Ctx,
        dir: &Inode,
        dirfd: BorrowedFd<'_>,
        name: CString,
        state: &RouteState,
    ) -> Result<(), Errno> {
        if self.be.router.counterparts_hold_entries(state)? {
            return Err(Errno(libc::ENOTEMPTY));
        }
        self.names().remove_here(ctx, dir, dirfd, name, libc::AT_REMOVEDIR)?;
        self.remove_hidden(state);
        Ok(())
    }

    /// Removes the hidden counterparts of a directory just removed from backing 0 (`state`:
    /// its state before). Best effort: a leftover is an empty, charged directory nobody sees.
    fn remove_hidden(&self, state: &RouteState) {
        let Some((last, parents)) = state.path.split_last() else { return };
        for (backing, _) in self.be.router.counterparts(state) {
            let Ok(parent) = self.node_of_dir(backing, parents) else { continue };
            let root = Caller::ROOT;
            if let Err(e) = self.names().rmdir(&root, parent, OsStr::from_bytes(last.as_bytes())) {
                let path = self.backing(backing).map(|b| b.path.display().to_string()).unwrap_or_default();
                tracing::warn!(backing = %path, error = %e, "cannot remove a hidden routed directory");
            }
            self.forget(parent, 1);
        }
    }

    /// RENAME of a routed directory to another routed place of the same backing: on that
    /// backing, between their parents (the destination's made if missing).
    pub(super) fn rename_routed(
        &self,
        ctx: &Ctx,
        from: &RoutedDir,
        name: &OsStr,
        to: &RoutedDir,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let sp = self.routed_parent_node(from)?;
        let dp = match self.hidden_parent(to) {
            Ok(d) => d,
            Err(e) => {
                self.forget(sp, 1);
                return Err(e);
            }
        };
        let r = self.names().rename(ctx, sp, name, dp, newname, flags);
        self.forget(sp, 1);
        self.forget(dp, 1);
        r
    }

    /// What follows a rename that succeeded on backing 0.
    pub(super) fn after_rename(&self, after: &AfterRename) {
        if let Some((from, to)) = &after.carry
            && let Err(e) = self.move_hidden(from, to)
        {
            tracing::error!(error = %e, "a directory moved but its routed part did not; `quotafs check` reports it");
        }
        if after.reset_marks {
            self.st.nodes.reset_routes();
        }
    }

    /// Moves the hidden counterparts of a directory renamed on backing 0 from `from` to `to`
    /// (same route shape), making the destination's hidden parents first.
    fn move_hidden(&self, from: &RouteState, to: &RouteState) -> Result<(), Errno> {
        let (Some((old, old_parents)), Some((new, _))) = (from.path.split_last(), to.path.split_last()) else {
            return Ok(());
        };
        for (backing, _) in self.be.router.counterparts(from) {
            let src_parent = self.node_of_dir(backing, old_parents)?;
            let dst_parent = match self.hidden_parent(&RoutedDir { backing, path: to.path.clone() }) {
                Ok(p) => p,
                Err(e) => {
                    self.forget(src_parent, 1);
                    return Err(e);
                }
            };
            let root = Caller::ROOT;
            let r = self.names().rename(
                &root,
                src_parent,
                OsStr::from_bytes(old.as_bytes()),
                dst_parent,
                OsStr::from_bytes(new.as_bytes()),
                libc::RENAME_NOREPLACE,
            );
            self.forget(src_parent, 1);
            self.forget(dst_parent, 1);
            r?;
        }
        Ok(())
    }
}
