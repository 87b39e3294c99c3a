//! Victims whose eviction runs off the request path.
//!
//! When an unlink takes a file's last link and nothing holds the inode, ext4 frees the inode
//! and its blocks inside the `unlink` call: 10–12 µs of a ~19 µs unlink of a small file here
//! (docs/design.md §10), on the path of the request a tenant waits for. A removal instead
//! opens the victim `O_PATH` before the unlink and, when the unlink released its charge (no
//! open handle: not pinned), hands the descriptor here. It is closed, and ext4 frees the
//! inode, at the next FORGET the kernel sends (it sends the victim's own as soon as its
//! dentry goes, to the /dev/fuse reader, which over io_uring is not a ring thread: under
//! `rm -rf` the freeing runs on the other CPU while the ring thread answers the next
//! request), or at the next tick of a thread of its own ([`TICK`]) when no FORGET comes.
//! passthrough_hp gets the same from its descriptor per inode, closed at FORGET. (A thread
//! woken to close each batch 10 ms after its first victim measured slower than no deferral:
//! its bursts of closes competed with the ring thread for the CPU.)
//!
//! Bounded, so that neither the descriptor budget, a tenant's quota nor a Dropbox's isolation
//! can be got round:
//! * at most [`MAX_HELD`] descriptors (part of `handles::RESERVED_FDS`); past them a victim is
//!   closed at once, as before;
//! * only files of at most [`MAX_BYTES`] allocated when unlinked, and only released ones: a
//!   held victim reached again by handle (an open of `/proc/self/fd` of an `O_PATH` descriptor
//!   on the mount) is charged again as any released inode reached again (`Pins`), and its
//!   release at that open's last close lets go of it here too (`let_go` → `forget`), so it
//!   cannot grow while held and uncharged; the `O_PATH` cache never keeps an unlinked inode
//!   (`InodeTable::path_fd`);
//! * at most one [`TICK`], FORGET or no FORGET (a tenant holding the victims' nodes on the
//!   mount gets no FORGET sent);
//! * only victims of the main backing: closing frees on the victim's file system, and a
//!   Dropbox's victim held here could stall the FORGET reader or the tick on a disk that
//!   stopped answering; a routed backing's unlink frees inline on its own pool, as before.
//!
//! So what a tenant can have allocated and uncharged through this is at most `MAX_HELD` ×
//! `MAX_BYTES` (16 MiB) per mount, for at most a [`TICK`].

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::ids::InodeRef;

/// At most this many victims are held at once.
pub const MAX_HELD: usize = 256;
/// Only a victim with at most this many bytes allocated is held (a larger file's freeing is
/// dominated by its extents, not by the inode, and would hold more space uncharged).
pub const MAX_BYTES: u64 = 64 * 1024;
/// The longest a victim is held when no FORGET comes.
pub const TICK: Duration = Duration::from_millis(200);

/// Descriptors of unlinked inodes whose last reference the daemon holds (module docs).
#[derive(Debug, Default)]
pub struct Evictions {
    held: Mutex<Vec<(InodeRef, OwnedFd)>>,
}

impl Evictions {
    /// Whether an inode of stat `st` whose last link is going is worth holding: not a
    /// directory (its removal is rare and frees little), at most [`MAX_BYTES`] allocated.
    pub fn wants(st: &libc::stat) -> bool {
        st.st_mode & libc::S_IFMT != libc::S_IFDIR
            && st.st_nlink <= 1
            && u64::try_from(st.st_blocks).unwrap_or(u64::MAX).saturating_mul(512) <= MAX_BYTES
    }

    /// Holds `fd`, an `O_PATH` descriptor of inode `key` whose charge was just released by
    /// its unlink, until the next `release`; closes it at once when [`MAX_HELD`] are held
    /// already.
    pub fn hold(&self, key: InodeRef, fd: OwnedFd) {
        let mut held = self.held.lock();
        if held.len() >= MAX_HELD {
            drop(held);
            drop(fd);
            return;
        }
        held.push((key, fd));
    }

    /// Closes the descriptor held for `key`, if any (its charge is being released again
    /// after it was reached and re-pinned: nothing may keep it past that).
    pub fn forget(&self, key: InodeRef) {
        let fd = {
            let mut held = self.held.lock();
            match held.iter().position(|(k, _)| *k == key) {
                Some(i) => held.swap_remove(i),
                None => return,
            }
        };
        drop(fd);
    }

    /// Closes every held descriptor (ext4 frees the inodes now), outside the lock.
    pub fn release(&self) {
        let all = {
            let mut held = self.held.lock();
            if held.is_empty() {
                return;
            }
            std::mem::take(&mut *held)
        };
        drop(all);
    }

    /// The ticking thread's body: closes what is held every [`TICK`], until `stop` is set
    /// (seen within a tick), then closes what is left.
    pub fn run(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            self.release();
        }
        self.release();
    }

    /// Descriptors held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn stat_of(path: &std::path::Path) -> libc::stat {
        crate::backing::sys::stat_fd(std::fs::File::open(path).unwrap().as_fd()).unwrap()
    }

    /// A fresh directory of this test's own under the system's temporary directory.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("quotafs-evict-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The ticking thread closes a victim within about a tick of its hold.
    #[test]
    fn the_thread_closes_what_is_held_each_tick() {
        let dir = scratch("thread");
        let f = dir.join("f");
        std::fs::write(&f, b"x").unwrap();
        let e = Evictions::default();
        let stop = AtomicBool::new(false);
        let key = InodeRef { backing: crate::ids::BackingIndex(0), ino: 1, generation: 1 };
        std::thread::scope(|t| {
            t.spawn(|| e.run(&stop));
            e.hold(key, std::fs::File::open(&f).unwrap().into());
            let start = std::time::Instant::now();
            while !e.is_empty() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(e.is_empty(), "held after {:?}", start.elapsed());
            stop.store(true, Ordering::SeqCst);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holds_small_single_link_files_only() {
        let dir = scratch("wants");
        let small = dir.join("small");
        std::fs::write(&small, [1u8; 4096]).unwrap();
        assert!(Evictions::wants(&stat_of(&small)));
        let big = dir.join("big");
        std::fs::write(&big, vec![1u8; 256 * 1024]).unwrap();
        assert!(!Evictions::wants(&stat_of(&big)), "a 256 KiB file is closed at once");
        std::fs::hard_link(&small, dir.join("other")).unwrap();
        assert!(!Evictions::wants(&stat_of(&small)), "a file with another link is not freed by this unlink");
        assert!(!Evictions::wants(&stat_of(&dir)), "directories are not held");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn holds_at_most_max_and_releases_all() {
        let dir = scratch("bound");
        let f = dir.join("f");
        std::fs::write(&f, b"x").unwrap();
        let e = Evictions::default();
        let key = |ino| InodeRef { backing: crate::ids::BackingIndex(0), ino, generation: 1 };
        for i in 0..MAX_HELD as u64 + 10 {
            e.hold(key(i), std::fs::File::open(&f).unwrap().into());
        }
        assert_eq!(e.len(), MAX_HELD);
        e.forget(key(3));
        e.forget(key(MAX_HELD as u64 + 5));
        assert_eq!(e.len(), MAX_HELD - 1, "a held key is let go of, an unheld one changes nothing");
        e.release();
        assert!(e.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
