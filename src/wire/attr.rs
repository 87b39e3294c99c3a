//! Attributes as the mount shows them (`fuse_attr`), and the kinds of files.

use std::time::SystemTime;

/// The type of a file, as `fuse_attr.mode`'s `S_IFMT` bits and a directory entry's type say.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum FileType {
    NamedPipe,
    CharDevice,
    BlockDevice,
    Directory,
    RegularFile,
    Symlink,
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits of the type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::NamedPipe => libc::S_IFIFO,
            FileType::CharDevice => libc::S_IFCHR,
            FileType::BlockDevice => libc::S_IFBLK,
            FileType::Directory => libc::S_IFDIR,
            FileType::RegularFile => libc::S_IFREG,
            FileType::Symlink => libc::S_IFLNK,
            FileType::Socket => libc::S_IFSOCK,
        }
    }

    /// The type a directory entry carries (`DT_*`, which is `S_IFMT >> 12`).
    pub fn dirent_type(self) -> u32 {
        self.mode_bits() >> 12
    }
}

/// A node's attributes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FileAttr {
    /// The node id (the inode number the mount shows).
    pub ino: u64,
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: FileType,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
    /// `fuse_attr.flags` (`abi::ATTR_SUBMOUNT`).
    pub flags: u32,
}
