//! The router: for an operation on a name in a directory, which backing and which directory
//! it runs on, and what must exist there first (the policy step between an operation and its
//! backing call, as mergerfs has between a FUSE op and its syscall).
//!
//! Only directories of backing 0 route: each one carries a `RouteMark` (the patterns its path
//! matches so far), set from its parent's when it is looked up or made, or computed by walking
//! `..` when it was reached by handle. Inside a routed subtree everything is ordinary (nested
//! routes are refused by the config). A routed directory lives on its route's backing at the
//! same relative path; the directories above it exist there too, hidden, with the owner, mode
//! and project of their counterparts on backing 0.
//!
//! The router holds no state of its own beyond the routes and the backings: the marks live on
//! the inode table's entries, so they come and go with the nodes the kernel holds.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::inode::{self, Inode, RouteMark};
use crate::route::dirs;
use crate::route::{RouteState, Routes, Step};
use crate::tag;

/// Answers where operations on names run. Built once per mount from the validated routes.
#[derive(Debug)]
pub struct Router {
    routes: Routes,
    backings: Arc<Vec<Backing>>,
}

/// Where a name in a directory lives, as the router answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the directory, on its own backing, with no route involved: no route passes through
    /// the directory (it is off every route's path, or on a routed backing, or there are no
    /// routes), or the name is `.` or `..`.
    Plain,
    /// In the directory, on its own backing (backing 0), which lies on a route's path. A
    /// directory found or made under this name lies on a route's path too (`Some`: its
    /// state), or off every route (`None`).
    OnPath(Option<RouteState>),
    /// The routed directory itself, on its route's backing.
    Routed(RoutedDir),
}

/// A routed directory: its backing and its path from that backing's root (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedDir {
    pub backing: BackingIndex,
    pub path: Vec<CString>,
}

impl RoutedDir {
    /// The directory's name and the path of its parent.
    pub fn split(&self) -> Result<(&CString, &[CString]), Errno> {
        self.path.split_last().ok_or(Errno(libc::EINVAL))
    }
}

/// The owner, mode and project a hidden parent is made with: those of its counterpart on
/// backing 0.
#[derive(Clone, Copy, Debug)]
pub struct HiddenDir {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub project: u32,
}

/// A routed directory that exists in a directory being listed.
#[derive(Clone, Debug)]
pub struct Listed {
    pub name: CString,
    pub node: u64,
    /// `d_type` (the `S_IFMT` bits shifted down).
    pub dtype: u32,
}

/// Where a rename runs.
#[derive(Debug)]
pub enum RenameRoute {
    /// Both names are routed directories of one backing: the rename runs there, between
    /// their parents (the destination's made if missing).
    Routed { from: RoutedDir, to: RoutedDir },
    /// In the two directories themselves; then `after`.
    Here(AfterRename),
}

/// What follows a successful rename on backing 0.
#[derive(Debug, Default)]
pub struct AfterRename {
    /// A directory on a route's path moved to a place of the same shape: its hidden
    /// counterparts on the routed backings move with it (from, to).
    pub carry: Option<(RouteState, RouteState)>,
    /// Paths below the renamed entry changed: every held directory's mark is stale.
    pub reset_marks: bool,
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Router {
    pub fn new(routes: Routes, backings: Arc<Vec<Backing>>) -> Router {
        Router { routes, backings }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Whether any route is configured.
    pub fn is_active(&self) -> bool {
        !self.routes.is_empty()
    }

    fn backing(&self, index: BackingIndex) -> Result<&Backing, Errno> {
        self.backings.get(index.0 as usize).ok_or(Errno(libc::ESTALE))
    }

    /// The backing whose pool serves a request for node `node`: the node's own. A routed
    /// directory and everything in it are nodes of the route's backing; a name operation in a
    /// directory of backing 0 runs with that directory, even when it lands on a routed one.
    pub fn serving_backing(&self, node: u64) -> BackingIndex {
        inode::backing_of(node)
    }

    /// The route state of a directory of backing 0; None if no route passes through it.
    pub fn state(&self, dir: &Inode) -> Option<Arc<RouteState>> {
        if !self.is_active() || dir.backing.0 != 0 || !dir.is_dir() {
            return None;
        }
        match &*dir.route.lock() {
            RouteMark::On(s) => return Some(Arc::clone(s)),
            RouteMark::Off => return None,
            RouteMark::Unknown => {}
        }
        let computed = match self.compute_state(dir) {
            Ok(s) => s.map(Arc::new),
            Err(e) => {
                tracing::warn!(ino = dir.ino, error = %e, "cannot find a directory's path for routing");
                return None;
            }
        };
        *dir.route.lock() = computed.as_ref().map_or(RouteMark::Off, |s| RouteMark::On(Arc::clone(s)));
        computed
    }

    /// The state of a directory reached without its path: walk `..` up to the root, finding
    /// each name by inode number in its parent.
    fn compute_state(&self, dir: &Inode) -> Result<Option<RouteState>, Errno> {
        let b = self.backing(BackingIndex(0))?;
        let fd = b.open_handle(&dir.handle, libc::O_PATH | libc::O_NOFOLLOW)?;
        let Some(names) = dirs::names_to_root(b, fd, dir.ino)? else { return Ok(None) };
        Ok(self.state_of_path(&names))
    }

    /// The route state of backing 0's directory at `names`, if routes pass through it.
    fn state_of_path(&self, names: &[CString]) -> Option<RouteState> {
        let mut state = self.routes.root()?;
        for n in names {
            match self.routes.step(&state, n) {
                Step::Local(Some(s)) => state = s,
                _ => return None,
            }
        }
        Some(state)
    }

    /// Where `name` in directory `dir` lives.
    pub fn place(&self, dir: &Inode, name: &CStr) -> Place {
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            return Place::Plain;
        }
        let Some(state) = self.state(dir) else { return Place::Plain };
        match self.routes.step(&state, name) {
            Step::Local(s) => Place::OnPath(s),
            Step::Routed { backing, path } => Place::Routed(RoutedDir { backing, path }),
        }
    }

    /// Records on `child`, a directory found or made at `place`, where it stands.
    pub fn mark(&self, place: &Place, child: &Inode) {
        if let Place::OnPath(s) = place
            && child.is_dir()
        {
            *child.route.lock() = s.as_ref().map_or(RouteMark::Off, |s| RouteMark::On(Arc::new(s.clone())));
        }
    }

    /// The directory at `path` on backing `index` (an `O_PATH` descriptor), with the backing.
    pub fn dir_on(&self, index: BackingIndex, path: &[CString]) -> Result<(&Backing, OwnedFd), Errno> {
        let b = self.backing(index)?;
        Ok((b, dirs::open_dir(b, path)?))
    }

    /// The parent of routed directory `r` on its backing, for a lookup: ENOENT if it does not
    /// exist (a same-named entry of backing 0 is shadowed; `quotafs check` reports it).
    pub fn lookup_parent(&self, r: &RoutedDir) -> Result<(BackingIndex, OwnedFd), Errno> {
        let (_, parents) = r.split()?;
        match self.dir_on(r.backing, parents) {
            Ok((b, fd)) => Ok((b.index, fd)),
            Err(Errno(libc::ENOENT | libc::ENOTDIR)) => Err(Errno(libc::ENOENT)),
            Err(e) => Err(e),
        }
    }

    /// What the hidden counterpart of backing 0's directory at `path` is made with.
    pub fn hidden_template(&self, path: &[CString]) -> Result<HiddenDir, Errno> {
        let (_, src) = self.dir_on(BackingIndex(0), path)?;
        let st = sys::stat_fd(src.as_fd())?;
        let project = tag::read_fd(src.as_fd())?.map_or(0, |t| t.project);
        Ok(HiddenDir { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777, project })
    }

    /// The hidden counterparts, on routed backings, of backing 0's directory at route state
    /// `state`: one per backing its routes lead to, where it exists.
    pub fn counterparts(&self, state: &RouteState) -> Vec<(BackingIndex, OwnedFd)> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for &(r, _) in &state.partial {
            let backing = self.routes.routes[r].1;
            if seen.contains(&backing) {
                continue;
            }
            seen.push(backing);
            if let Ok((_, fd)) = self.dir_on(backing, &state.path) {
                out.push((backing, fd));
            }
        }
        out
    }

    /// Whether a non-empty hidden counterpart keeps `state`'s directory from being removed.
    pub fn counterparts_hold_entries(&self, state: &RouteState) -> Result<bool, Errno> {
        for (_, fd) in self.counterparts(state) {
            if !dirs::is_empty(&fd)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Routed directories that exist in `dir` (a directory of backing 0), as entries for a
    /// listing, in a stable order.
    pub fn listing(&self, dir: &Inode) -> Vec<Listed> {
        let Some(state) = self.state(dir) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, backing) in self.routes.routed_names(&state) {
            let Ok((b, parent)) = self.dir_on(backing, &state.path) else { continue };
            if let Ok(st) = sys::stat_at(parent.as_fd(), &name)
                && let Ok(node) = inode::node_id(b, st.st_ino)
            {
                out.push(Listed { name, node, dtype: (st.st_mode & libc::S_IFMT) >> 12 });
            }
        }
        out
    }

    /// `..` of a routed directory `dir` (open as `dirfd`): backing 0's directory at the same
    /// path, not the hidden one. None when `dir` is not a routed directory.
    pub fn dotdot(&self, dir: &Inode, dirfd: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
        if !self.is_active() || dir.backing.0 == 0 {
            return Ok(None);
        }
        let b = self.backing(dir.backing)?;
        let parent = sys::open_dotdot(dirfd, libc::O_PATH)?;
        let pst = sys::stat_fd(parent.as_fd())?;
        let Some(names) = dirs::names_to_root(b, parent, pst.st_ino)? else { return Ok(None) };
        // A parent that is hidden: its path is a strict prefix of a routed directory's.
        if self.state_of_path(&names).is_none() {
            return Ok(None);
        }
        let (_, fd) = self.dir_on(BackingIndex(0), &names)?;
        Ok(Some(fd))
    }

    /// Where renaming `name` in `from` (open as `fromfd`) to `newname` in `to` runs; EXDEV
    /// where it cannot (a routed directory to anywhere but another routed place of its
    /// backing; a directory that would leave routed parts behind or hide its own entries
    /// behind routed names: `mv` copies instead). `from` and `to` are on one backing.
    pub fn rename(
        &self,
        from: &Inode,
        fromfd: BorrowedFd<'_>,
        name: &CStr,
        to: &Inode,
        newname: &CStr,
        exchange: bool,
    ) -> Result<RenameRoute, Errno> {
        if !self.is_active() || from.backing.0 != 0 {
            return Ok(RenameRoute::Here(AfterRename::default()));
        }
        let mut after = AfterRename { carry: None, reset_marks: true };
        match (self.place(from, name), self.place(to, newname)) {
            (Place::Routed(r1), Place::Routed(r2)) => {
                if r1.backing != r2.backing {
                    return Err(Errno(libc::EXDEV));
                }
                return Ok(RenameRoute::Routed { from: r1, to: r2 });
            }
            (Place::Routed(_), _) | (_, Place::Routed(_)) => return Err(Errno(libc::EXDEV)),
            (p1, p2) => {
                if sys::stat_at(fromfd, name).is_ok_and(|st| is_dir(&st)) {
                    match (p1, p2) {
                        (Place::OnPath(Some(a)), Place::OnPath(Some(b))) if Routes::same_shape(&a, &b) && !exchange => {
                            after.carry = Some((a, b));
                        }
                        (Place::OnPath(Some(a)), _) if !self.counterparts(&a).is_empty() => {
                            return Err(Errno(libc::EXDEV));
                        }
                        (Place::OnPath(Some(_)), _) => {}
                        // A directory moving onto a route's path could hide its own entries
                        // behind routed names.
                        (_, Place::OnPath(Some(_))) => return Err(Errno(libc::EXDEV)),
                        _ => {}
                    }
                }
            }
        }
        Ok(RenameRoute::Here(after))
    }
}
