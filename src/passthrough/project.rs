//! `quotafs project assign`: re-tagging a directory tree with a project id and moving its
//! usage, top-down, while tenants keep working in it.
//!
//! Each directory is re-tagged before it is listed, so whatever is created in it afterwards
//! inherits the new project; each inode is moved under its stripe lock with its charge before
//! the move logged (a `Touch`), so a crash mid-walk leaves a ledger that matches the tags
//! exactly, and running the assignment again finishes it.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

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
        let before = Charge::of(&st, old.project);
        ch.touch(key, before, old.birth)?;
        let new = Tag { project, birth: old.birth };
        tag::write_fd(fd, new)?;
        let after = sys::stat_fd(fd).map(|st| Charge::of(&st, project)).unwrap_or(Charge { project, ..before });
        ch.apply(Some(before), Some(after));
        if let Ok(node) = inode::node_id(b, st.st_ino)
            && let Ok(i) = self.inodes.get(node)
        {
            *i.tag.lock() = Some(new);
        }
        Ok(true)
    }

    /// Assigns `project` to the directory node `node` and everything beneath it.
    pub fn assign_project(&self, node: u64, project: u32) -> Result<u64, String> {
        let b = self.backing(inode::backing_of(node)).map_err(|e| format!("node {node}: {e}"))?;
        let ino = if node == inode::ROOT_ID { b.root_ino } else { node & ((1 << 56) - 1) };
        let root = Handle::ext4(ino as u32, 0);
        b.open_handle(&root, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| format!("cannot open the directory (node {node}): {e}"))?;
        let mut changed = 0u64;
        // Directories wait as handles, not descriptors: the walk holds one open directory.
        let mut queue = vec![root];
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(h) = queue.pop() {
            let Ok(dir) = b.open_handle(&h, libc::O_RDONLY | libc::O_DIRECTORY) else { continue };
            changed += u64::from(self.retag(b, dir.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?);
            loop {
                let batch = sys::read_dir(dir.as_fd(), &mut buf).map_err(|e| format!("list: {e}"))?;
                if batch.is_empty() {
                    break;
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
                            queue.push(h);
                        }
                    } else if let Ok(fd) = sys::open_entry(dir.as_fd(), name) {
                        changed += u64::from(self.retag(b, fd.as_fd(), project).map_err(|e| format!("re-tag: {e}"))?);
                    }
                }
            }
        }
        Ok(changed)
    }
}
