//! `quotafs project assign`: re-tagging a directory tree with a project id and moving its
//! usage, top-down and in parallel, while tenants keep working in it.
//!
//! Each directory is re-tagged before it is listed, so whatever is created in it afterwards
//! inherits the new project; each inode is moved under its stripe lock with its charge before
//! the move logged (a `Touch`), so a crash mid-walk leaves a ledger that matches the tags
//! exactly, and running the assignment again finishes it.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::Passthrough;
use crate::backing::{Backing, Errno, Handle, sys};
use crate::inode;
use crate::ledger::tag::{self, Tag};
use crate::ledger::wal::InodeRef;
use crate::quota::Charge;

impl Passthrough {
    pub fn backings(&self) -> &[Backing] {
        &self.backings
    }

    /// (backing, ino, generation) of directory node `node`, for the project roots table.
    pub fn root_key(&self, node: u64) -> Option<(u8, u64, u32)> {
        let b = self.backing(inode::backing_of(node)).ok()?;
        let ino = if node == inode::ROOT_ID { b.root_ino } else { node & ((1 << 56) - 1) };
        let fd = b.open_handle(&Handle::ext4(ino as u32, 0), libc::O_PATH).ok()?;
        let h = sys::fd_to_handle(fd.as_fd()).ok()?;
        Some((b.index.0, ino, h.ext4_generation().unwrap_or(0)))
    }

    /// The owner uid of the directory `root` names, if it still exists.
    pub fn owner_of(&self, root: (u8, u64, u32)) -> Option<u32> {
        let b = self.backings.get(root.0 as usize)?;
        let fd = b.open_handle(&Handle::ext4(root.1 as u32, root.2), libc::O_PATH).ok()?;
        sys::stat_fd(fd.as_fd()).ok().map(|st| st.st_uid)
    }

    /// Moves one inode (any descriptor `fd` of it) to `project`. Returns whether it changed.
    fn retag(&self, b: &Backing, fd: BorrowedFd<'_>, project: u32) -> Result<bool, Errno> {
        let st = sys::stat_fd(fd)?;
        let handle = sys::fd_to_handle(fd)?;
        let key = InodeRef { backing: b.index.0, ino: st.st_ino, generation: handle.ext4_generation().unwrap_or(0) };
        let ch = self.ledger.change();
        let _lock = self.ledger.lock_inode(st.st_ino);
        let old = tag::read_fd(fd)?.unwrap_or(Tag { project: 0, birth: 0 });
        if old.project == project {
            return Ok(false);
        }
        let st = sys::stat_fd(fd)?;
        let before = ch.remembered(key).unwrap_or(Charge::of(&st, old.project));
        ch.touch(key, before, old.birth)?;
        let new = Tag { project, birth: old.birth };
        tag::write_fd(fd, new)?;
        let after = sys::stat_fd(fd).map(|st| Charge::of(&st, project)).unwrap_or(Charge { project, ..before });
        ch.apply(key.backing, Some(before), Some(after));
        if ch.remembered(key).is_some() {
            ch.remember(key, Some(after), old.birth);
        }
        if let Ok(node) = inode::node_id(b, st.st_ino)
            && let Ok(i) = self.inodes.get(node)
        {
            *i.tag.lock() = Some(new);
        }
        Ok(true)
    }

    /// Assigns `project` to the directory node `node` and everything beneath it, walking the
    /// tree with `threads` workers. Returns how many inodes moved.
    pub fn assign_project(&self, node: u64, project: u32, threads: usize) -> Result<u64, String> {
        let b = self.backing(inode::backing_of(node)).map_err(|e| format!("node {node}: {e}"))?;
        let ino = if node == inode::ROOT_ID { b.root_ino } else { node & ((1 << 56) - 1) };
        let root = Handle::ext4(ino as u32, 0);
        b.open_handle(&root, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open the directory (node {node}): {e}"))?;
        let mut changed = self.assign_tree(b, root, project, threads)?;
        // Routed subtrees below it live on other backings: their hidden counterparts and
        // everything in them go to the project too.
        if let Ok(dir) = self.inode(node)
            && let Some(state) = self.route_state(&dir)
        {
            for (k, fd) in self.hidden_counterparts(&state) {
                let kb = self.backing(crate::backing::BackingIndex(k)).map_err(|e| e.to_string())?;
                let h = sys::fd_to_handle(fd.as_fd()).map_err(|e| format!("handle of a routed directory: {e}"))?;
                changed += self.assign_tree(kb, h, project, threads)?;
            }
        }
        Ok(changed)
    }

    /// Re-tags the tree at directory `root` of backing `b`, in parallel.
    fn assign_tree(&self, b: &Backing, root: Handle, project: u32, threads: usize) -> Result<u64, String> {
        // Directories wait as handles, not descriptors: each worker holds one open directory.
        let queue = Mutex::new((vec![root], 0usize));
        let wake = Condvar::new();
        let changed = AtomicU64::new(0);
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
                        let r = self.assign_dir(b, &h, project, &mut buf, &mut found);
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

    /// Re-tags directory `h` (before listing it, so what is created in it from now on
    /// inherits the new project), then its non-directory entries; returns its subdirectories
    /// in `found`.
    fn assign_dir(
        &self,
        b: &Backing,
        h: &Handle,
        project: u32,
        buf: &mut [u8],
        found: &mut Vec<Handle>,
    ) -> Result<u64, String> {
        let Ok(dir) = b.open_handle(h, libc::O_RDONLY | libc::O_DIRECTORY) else { return Ok(0) };
        let mut changed = u64::from(self.retag(b, dir.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?);
        loop {
            let batch = sys::read_dir(dir.as_fd(), buf).map_err(|e| format!("list: {e}"))?;
            if batch.is_empty() {
                return Ok(changed);
            }
            for e in batch {
                let name: &CStr = &e.name;
                if name == c"." || name == c".." {
                    continue;
                }
                let st = match sys::stat_at(dir.as_fd(), name) {
                    Ok(st) if st.st_dev == b.dev => st,
                    _ => continue,
                };
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    if let Ok(h) = sys::name_to_handle(dir.as_fd(), name) {
                        found.push(h);
                    }
                } else if let Ok(fd) = sys::open_entry(dir.as_fd(), name) {
                    changed += u64::from(self.retag(b, fd.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?);
                }
            }
        }
    }
}
