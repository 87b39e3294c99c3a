//! `Passthrough`: one `Backend` and one `ServingState`, and the surface the front and the
//! daemon call. Each operation picks its concern on a borrowed `Ops` and runs there; nothing
//! here holds a lock or allocates.

use std::ffi::OsStr;
use std::sync::Arc;

use crate::wire::FileAttr;

use super::attr::{SetAttr, XattrReply};
use super::backend::Backend;
use super::dir::DirEntryOut;
use super::file::Opened;
use super::ops::Ops;
use super::project::AssignError;
use super::router::Router;
use super::session::ServingState;
use super::{Ctx, Entry, FsStats, Options};
use crate::backing::{Backing, BackingIndex, Errno, sys};
use crate::ids::InodeRef;
use crate::inode::Stripes;
use crate::inode::handles::OpenLimits;
use crate::inode::open_table::{OpenRecord, OpenTable};
use crate::ledger::{Beside, Ledger};
use crate::quota::enforce::Enforcer;

/// The passthrough layer of one mount (see the module docs of `passthrough`).
pub struct Passthrough {
    backend: Backend,
    state: ServingState,
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
        let state = ServingState::new(opts.fd_cache, stripes, OpenLimits::new(opts.opens_per_uid, opts.max_data_fds));
        let root = backings.first().ok_or("no backing store configured")?;
        let handle = sys::fd_to_handle(root.root_fd())
            .map_err(|e| format!("backing {} cannot give file handles ({e}); it must be ext4", root.path.display()))?;
        state.nodes.insert_root(root.index, root.root_ino, handle);
        let router = Router::new(opts.routes.clone(), Arc::clone(&backings));
        Ok(Passthrough { backend: Backend { backings, ledger, quota, router, opts }, state })
    }

    fn ops(&self) -> Ops<'_> {
        Ops { be: &self.backend, st: &self.state }
    }

    /// What outlives this process: backings, ledger, quota enforcer, router, options.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// What this process holds for the kernel: nodes, open files, INIT settings.
    pub fn serving_state(&self) -> &ServingState {
        &self.state
    }

    /// Records what FUSE INIT negotiated: whether the kernel left the umask to the file system
    /// (FUSE_DONT_MASK).
    pub fn set_apply_umask(&self, on: bool) {
        self.state.init.set_apply_umask(on);
    }

    /// This process took the connection over from another (docs/design.md §18).
    pub fn set_adopted(&self) {
        self.state.init.set_adopted();
    }

    /// Records every open in `table` from now on (a supervised mount, docs/design.md §18), and
    /// serves the handles `inherited` from an earlier process by reopening each on first use.
    pub fn keep_opens_in(&self, table: OpenTable, inherited: Vec<(u64, OpenRecord)>) {
        let opens = &self.state.opens;
        if !inherited.is_empty() {
            tracing::info!(handles = inherited.len(), "open files of an earlier process, reopened on first use");
        }
        opens.inherit(inherited);
        let _ = opens.table.set(table);
    }

    /// Nodes the kernel currently holds.
    pub fn cached_inodes(&self) -> usize {
        self.state.nodes.len()
    }

    /// Node ids the kernel holds on backing `index`.
    pub fn held_nodes(&self, index: BackingIndex) -> Vec<u64> {
        self.state.nodes.ids_on(index)
    }

    /// The descriptor budget of open files.
    pub fn open_limits(&self) -> &OpenLimits {
        &self.state.opens.limits
    }

    /// Open file handles held.
    pub fn open_files(&self) -> usize {
        self.state.opens.handles.len()
    }

    /// Open files a handover would lose: those not in the supervisor's open-file table (all of
    /// them without one). The next process reopens the others on their next use.
    pub fn open_files_not_carried(&self) -> usize {
        let opens = &self.state.opens;
        match opens.table.get() {
            Some(_) => opens.handles.unrecorded(),
            None => opens.handles.len(),
        }
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.backend.ledger
    }

    /// The quota enforcer: limits in force, grace timers, refusals.
    pub fn quota(&self) -> &Arc<Enforcer> {
        &self.backend.quota
    }

    /// The inode table's stripe locks and tag stamps.
    pub fn stripes(&self) -> &Arc<Stripes> {
        self.state.nodes.stripes()
    }

    /// What the ledger borrows from this layer for a checkpoint or a reconcile.
    pub fn beside(&self) -> Beside<'_> {
        Beside { stripes: self.state.nodes.stripes(), quota: &self.backend.quota }
    }

    pub fn options(&self) -> &Options {
        &self.backend.opts
    }

    pub fn backings(&self) -> &[Backing] {
        &self.backend.backings
    }

    pub fn routes(&self) -> &crate::route::Routes {
        self.backend.router.routes()
    }

    /// The router: where operations on names run, and which backing serves a node.
    pub fn router(&self) -> &Router {
        &self.backend.router
    }

    // Names (`namespace.rs`).

    /// Looks `name` up in directory `parent`: one lookup reference on success.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, Errno> {
        self.ops().names().lookup(parent, name)
    }

    pub fn forget(&self, id: u64, n: u64) {
        self.ops().forget(id, n);
    }

    /// The body of the thread that closes the removals' held victims every tick
    /// (`inode::evict`), until `stop` is set.
    pub fn run_evictions(&self, stop: &std::sync::atomic::AtomicBool) {
        self.state.evictions.run(stop);
    }

    /// Closes the removals' held victims: on each FORGET the kernel sends (`inode::evict`).
    pub fn release_evictions(&self) {
        self.state.evictions.release();
    }

    /// Whether node `id` lies in the tree whose top is directory node `top`: a directory on
    /// `top`'s backing when walking up by `..` reaches `top`; anything else when `file_in`
    /// says so, given its stat and project.
    pub fn in_tree(&self, id: u64, top: u64, file_in: &dyn Fn(&libc::stat, u32) -> bool) -> Result<bool, Errno> {
        self.ops().names().in_tree(id, top, file_in)
    }

    pub fn mkdir(&self, ctx: &Ctx, parent: u64, name: &OsStr, mode: u32, umask: u32) -> Result<Entry, Errno> {
        self.ops().names().mkdir(ctx, parent, name, mode, umask)
    }

    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        self.ops().names().mknod(ctx, parent, name, mode, umask, rdev)
    }

    pub fn symlink(&self, ctx: &Ctx, parent: u64, name: &OsStr, target: &std::path::Path) -> Result<Entry, Errno> {
        self.ops().names().symlink(ctx, parent, name, target)
    }

    /// Creates and opens a regular file: one lookup reference and one open handle on success.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Entry, Opened), Errno> {
        self.ops().names().create(ctx, parent, name, mode, umask, flags)
    }

    pub fn link(&self, ctx: &Ctx, id: u64, newparent: u64, newname: &OsStr) -> Result<Entry, Errno> {
        self.ops().names().link(ctx, id, newparent, newname)
    }

    pub fn unlink(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.ops().names().unlink(ctx, parent, name)
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<(), Errno> {
        self.ops().names().rmdir(ctx, parent, name)
    }

    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        self.ops().names().rename(ctx, parent, name, newparent, newname, flags)
    }

    pub fn readlink(&self, id: u64) -> Result<Vec<u8>, Errno> {
        self.ops().names().readlink(id)
    }

    // Attributes (`attr.rs`).

    pub fn getattr(&self, id: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        self.ops().attrs().getattr(id, fh)
    }

    pub fn setattr(&self, ctx: &Ctx, id: u64, a: &SetAttr) -> Result<FileAttr, Errno> {
        self.ops().attrs().setattr(ctx, id, a)
    }

    pub fn statfs(&self, ctx: &Ctx, id: u64) -> Result<FsStats, Errno> {
        self.ops().attrs().statfs(ctx, id)
    }

    pub fn getxattr(&self, id: u64, name: &OsStr, size: u32) -> Result<XattrReply, Errno> {
        self.ops().attrs().getxattr(id, name, size)
    }

    pub fn listxattr(&self, id: u64, size: u32) -> Result<XattrReply, Errno> {
        self.ops().attrs().listxattr(id, size)
    }

    pub fn setxattr(&self, ctx: &Ctx, id: u64, name: &OsStr, value: &[u8], flags: i32) -> Result<(), Errno> {
        self.ops().attrs().setxattr(ctx, id, name, value, flags)
    }

    pub fn removexattr(&self, ctx: &Ctx, id: u64, name: &OsStr) -> Result<(), Errno> {
        self.ops().attrs().removexattr(ctx, id, name)
    }

    pub fn access(&self, ctx: &Ctx, id: u64, mask: i32) -> Result<(), Errno> {
        self.ops().attrs().access(ctx, id, mask)
    }

    // Open files (`file.rs`).

    pub fn open(&self, ctx: &Ctx, id: u64, flags: i32) -> Result<Opened, Errno> {
        self.ops().files().open(ctx, id, flags)
    }

    /// Reads open file `fh` at `offset` into `buf` (short only at its end); the count read.
    pub fn read_into(&self, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.ops().files().read_into(fh, offset, buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8], cached: bool) -> Result<usize, Errno> {
        self.ops().files().write(fh, offset, data, cached)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        self.ops().files().fsync(fh, datasync)
    }

    pub fn release(&self, fh: u64) {
        self.ops().files().release(fh);
    }

    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> Result<(), Errno> {
        self.ops().files().fallocate(fh, offset, len, mode)
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> Result<i64, Errno> {
        self.ops().files().lseek(fh, offset, whence)
    }

    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<usize, Errno> {
        self.ops().files().copy_file_range(fh_in, off_in, fh_out, off_out, len, flags)
    }

    // Directories (`dir.rs`).

    pub fn fsyncdir(&self, id: u64, datasync: bool) -> Result<(), Errno> {
        self.ops().dirs().fsyncdir(id, datasync)
    }

    pub fn readdir(
        &self,
        id: u64,
        offset: i64,
        plus: bool,
        emit: impl FnMut(&DirEntryOut) -> bool,
    ) -> Result<(), Errno> {
        self.ops().dirs().readdir(id, offset, plus, emit)
    }

    // Projects (`project.rs`).

    /// The inode of directory node `node`, for the project roots table.
    pub fn root_key(&self, node: u64) -> Option<InodeRef> {
        self.ops().projects().root_key(node)
    }

    /// The owner uid of the directory `root` names, if it still exists.
    pub fn owner_of(&self, root: InodeRef) -> Option<u32> {
        self.ops().projects().owner_of(root)
    }

    pub fn assign_named(
        &self,
        node: u64,
        project: u32,
        name: Option<&str>,
        absorb: bool,
        threads: usize,
    ) -> Result<String, AssignError> {
        self.ops().projects().assign_named(node, project, name, absorb, threads)
    }
}
