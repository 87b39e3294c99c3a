//! The per-inode tag `trusted.quotafs`: the inode's project and the epoch it was born in.
//!
//! ```text
//! value := version u8 (1) | project u32 LE | birth_epoch u64 LE        = 13 bytes
//! ```
//! Every inode on a backing carries one: the first mount tags what was there (birth epoch 0),
//! quotafs tags each inode it creates right after creating it. An untagged inode can therefore
//! only be one created just before a crash, whose tag was not yet durable (docs/design.md §9.3).
//! Tenants cannot see or change it (`trusted.` is private through the mount).

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use crate::backing::{Errno, sys};

pub const NAME: &CStr = c"trusted.quotafs";
const VERSION: u8 = 1;
const LEN: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub project: u32,
    pub birth: u64,
}

impl Tag {
    pub fn encode(&self) -> [u8; LEN] {
        let mut v = [0u8; LEN];
        v[0] = VERSION;
        v[1..5].copy_from_slice(&self.project.to_le_bytes());
        v[5..13].copy_from_slice(&self.birth.to_le_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Tag> {
        if v.len() != LEN || v[0] != VERSION {
            return None;
        }
        Some(Tag {
            project: u32::from_le_bytes(v[1..5].try_into().ok()?),
            birth: u64::from_le_bytes(v[5..13].try_into().ok()?),
        })
    }
}

fn parse(r: Result<usize, Errno>, buf: &[u8]) -> Result<Option<Tag>, Errno> {
    match r {
        Ok(n) => {
            let tag = Tag::decode(&buf[..n]);
            if tag.is_none() {
                tracing::warn!("malformed trusted.quotafs tag; treating the inode as untagged");
            }
            Ok(tag)
        }
        Err(Errno(libc::ENODATA)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tag of the inode `fd` refers to (any descriptor, `O_PATH` included: xattr calls on an
/// `O_PATH` fd fail with EBADF, and then go through `/proc/self/fd`).
pub fn read_fd(fd: BorrowedFd<'_>) -> Result<Option<Tag>, Errno> {
    let mut buf = [0u8; 32];
    let r = match sys::get_xattr(fd, NAME, &mut buf) {
        Err(Errno(libc::EBADF)) => sys::get_xattr_of(fd, NAME, &mut buf),
        other => other,
    };
    parse(r, &buf)
}

/// The tag of `name` in directory `dir`.
pub fn read_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Option<Tag>, Errno> {
    let mut buf = [0u8; 32];
    parse(sys::get_xattr_at(dir, name, NAME, &mut buf), &buf)
}

pub fn write_fd(fd: BorrowedFd<'_>, tag: Tag) -> Result<(), Errno> {
    match sys::set_xattr(fd, NAME, &tag.encode(), 0) {
        Err(Errno(libc::EBADF)) => sys::set_xattr_of(fd, NAME, &tag.encode()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip() {
        let t = Tag { project: 42, birth: 7 };
        assert_eq!(Tag::decode(&t.encode()), Some(t));
        assert_eq!(Tag::decode(&t.encode()[..12]), None);
        let mut bad = t.encode();
        bad[0] = 9;
        assert_eq!(Tag::decode(&bad), None);
    }
}
