//! Routed subtrees (docs/design.md §14): a directory whose path matches a route pattern lives on
//! the route's backing, at the same relative path; the directories above it exist there too,
//! hidden, with the owner, mode and project of their counterparts on backing 0.
//!
//! Only directories of backing 0 route: each one carries a `RouteMark` (the patterns its path
//! matches so far), set from its parent's at lookup, or computed by walking `..` when it was
//! reached by handle. Inside a routed subtree everything is ordinary (nested routes are
//! refused by the config).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::{Entry, Passthrough};
use crate::backing::creds::Caller;
use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::inode::{self, Inode, RouteMark};
use crate::route::{RouteState, Step};
use crate::tag;

impl Passthrough {
    pub(super) fn routing(&self) -> bool {
        !self.opts.routes.is_empty()
    }

    /// The route state of a directory of backing 0; None if no route passes through it.
    pub(super) fn route_state(&self, dir: &Inode) -> Option<Arc<RouteState>> {
        if !self.routing() || dir.backing.0 != 0 || !dir.is_dir() {
            return None;
        }
        match &*dir.route.lock() {
            RouteMark::On(s) => return Some(Arc::clone(s)),
            RouteMark::Off => return None,
            RouteMark::Unknown => {}
        }
        let computed = match self.compute_route_state(dir) {
            Ok(s) => s.map(Arc::new),
            Err(e) => {
                tracing::warn!(ino = dir.ino, error = %e, "cannot find a directory's path for routing");
                return None;
            }
        };
        *dir.route.lock() = computed.as_ref().map_or(RouteMark::Off, |s| RouteMark::On(Arc::clone(s)));
        computed
    }

    pub fn routes(&self) -> &crate::route::Routes {
        &self.opts.routes
    }

    /// The state of a directory reached without its path: walk `..` up to the root, finding
    /// each name by inode number in its parent.
    fn compute_route_state(&self, dir: &Inode) -> Result<Option<RouteState>, Errno> {
        let b = self.backing(BackingIndex(0))?;
        let fd = b.open_handle(&dir.handle, libc::O_PATH | libc::O_NOFOLLOW)?;
        let Some(names) = names_to_root(b, fd, dir.ino)? else { return Ok(None) };
        Ok(self.state_of_path(&names))
    }

    /// The route state of backing 0's directory at `names`, if routes pass through it.
    fn state_of_path(&self, names: &[CString]) -> Option<RouteState> {
        let mut state = self.opts.routes.root()?;
        for n in names {
            match self.opts.routes.step(&state, n) {
                Step::Local(Some(s)) => state = s,
                _ => return None,
            }
        }
        Some(state)
    }

    /// What `name` in `dir` is, routing-wise (None: no route involved).
    pub(super) fn step_of(&self, dir: &Inode, name: &CStr) -> Option<Step> {
        let state = self.route_state(dir)?;
        Some(self.opts.routes.step(&state, name))
    }

    /// Records the route state of `entry` (looked up as `name` in `dir`) if it is a directory.
    pub(super) fn mark_child(&self, step: Option<&Step>, entry: &Entry) {
        if let Some(Step::Local(s)) = step
            && entry.attr.kind == fuser::FileType::Directory
            && let Ok(child) = self.inode(entry.attr.ino.0)
        {
            *child.route.lock() = s.as_ref().map_or(RouteMark::Off, |s| RouteMark::On(Arc::new(s.clone())));
        }
    }

    /// The directory at `path` on `backing`, as an `O_PATH` descriptor (beneath its root, no
    /// symlinks followed).
    pub(super) fn open_rel(&self, backing: &Backing, path: &[CString]) -> Result<OwnedFd, Errno> {
        let rel = if path.is_empty() { c".".to_owned() } else { crate::route::join(path) };
        sys::openat_beneath(backing.root_fd(), &rel, libc::O_PATH | libc::O_DIRECTORY, 0)
    }

    /// LOOKUP of a routed directory: on its backing, or ENOENT (a same-named entry of backing 0
    /// is shadowed; `quotafs check` reports it).
    pub(super) fn routed_lookup(&self, backing: u8, path: &[CString]) -> Result<Entry, Errno> {
        let b = self.backing(BackingIndex(backing))?;
        let (last, parents) = path.split_last().ok_or(Errno(libc::EINVAL))?;
        let parent = match self.open_rel(b, parents) {
            Ok(fd) => fd,
            Err(Errno(libc::ENOENT | libc::ENOTDIR)) => return Err(Errno(libc::ENOENT)),
            Err(e) => return Err(e),
        };
        self.lookup_at(b.index, parent.as_fd(), last)
    }

    /// Makes sure the directories above a routed directory exist on its backing (made as on
    /// backing 0: owner, mode, project), and returns the node id of its parent there, with one
    /// lookup reference the caller gives back.
    pub(super) fn hidden_parent(&self, backing: u8, path: &[CString]) -> Result<u64, Errno> {
        let b0 = self.backing(BackingIndex(0))?;
        let b = self.backing(BackingIndex(backing))?;
        let mut cur = self.hidden_parent_node(b, &[])?;
        for i in 0..path.len().saturating_sub(1) {
            let name = &path[i];
            let (_, curfd) = self.resolve_dir(cur).inspect_err(|_| self.forget(cur, 1))?;
            let next = match self.lookup_at(b.index, curfd.as_fd(), name) {
                Ok(e) => Ok(e.attr.ino.0),
                Err(Errno(libc::ENOENT)) => self.make_hidden(b0, cur, &path[..=i]),
                Err(e) => Err(e),
            };
            self.forget(cur, 1);
            cur = next?;
        }
        Ok(cur)
    }

    /// Creates the hidden counterpart of backing 0's directory `path` in `parent` (a node of
    /// the routed backing), charged like any new inode.
    fn make_hidden(&self, b0: &Backing, parent: u64, path: &[CString]) -> Result<u64, Errno> {
        let src = self.open_rel(b0, path)?;
        let st = sys::stat_fd(src.as_fd())?;
        let project = tag::read_fd(src.as_fd())?.map_or(0, |t| t.project);
        let name = path.last().ok_or(Errno(libc::EINVAL))?.clone();
        let root = Caller::ROOT;
        let (e, _) = self.create_in_project(&root, parent, &name, 4096, Some(project), |dirfd| {
            sys::mkdir_at(dirfd, &name, 0o700)?;
            let fd = sys::open_entry(dirfd, &name)?;
            sys::chown_fd(fd.as_fd(), Some(st.st_uid), Some(st.st_gid))?;
            sys::chmod_fd(fd.as_fd(), st.st_mode & 0o7777)?;
            Ok(None)
        })?;
        Ok(e.attr.ino.0)
    }

    /// Routed directories that exist in `dir` (a directory of backing 0), as entries for a
    /// listing: (name, node id, d_type) in a stable order.
    pub(super) fn routed_entries(&self, dir: &Inode) -> Vec<(CString, u64, u32)> {
        let Some(state) = self.route_state(dir) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, _, backing) in self.opts.routes.routed_names(&state) {
            let Ok(b) = self.backing(BackingIndex(backing)) else { continue };
            let Ok(parent) = self.open_rel(b, &state.path) else { continue };
            if let Ok(st) = sys::stat_at(parent.as_fd(), &name)
                && let Ok(id) = inode::node_id(b, st.st_ino)
            {
                out.push((name, id, (st.st_mode & libc::S_IFMT) >> 12));
            }
        }
        out
    }

    /// Whether the directory `dir` of backing 0, at route state `state`, has hidden parts on
    /// a routed backing (its counterpart exists there).
    pub(super) fn hidden_counterparts(&self, state: &RouteState) -> Vec<(u8, OwnedFd)> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for &(r, _) in &state.partial {
            let backing = self.opts.routes.routes[r].1;
            if seen.contains(&backing) {
                continue;
            }
            seen.push(backing);
            if let Ok(b) = self.backing(BackingIndex(backing))
                && let Ok(fd) = self.open_rel(b, &state.path)
            {
                out.push((backing, fd));
            }
        }
        out
    }

    /// Removes the hidden counterparts of a directory just removed from backing 0 (`state`:
    /// its state before). Best effort: a leftover is an empty, charged directory nobody sees.
    pub(super) fn remove_hidden(&self, state: &RouteState) {
        let Some((last, parents)) = state.path.split_last() else { return };
        for (backing, _) in self.hidden_counterparts(state) {
            let Ok(b) = self.backing(BackingIndex(backing)) else { continue };
            let Ok(parent) = self.hidden_parent_node(b, parents) else { continue };
            let root = Caller::ROOT;
            if let Err(e) = self.rmdir(&root, parent, std::ffi::OsStr::from_bytes(last.as_bytes())) {
                tracing::warn!(backing = %b.path.display(), error = %e, "cannot remove a hidden routed directory");
            }
            self.forget(parent, 1);
        }
    }

    /// The node of the existing parent, on `backing`, of the routed directory at `path` (one
    /// reference held).
    pub(super) fn routed_lookup_parent(&self, backing: u8, path: &[CString]) -> Result<u64, Errno> {
        let b = self.backing(BackingIndex(backing))?;
        let (_, parents) = path.split_last().ok_or(Errno(libc::EINVAL))?;
        self.hidden_parent_node(b, parents)
    }

    /// The node of an existing directory `path` on backing `b` (one reference held).
    fn hidden_parent_node(&self, b: &Backing, path: &[CString]) -> Result<u64, Errno> {
        let fd = self.open_rel(b, path)?;
        let st = sys::stat_fd(fd.as_fd())?;
        let handle = sys::fd_to_handle(fd.as_fd())?;
        Ok(self.register(b, &st, handle)?.attr.ino.0)
    }

    /// Whether a non-empty hidden counterpart keeps `state`'s directory from being removed.
    pub(super) fn hidden_not_empty(&self, state: &RouteState) -> Result<bool, Errno> {
        for (_, fd) in self.hidden_counterparts(state) {
            let rd = sys::openat_beneath(fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let mut buf = vec![0u8; 4096];
            let entries = sys::read_dir(rd.as_fd(), &mut buf)?;
            if entries.iter().any(|e| e.name.as_bytes() != b"." && e.name.as_bytes() != b"..") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Moves the hidden counterparts of a directory renamed on backing 0 from `from` to `to`
    /// (same route shape), making the destination's hidden parents first.
    pub(super) fn move_hidden(&self, from: &RouteState, to: &RouteState) -> Result<(), Errno> {
        let (Some((old, old_parents)), Some((new, _))) = (from.path.split_last(), to.path.split_last()) else {
            return Ok(());
        };
        for (backing, _) in self.hidden_counterparts(from) {
            let b = self.backing(BackingIndex(backing))?;
            let src_parent = self.hidden_parent_node(b, old_parents)?;
            let dst_parent = match self.hidden_parent(backing, &to.path) {
                Ok(p) => p,
                Err(e) => {
                    self.forget(src_parent, 1);
                    return Err(e);
                }
            };
            let root = Caller::ROOT;
            let r = self.rename(
                &root,
                src_parent,
                std::ffi::OsStr::from_bytes(old.as_bytes()),
                dst_parent,
                std::ffi::OsStr::from_bytes(new.as_bytes()),
                libc::RENAME_NOREPLACE,
            );
            self.forget(src_parent, 1);
            self.forget(dst_parent, 1);
            r?;
        }
        Ok(())
    }

    /// LOOKUP(dir, "..") for a routed directory: its parent is backing 0's directory at the same
    /// path, not the hidden one.
    pub(super) fn routed_dotdot(&self, dir: &Inode, dirfd: BorrowedFd<'_>) -> Result<Option<Entry>, Errno> {
        if !self.routing() || dir.backing.0 == 0 {
            return Ok(None);
        }
        let b = self.backing(dir.backing)?;
        let parent = sys::open_dotdot(dirfd, libc::O_PATH)?;
        let pst = sys::stat_fd(parent.as_fd())?;
        let Some(names) = names_to_root(b, parent, pst.st_ino)? else { return Ok(None) };
        // A parent that is hidden: its path is a strict prefix of a routed directory's.
        if self.state_of_path(&names).is_none() {
            return Ok(None);
        }
        let b0 = self.backing(BackingIndex(0))?;
        let fd = self.open_rel(b0, &names)?;
        let st = sys::stat_fd(fd.as_fd())?;
        let handle = sys::fd_to_handle(fd.as_fd())?;
        self.register(b0, &st, handle).map(Some)
    }
}

/// The names from `b`'s root down to the directory `fd` (inode `ino`), found by walking `..`
/// and looking each one up by inode number in its parent. None if it is not beneath the root
/// (or deeper than 64).
fn names_to_root(b: &Backing, fd: OwnedFd, ino: u64) -> Result<Option<Vec<CString>>, Errno> {
    let mut names = Vec::new();
    let (mut cur, mut cur_ino) = (fd, ino);
    let mut buf = vec![0u8; 16384];
    while cur_ino != b.root_ino {
        if names.len() > 64 {
            return Ok(None);
        }
        let parent = sys::open_dotdot(cur.as_fd(), libc::O_RDONLY)?;
        let pst = sys::stat_fd(parent.as_fd())?;
        if pst.st_ino == cur_ino {
            return Ok(None); // the file system's root: not beneath the backing
        }
        let mut found = None;
        while found.is_none() {
            let batch = sys::read_dir(parent.as_fd(), &mut buf)?;
            if batch.is_empty() {
                break;
            }
            found = batch.into_iter().find(|e| e.ino == cur_ino && e.name.as_bytes() != b"..").map(|e| e.name);
        }
        names.push(found.ok_or(Errno(libc::ESTALE))?);
        (cur, cur_ino) = (parent, pst.st_ino);
    }
    names.reverse();
    Ok(Some(names))
}
