//! The inode table: FUSE node ids ↔ backing inodes, lookup counts, and a bounded cache of
//! `O_PATH` descriptors.
//!
//! # Node ids
//! A node id is the backing inode number with the backing's index in the top 8 bits
//! (`index << 56 | ino`); the root of backing 0 is node id 1 (`FUSE_ROOT_ID`). Node ids are thus
//! stable across remounts and never equal across backings, and `st_ino` as seen through the
//! mount is the node id. The FUSE generation is ext4's `i_generation`, read from the file handle.
//!
//! # What the table holds
//! For every node id the kernel currently knows, the inode's *file handle*
//! (`name_to_handle_at`), never an open fd: descriptors are opened on demand with
//! `open_by_handle_at` and kept in a bounded FIFO cache (`fd_cache` entries), so a tree of any
//! size can be looked up under a 20,000 open-file limit.
//!
//! # Lookup-count contract
//! Every reply that hands the kernel an entry (lookup, create, mkdir, mknod, symlink, link, each
//! readdirplus entry other than `.` and `..`) adds exactly one to the node's count; `forget(n)`
//! subtracts n; at zero the node leaves the table (its cached fd is closed). The root is pinned.
//!
//! # Reused inode numbers
//! ext4 gives a freed inode number to a new file at once. While the kernel still holds the old
//! node (a tenant's `O_PATH` descriptor of a deleted file, a request in flight), the new file
//! must not take that node id: a request for the old node that reaches the daemon after the
//! new file took the slot would be served from the new file's handle (an OPEN of a deleted
//! file reaching another tenant's new one; `tests/reopen_reused_inode.rs`). So the new file
//! gets an *alias* node id, the generation's low 23 bits with bit 23 set in bits 32–55
//! (`alias_id`), for as long as the kernel holds it under that id; the old node keeps its
//! slot and its handle (a reopen of it by handle answers ESTALE). A later lookup of the new
//! file finds the alias first, so one file never has two live node ids. Once both are
//! forgotten, the file is looked up under its plain id again (its `st_ino` through the mount
//! can therefore differ between two such lives; node ids stay unique and never name two
//! files). If even the alias is taken (23 bits of generation equal), the plain slot takes the
//! new handle, and the kernel, seeing a new generation for that id, marks its old inode stale
//! (one chance in 8 million per reuse while both older nodes are held). A node
//! id the table does not hold is answered with ESTALE.
//!
//! # Stripes
//! The table also holds the stripe locks that serialise changes to inodes and the tag stamps
//! that tell a cached tag is stale (`stripes`). They are shared (`Arc`) with what changes
//! inodes outside a request: the ledger's reconcile at a checkpoint, the recount of a routed
//! backing.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use parking_lot::Mutex;

pub mod evict;
pub mod handles;
pub mod open_table;
pub mod stripes;

pub use stripes::Stripes;

use crate::backing::{Backing, BackingIndex, Errno, Handle};
use crate::ids::InodeRef;
use crate::tag::Tag;

/// The FUSE root node id.
pub const ROOT_ID: u64 = 1;
const INDEX_SHIFT: u32 = 56;
/// The ext4 inode number part of a node id (ext4 inode numbers are 32-bit).
pub const INO_MASK: u64 = 0xFFFF_FFFF;
/// Bits 32–55 of an alias node id: bit 23 set, then the generation's low 23 bits.
const ALIAS_SHIFT: u32 = 32;
const ALIAS_MARK: u64 = 1 << 23;

/// The alias node id of plain node id `id` for an inode of `generation` (module docs).
pub fn alias_id(id: u64, generation: u32) -> u64 {
    id | ((ALIAS_MARK | u64::from(generation & 0x7F_FFFF)) << ALIAS_SHIFT)
}

/// Whether node id `id` is an alias (module docs).
pub fn is_alias(id: u64) -> bool {
    id != ROOT_ID && (id >> ALIAS_SHIFT) & ((1 << (INDEX_SHIFT - ALIAS_SHIFT)) - 1) != 0
}

/// Computes the node id of backing inode `ino` on `backing`.
pub fn node_id(backing: &Backing, ino: u64) -> Result<u64, Errno> {
    if backing.index.0 == 0 && ino == backing.root_ino {
        return Ok(ROOT_ID);
    }
    if ino > INO_MASK || (backing.index.0 == 0 && ino == ROOT_ID) {
        return Err(Errno(libc::EOVERFLOW));
    }
    Ok((u64::from(backing.index.0) << INDEX_SHIFT) | ino)
}

/// The backing index a node id belongs to.
pub fn backing_of(id: u64) -> BackingIndex {
    BackingIndex((id >> INDEX_SHIFT) as u8)
}

/// One backing inode known to the kernel.
#[derive(Debug)]
pub struct Inode {
    pub id: u64,
    pub backing: BackingIndex,
    /// The ext4 inode number on the backing.
    pub ino: u64,
    pub handle: Handle,
    pub generation: u32,
    /// `S_IFMT` bits of the mode.
    pub kind: u32,
    fd: Mutex<Option<Arc<OwnedFd>>>,
    /// The data descriptors its open files share: `[read-only, read-write]`. Weak: the open
    /// files hold them, and the last close of an access mode closes its descriptor.
    pub data: Mutex<[Weak<handles::DataFd>; 2]>,
    /// The inode's quotafs tag (project, birth epoch) as last read, with the ledger's tag
    /// stamp from just before the read (`Stripes::tag_stamp`): valid while the stamp is.
    pub tag: Mutex<Option<(Tag, u64)>>,
    /// For a directory of backing 0: where it stands against the routes (see `route`).
    pub route: Mutex<RouteMark>,
}

/// What a directory knows of the routes through it.
#[derive(Clone, Debug, Default)]
pub enum RouteMark {
    /// Not known yet (reached by handle, or its path changed): computed when needed.
    #[default]
    Unknown,
    /// No route passes through it.
    Off,
    /// Routes pass through it.
    On(Arc<crate::route::RouteState>),
}

impl Inode {
    /// The inode as the ledger names it.
    pub fn key(&self) -> InodeRef {
        InodeRef { backing: self.backing, ino: self.ino, generation: self.generation }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.kind == libc::S_IFREG
    }
}

#[derive(Debug)]
struct Slot {
    inode: Arc<Inode>,
    lookups: u64,
}

/// Node id → inode, with lookup counts. Thread safe; see the module docs for the contract.
#[derive(Debug)]
pub struct InodeTable {
    map: DashMap<u64, Slot>,
    fd_queue: Mutex<VecDeque<Weak<Inode>>>,
    fd_capacity: usize,
    /// The stripe locks and tag stamps of the inodes (see `stripes`); shared with what
    /// changes inodes outside a request (the ledger's reconcile, the recount of a routed
    /// backing).
    stripes: Arc<Stripes>,
}

impl InodeTable {
    pub fn new(fd_capacity: usize, stripes: Arc<Stripes>) -> InodeTable {
        InodeTable {
            map: DashMap::new(),
            fd_queue: Mutex::new(VecDeque::new()),
            fd_capacity: fd_capacity.max(16),
            stripes,
        }
    }

    /// The stripe locks and tag stamps of the inodes.
    pub fn stripes(&self) -> &Arc<Stripes> {
        &self.stripes
    }

    /// Inserts the pinned root of backing 0.
    pub fn insert_root(&self, backing: BackingIndex, ino: u64, handle: Handle) {
        let generation = handle.ext4_generation().unwrap_or(0);
        let inode = Arc::new(Inode {
            id: ROOT_ID,
            backing,
            ino,
            handle,
            generation,
            kind: libc::S_IFDIR,
            fd: Mutex::new(None),
            data: Mutex::new([Weak::new(), Weak::new()]),
            tag: Mutex::new(None),
            route: Mutex::new(RouteMark::Unknown),
        });
        self.map.insert(ROOT_ID, Slot { inode, lookups: u64::MAX / 2 });
    }

    pub fn get(&self, id: u64) -> Result<Arc<Inode>, Errno> {
        self.map.get(&id).map(|s| Arc::clone(&s.inode)).ok_or(Errno(libc::ESTALE))
    }

    /// Records one more kernel reference to the inode `handle` whose plain node id is `id`
    /// (see the lookup-count contract) and returns the inode as now stored; its `id` is the
    /// node id to hand the kernel, an alias if the plain one still names an older inode.
    pub fn reference(&self, id: u64, backing: BackingIndex, ino: u64, handle: Handle, kind: u32) -> Arc<Inode> {
        let generation = handle.ext4_generation().unwrap_or(0);
        let id = if id == ROOT_ID {
            id
        } else {
            let alias = alias_id(id, generation);
            let held_as_alias = self.map.get(&alias).is_some_and(|s| s.inode.handle == handle);
            let plain_taken = self.map.get(&id).is_some_and(|s| s.inode.handle != handle);
            let alias_free = self.map.get(&alias).is_none();
            if held_as_alias || (plain_taken && alias_free) { alias } else { id }
        };
        self.hold(id, backing, ino, handle, kind)
    }

    /// `reference`, under exactly node id `id` (plain or alias): for a node an earlier process
    /// handed out, whose id the kernel keeps (docs/design.md §18.1).
    pub fn hold(&self, id: u64, backing: BackingIndex, ino: u64, handle: Handle, kind: u32) -> Arc<Inode> {
        let generation = handle.ext4_generation().unwrap_or(0);
        let fresh = || {
            Arc::new(Inode {
                id,
                backing,
                ino,
                handle,
                generation,
                kind,
                fd: Mutex::new(None),
                data: Mutex::new([Weak::new(), Weak::new()]),
                tag: Mutex::new(None),
                route: Mutex::new(RouteMark::Unknown),
            })
        };
        let mut slot = self.map.entry(id).or_insert_with(|| Slot { inode: fresh(), lookups: 0 });
        if slot.inode.handle != handle && id != ROOT_ID {
            slot.inode = fresh();
        }
        slot.lookups = slot.lookups.saturating_add(1);
        Arc::clone(&slot.inode)
    }

    /// Drops `n` kernel references to `id`.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        self.map.remove_if_mut(&id, |_, slot| {
            slot.lookups = slot.lookups.saturating_sub(n);
            slot.lookups == 0
        });
    }

    /// Forgets what every held directory knew of the routes (after a directory on a route's
    /// path moved: the paths below it changed).
    pub fn reset_routes(&self) {
        for slot in self.map.iter() {
            *slot.inode.route.lock() = RouteMark::Unknown;
        }
    }

    /// Node ids held on `backing`.
    pub fn ids_on(&self, backing: BackingIndex) -> Vec<u64> {
        self.map.iter().filter(|s| s.inode.backing == backing).map(|s| *s.key()).collect()
    }

    /// Nodes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Closes the cached `O_PATH` fd of node `id` if the node is inode `generation`. For an
    /// inode whose last link and last open are gone: the cache must not keep a deleted inode
    /// alive, or its blocks stay allocated on the backing, uncharged, for as long as the kernel
    /// holds the node (a tenant's `O_PATH` descriptor on the mount holds it).
    pub fn drop_fd(&self, id: u64, generation: u32) {
        for id in [id, alias_id(id, generation)] {
            let inode = match self.map.get(&id) {
                Some(slot) if slot.inode.generation == generation => Arc::clone(&slot.inode),
                _ => continue,
            };
            inode.fd.lock().take();
        }
    }

    /// An `O_PATH` fd of the inode: from the cache, or opened by handle and cached. An inode
    /// with no link left is not cached (the descriptor lives as long as the request using it):
    /// an unlinked file is kept by its open handles while open, and by nothing of the daemon's
    /// after its charge is released (`drop_fd`), though it can still be opened by handle while
    /// something else holds it (`evict`).
    pub fn path_fd(&self, inode: &Arc<Inode>, backing: &Backing) -> Result<Arc<OwnedFd>, Errno> {
        if let Some(fd) = inode.fd.lock().as_ref() {
            return Ok(Arc::clone(fd));
        }
        let fd = Arc::new(backing.open_handle(&inode.handle, libc::O_PATH | libc::O_NOFOLLOW)?);
        if crate::backing::sys::stat_fd(fd.as_fd()).is_ok_and(|st| st.st_nlink == 0) {
            return Ok(fd);
        }
        {
            let mut slot = inode.fd.lock();
            if let Some(existing) = slot.as_ref() {
                return Ok(Arc::clone(existing));
            }
            *slot = Some(Arc::clone(&fd));
        }
        let evict = {
            let mut q = self.fd_queue.lock();
            q.push_back(Arc::downgrade(inode));
            if q.len() > self.fd_capacity { q.pop_front() } else { None }
        };
        if let Some(old) = evict.and_then(|w| w.upgrade()) {
            old.fd.lock().take();
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ino: u32, generation: u32) -> Handle {
        Handle::ext4(ino, generation)
    }

    #[test]
    fn lookups_add_and_forget_removes_at_zero() {
        let t = InodeTable::new(16, Arc::default());
        let b = BackingIndex(0);
        t.reference(12, b, 12, h(12, 7), libc::S_IFREG);
        t.reference(12, b, 12, h(12, 7), libc::S_IFREG);
        t.forget(12, 1);
        assert!(t.get(12).is_ok(), "one reference left");
        t.forget(12, 1);
        assert_eq!(t.get(12).unwrap_err(), Errno(libc::ESTALE));
    }

    #[test]
    fn a_reused_inode_number_gets_an_alias_while_the_old_node_is_held() {
        let t = InodeTable::new(16, Arc::default());
        let b = BackingIndex(0);
        t.reference(12, b, 12, h(12, 7), libc::S_IFREG);
        let new = t.reference(12, b, 12, h(12, 8), libc::S_IFDIR);
        assert_eq!(new.id, alias_id(12, 8));
        assert!(is_alias(new.id) && !is_alias(12));
        assert_eq!(new.id & INO_MASK, 12);
        assert_eq!(t.get(12).unwrap().generation, 7, "the old node still names the old inode");
        assert_eq!(t.reference(12, b, 12, h(12, 8), libc::S_IFDIR).id, new.id, "found as the alias again");
        t.forget(12, 1);
        assert!(t.get(12).is_err(), "the old node is gone");
        assert_eq!(t.reference(12, b, 12, h(12, 8), libc::S_IFDIR).id, new.id, "still the alias while held");
        t.forget(new.id, 3);
        assert!(t.get(new.id).is_err());
        assert_eq!(t.reference(12, b, 12, h(12, 8), libc::S_IFDIR).id, 12, "plain again once forgotten");
    }

    #[test]
    fn when_even_the_alias_is_taken_the_slot_takes_the_new_inode() {
        let t = InodeTable::new(16, Arc::default());
        let b = BackingIndex(0);
        t.reference(12, b, 12, h(12, 7), libc::S_IFREG);
        let second = t.reference(12, b, 12, h(12, 8), libc::S_IFREG);
        // A third inode whose generation has the same low 23 bits as the second's.
        let third = t.reference(12, b, 12, h(12, 8 | 0x80_0000), libc::S_IFREG);
        assert_eq!(third.id, 12, "the plain slot takes it");
        assert_eq!(t.get(12).unwrap().generation, 8 | 0x80_0000);
        assert_eq!(t.get(second.id).unwrap().generation, 8, "the alias keeps its own inode");
    }

    #[test]
    fn root_is_pinned() {
        let t = InodeTable::new(16, Arc::default());
        t.insert_root(BackingIndex(0), 2, h(2, 0));
        t.forget(ROOT_ID, u64::MAX);
        assert!(t.get(ROOT_ID).is_ok());
    }
}
