//! Victims whose eviction runs off the request path.
//!
//! When an unlink takes a file's last link and nothing holds the inode, ext4 frees the inode
//! and its blocks inside the `unlink` call: 10–12 µs of a ~19 µs unlink of a small file here
//! (docs/design.md §10), on the path of the request a tenant waits for. A removal instead
//! opens the victim `O_PATH` before the unlink and hands the descriptor here after it; the
//! descriptor is closed, and ext4 frees the inode then, at the next FORGET the daemon reads
//! or at the next tick of the checkpoint thread (every 200 ms), whichever comes first. The
//! kernel sends the victim's own FORGET as soon as its dentry goes, to the /dev/fuse reader
//! (over io_uring: not a ring thread), so under `rm -rf` the freeing runs on the other CPU
//! while the ring thread answers the next request. passthrough_hp gets the same from its
//! descriptor per inode, closed at FORGET.
//!
//! Bounded, so that neither the descriptor budget nor a tenant's quota can be got round:
//! at most [`MAX_HELD`] descriptors (part of `handles::RESERVED_FDS`; past it a victim is
//! closed at once, as before), only of files of at most [`MAX_BYTES`] allocated, each for at
//! most one FORGET or one tick. The ledger takes the charge off at the unlink, so what a
//! tenant could have allocated on the backing and uncharged at any moment is at most
//! `MAX_HELD` × `MAX_BYTES` (16 MiB) for at most ~200 ms: a tenant holding the victim's node
//! (an `O_PATH` descriptor on the mount: no FORGET for it ever comes) does not hold the
//! victim, as the next FORGET of any node or the next tick closes it.

use std::os::fd::OwnedFd;

use parking_lot::Mutex;

/// At most this many victims are held at once.
pub const MAX_HELD: usize = 256;
/// Only a victim with at most this many bytes allocated is held (a larger file's freeing is
/// dominated by its extents, not by the inode, and would hold more space uncharged).
pub const MAX_BYTES: u64 = 64 * 1024;

/// Descriptors of unlinked inodes whose last reference the daemon holds (module docs).
#[derive(Debug, Default)]
pub struct Evictions {
    held: Mutex<Vec<OwnedFd>>,
}

impl Evictions {
    /// Whether an inode of stat `st` whose last link is going is worth holding: not a
    /// directory (its removal is rare and frees little), at most [`MAX_BYTES`] allocated.
    pub fn wants(st: &libc::stat) -> bool {
        st.st_mode & libc::S_IFMT != libc::S_IFDIR
            && st.st_nlink <= 1
            && u64::try_from(st.st_blocks).unwrap_or(u64::MAX).saturating_mul(512) <= MAX_BYTES
    }

    /// Holds `fd` (an `O_PATH` descriptor of an inode just unlinked) until the next
    /// `release`; closes it at once when [`MAX_HELD`] are held already.
    pub fn hold(&self, fd: OwnedFd) {
        let mut held = self.held.lock();
        if held.len() < MAX_HELD {
            held.push(fd);
            return;
        }
        drop(held);
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

    /// Descriptors held now.
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn stat_of(path: &std::path::Path) -> libc::stat {
        let m = std::fs::symlink_metadata(path).unwrap();
        // SAFETY: all-zero is a valid libc::stat; only the fields below are read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = m.mode();
        st.st_nlink = m.nlink();
        st.st_blocks = m.blocks() as i64;
        st
    }

    /// A fresh directory of this test's own under the system's temporary directory.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("quotafs-evict-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
        for _ in 0..MAX_HELD + 10 {
            e.hold(std::fs::File::open(&f).unwrap().into());
        }
        assert_eq!(e.len(), MAX_HELD);
        e.release();
        assert!(e.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
