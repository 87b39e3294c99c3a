//! `quotafs project assign`: re-tagging a directory tree with a project id and moving its
//! usage, top-down and in parallel, while tenants keep working in it.
//!
//! Each directory is re-tagged before it is listed, so whatever is created in it afterwards
//! inherits the new project; each entry is re-tagged holding its directory's lock, so never
//! half-made; each inode is moved under its stripe lock with its charge before
//! the move logged (a `Touch`), so a crash mid-walk leaves a ledger that matches the tags
//! exactly, and running the assignment again finishes it.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::ops::Projects;
use crate::backing::{Backing, Errno, Handle, sys};
use crate::ids::InodeRef;
use crate::inode;
use crate::ledger::error::LedgerError;
use crate::quota::Charge;
use crate::tag::{self, Tag};

/// Why `assign_named` did nothing or stopped.
#[derive(Debug)]
pub enum AssignError {
    /// Refused as asked (another project in the tree, a name taken); nothing changed.
    Refused(String),
    /// The walk or the store failed.
    Failed(String),
}

impl From<String> for AssignError {
    fn from(e: String) -> AssignError {
        AssignError::Failed(e)
    }
}

impl From<LedgerError> for AssignError {
    fn from(e: LedgerError) -> AssignError {
        match e {
            LedgerError::Refused(message) => AssignError::Refused(message),
            other => AssignError::Failed(other.to_string()),
        }
    }
}

impl<'a> Projects<'a> {
    /// The inode of directory node `node`, for the project roots table.
    pub fn root_key(&self, node: u64) -> Option<InodeRef> {
        let b = self.backing(inode::backing_of(node)).ok()?;
        let ino = if node == inode::ROOT_ID { b.root_ino } else { node & inode::INO_MASK };
        let fd = b.open_number(ino as u32, libc::O_PATH).ok()?;
        let h = sys::fd_to_handle(fd.as_fd()).ok()?;
        Some(InodeRef { backing: b.index, ino, generation: h.ext4_generation().unwrap_or(0) })
    }

    /// The owner uid of the directory `root` names, if it still exists.
    pub fn owner_of(&self, root: InodeRef) -> Option<u32> {
        let b = self.be.backings.get(root.backing.as_usize())?;
        let fd = b.open_handle(&Handle::ext4(root.ino as u32, root.generation), libc::O_PATH).ok()?;
        sys::stat_fd(fd.as_fd()).ok().map(|st| st.st_uid)
    }

    /// Moves one inode (any descriptor `fd` of it), found in directory `parent` (an inode
    /// number), to `project`. Returns whether it changed.
    ///
    /// The parent's stripe is held as well as the inode's: a creation holds its directory's
    /// stripe from the backing call until the new inode is tagged and charged, so an entry
    /// listed here is never half-made. (The walker lists the backing directly, where the kernel's
    /// directory lock, which keeps tenants off a half-made entry, does not reach. Without this,
    /// a creation caught between its syscall and its tag was moved "from project 0" and then
    /// charged again by its creator: the power-cut rig's project 0 / project 12 drift, design Appendix A.)
    fn retag(&self, b: &Backing, parent: u64, fd: BorrowedFd<'_>, project: u32) -> Result<bool, Errno> {
        let st = sys::stat_fd(fd)?;
        let handle = sys::fd_to_handle(fd)?;
        let key = InodeRef { backing: b.index, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        let mut acct = self.begin(&[parent, st.st_ino]);
        // Listed, then removed before the locks were taken: the descriptor still reaches the
        // inode, but the removal has charged it off (or it is an unlinked open file, charged
        // until its last close). Moving it would take its charge off a second time.
        let st = sys::stat_fd(fd)?;
        if st.st_nlink == 0 {
            return Ok(false);
        }
        // Untagged: not made through the mount (every inode is tagged at first mount, by
        // recovery, or by its creator under the lock held here), counted as project 0.
        let old = tag::read_fd(fd)?.unwrap_or_else(|| super::account::untagged(key));
        if old.project == project {
            return Ok(false);
        }
        let t = acct.track_known(key, old, st)?;
        acct.run(|acct| {
            let written = tag::write_fd(fd, Tag { project, birth: old.birth });
            self.st.nodes.stripes().tag_written(key.ino);
            written?;
            let after = sys::stat_fd(fd).map(|st| Charge::of(&st, project)).unwrap_or(Charge { project, ..t.before });
            acct.moved(&t, after);
            Ok(true)
        })
    }

    /// `project assign`/`clear` as the control socket asks it: refuses a tree that holds
    /// inodes of another project (a nested or earlier assignment) unless `absorb`; else names
    /// the project (names are unique), records its top directory and re-tags the tree.
    /// Returns what to tell the operator.
    pub fn assign_named(
        &self,
        node: u64,
        project: u32,
        name: Option<&str>,
        absorb: bool,
        threads: usize,
    ) -> Result<String, AssignError> {
        let trees = self.project_trees(node)?;
        if !absorb {
            // The project the tree's top directory has now is the one a `clear` ends.
            let own = trees.first().and_then(|(b, h)| {
                let fd = b.open_handle(h, libc::O_RDONLY | libc::O_DIRECTORY).ok()?;
                tag::read_fd(fd.as_fd()).ok().flatten().map(|t| t.project)
            });
            let mut others = std::collections::BTreeMap::new();
            let progress = crate::scan::Progress::start(crate::scan::ASSIGN_SURVEY_TASK);
            for (b, h) in &trees {
                self.survey_tree(b, *h, &mut others, &progress)?;
            }
            others.retain(|p, _| *p != 0 && *p != project && (project != 0 || Some(*p) != own));
            if !others.is_empty() {
                let list: Vec<String> = others.iter().map(|(p, n)| format!("project {p} ({n} inodes)")).collect();
                return Err(AssignError::Refused(format!(
                    "the tree holds {}: refusing to move them into project {project}. Clear or assign those \
                     trees first, or pass --absorb to move them into project {project}",
                    list.join(", ")
                )));
            }
        }
        if let Some(name) = name {
            // A name another project has is refused by the store (`LedgerError::Refused`).
            self.be.ledger.set_project_name(project, Some(name))?;
        }
        if let Some(root) = self.root_key(node) {
            self.be.ledger.store().move_project_root(project, root)?;
        }
        let mut changed = 0;
        let progress = crate::scan::Progress::start(crate::scan::ASSIGN_TASK);
        for (b, h) in trees {
            changed += self.assign_tree(b, h, project, threads, &progress)?;
        }
        Ok(format!("project {project}: {changed} inodes moved"))
    }

    /// The trees a project assignment at directory node `node` covers: the directory itself,
    /// then the hidden counterparts of routed subtrees below it (on other backings).
    fn project_trees(&self, node: u64) -> Result<Vec<(&Backing, Handle)>, String> {
        let b = self.backing(inode::backing_of(node)).map_err(|e| format!("node {node}: {e}"))?;
        let ino = if node == inode::ROOT_ID { b.root_ino } else { node & inode::INO_MASK };
        let fd = b
            .open_number(ino as u32, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open the directory (node {node}): {e}"))?;
        let root = sys::fd_to_handle(fd.as_fd()).map_err(|e| format!("handle of the directory (node {node}): {e}"))?;
        let mut trees = vec![(b, root)];
        if let Ok(dir) = self.inode(node)
            && let Some(state) = self.be.router.state(&dir)
        {
            for (k, fd) in self.be.router.counterparts(&state) {
                let kb = self.backing(k).map_err(|e| e.to_string())?;
                let h = sys::fd_to_handle(fd.as_fd()).map_err(|e| format!("handle of a routed directory: {e}"))?;
                trees.push((kb, h));
            }
        }
        Ok(trees)
    }

    /// Counts the inodes of each project in the tree at directory `root` of backing `b`
    /// (read only: tags are read, nothing is locked or moved). An untagged inode counts as
    /// project 0.
    fn survey_tree(
        &self,
        b: &Backing,
        root: Handle,
        found: &mut std::collections::BTreeMap<u32, u64>,
        progress: &crate::scan::Progress,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut dirs = vec![root];
        let mut first = true;
        progress.dirs_found(1);
        while let Some(h) = dirs.pop() {
            progress.dir_done();
            let Ok(dir) = b.open_handle(&h, libc::O_RDONLY | libc::O_DIRECTORY) else { continue };
            let dir_ino = sys::stat_fd(dir.as_fd()).map_err(|e| format!("stat a directory: {e}"))?.st_ino;
            if std::mem::take(&mut first) {
                let p = tag::read_fd(dir.as_fd()).ok().flatten().map_or(0, |t| t.project);
                *found.entry(p).or_default() += 1;
            }
            loop {
                let batch = sys::read_dir(dir.as_fd(), &mut buf).map_err(|e| format!("list: {e}"))?;
                if batch.is_empty() {
                    break;
                }
                for e in batch {
                    let name: &CStr = &e.name;
                    if name == c"." || name == c".." || b.is_private(dir_ino, name) {
                        continue;
                    }
                    let st = match sys::stat_at(dir.as_fd(), name) {
                        Ok(st) if st.st_dev == b.dev => st,
                        _ => continue,
                    };
                    let p = tag::read_at(dir.as_fd(), name).ok().flatten().map_or(0, |t| t.project);
                    *found.entry(p).or_default() += 1;
                    progress.inode(0);
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                        && let Ok(fd) = sys::open_entry(dir.as_fd(), name)
                        && let Ok(h) = sys::fd_to_handle(fd.as_fd())
                    {
                        dirs.push(h);
                        progress.dirs_found(1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-tags the tree at directory `root` of backing `b`, in parallel.
    fn assign_tree(
        &self,
        b: &Backing,
        root: Handle,
        project: u32,
        threads: usize,
        progress: &crate::scan::Progress,
    ) -> Result<u64, String> {
        // The root is re-tagged here, under its parent's lock too (see `retag`); every other
        // inode when its directory is listed.
        let changed = AtomicU64::new(match b.open_handle(&root, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => {
                let parent = sys::openat_dotdot(fd.as_fd())
                    .and_then(|up| sys::stat_fd(up.as_fd()))
                    .map_err(|e| format!("parent of the directory: {e}"))?;
                let moved = self.retag(b, parent.st_ino, fd.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?;
                progress.inode(0);
                if moved {
                    progress.tagged();
                }
                progress.dirs_found(1);
                u64::from(moved)
            }
            Err(_) => return Ok(0),
        });
        // Directories wait as handles, not descriptors: each worker holds one open directory.
        let queue = Mutex::new((vec![root], 0usize));
        let wake = Condvar::new();
        let failure = Mutex::new(None::<String>);
        let next = || -> Option<Handle> {
            let mut q = queue.lock();
            loop {
                if failure.lock().is_some() {
                    return None;
                }
                if let Some(h) = q.0.pop() {
                    q.1 += 1;
                    return Some(h);
                }
                if q.1 == 0 {
                    wake.notify_all();
                    return None;
                }
                wake.wait(&mut q);
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Some(h) = next() {
                        let mut found = Vec::new();
                        let r = self.assign_dir(b, &h, project, &mut buf, &mut found, progress);
                        progress.dir_done();
                        progress.dirs_found(found.len() as u64);
                        match r {
                            Ok(n) => {
                                changed.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(e) => *failure.lock() = Some(e),
                        }
                        let mut q = queue.lock();
                        q.1 -= 1;
                        q.0.extend(found);
                        wake.notify_all();
                    }
                });
            }
        });
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(changed.into_inner()),
        }
    }

    /// Lists directory `h` (already re-tagged, so what is created in it from now on inherits
    /// the new project) and re-tags its entries; returns its subdirectories in `found`, each
    /// re-tagged before it is listed in turn.
    fn assign_dir(
        &self,
        b: &Backing,
        h: &Handle,
        project: u32,
        buf: &mut [u8],
        found: &mut Vec<Handle>,
        progress: &crate::scan::Progress,
    ) -> Result<u64, String> {
        let Ok(dir) = b.open_handle(h, libc::O_RDONLY | libc::O_DIRECTORY) else { return Ok(0) };
        let dir_ino = sys::stat_fd(dir.as_fd()).map_err(|e| format!("stat a directory: {e}"))?.st_ino;
        crate::failpoint::ASSIGN_LISTING.hit();
        let mut changed = 0;
        loop {
            let batch = sys::read_dir(dir.as_fd(), buf).map_err(|e| format!("list: {e}"))?;
            if batch.is_empty() {
                return Ok(changed);
            }
            for e in batch {
                let name: &CStr = &e.name;
                if name == c"." || name == c".." || b.is_private(dir_ino, name) {
                    continue;
                }
                let st = match sys::stat_at(dir.as_fd(), name) {
                    Ok(st) if st.st_dev == b.dev => st,
                    _ => continue,
                };
                let Ok(fd) = sys::open_entry(dir.as_fd(), name) else { continue };
                crate::failpoint::ASSIGN_RETAG.hit();
                let moved = self.retag(b, dir_ino, fd.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?;
                progress.inode(0);
                if moved {
                    progress.tagged();
                }
                changed += u64::from(moved);
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                    && let Ok(h) = sys::fd_to_handle(fd.as_fd())
                {
                    found.push(h);
                }
            }
        }
    }
}
