//! The directory I/O of routing: opening a routed path on a backing, finding a directory's path
//! by walking `..`, and the check for routed paths shadowed on the main backing. Every path is
//! opened beneath a backing's root (`openat_beneath`), never following symlinks.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use super::pattern::{Comp, Routes, join};
use crate::backing::{Backing, Errno, sys};

/// The directory at `path` on `backing`, as an `O_PATH` descriptor.
pub fn open_dir(backing: &Backing, path: &[CString]) -> Result<OwnedFd, Errno> {
    let rel = if path.is_empty() { c".".to_owned() } else { join(path) };
    sys::openat_beneath(backing.root_fd(), &rel, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// Whether the directory `fd` holds nothing but `.` and `..` (looks at the first 4 KiB of
/// entries, which always hold those two and at least one more if there is one).
pub fn is_empty(fd: &OwnedFd) -> Result<bool, Errno> {
    let rd = sys::openat_beneath(fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut buf = vec![0u8; 4096];
    let entries = sys::read_dir(rd.as_fd(), &mut buf)?;
    Ok(!entries.iter().any(|e| e.name.as_bytes() != b"." && e.name.as_bytes() != b".."))
}

/// The names from `b`'s root down to the directory `fd` (inode `ino`), found by walking `..`
/// and looking each one up by inode number in its parent. None if it is not beneath the root
/// (or deeper than 64).
pub fn names_to_root(b: &Backing, fd: OwnedFd, ino: u64) -> Result<Option<Vec<CString>>, Errno> {
    let mut names = Vec::new();
    let (mut cur, mut cur_ino) = (fd, ino);
    let mut buf = vec![0u8; 16384];
    while cur_ino != b.root_ino {
        if names.len() > 64 {
            return Ok(None);
        }
        let parent = sys::open_dotdot(cur.as_fd(), libc::O_RDONLY)?;
        let pst = sys::stat_fd(parent.as_fd())?;
        if pst.st_ino == cur_ino {
            return Ok(None); // the file system's root: not beneath the backing
        }
        let mut found = None;
        while found.is_none() {
            let batch = sys::read_dir(parent.as_fd(), &mut buf)?;
            if batch.is_empty() {
                break;
            }
            found = batch.into_iter().find(|e| e.ino == cur_ino && e.name.as_bytes() != b"..").map(|e| e.name);
        }
        names.push(found.ok_or(Errno(libc::ESTALE))?);
        (cur, cur_ino) = (parent, pst.st_ino);
    }
    names.reverse();
    Ok(Some(names))
}

/// Routed paths that also exist on the main backing (backing 0), where they are shadowed: the
/// route's backing is served. Walks backing 0 along each pattern only (the `*` components'
/// directories), so it costs a listing of those directories, not a scan.
pub fn conflicts(backings: &[Backing], routes: &Routes) -> Vec<String> {
    let mut out = Vec::new();
    let Some(main) = backings.first() else { return out };
    for (pattern, backing) in &routes.routes {
        let Some(routed) = backings.get(*backing as usize) else { continue };
        // Directories of backing 0 matching the pattern's components before the last.
        let mut level: Vec<Vec<CString>> = vec![Vec::new()];
        for comp in &pattern.comps[..pattern.comps.len() - 1] {
            let mut next = Vec::new();
            for path in &level {
                let rel = if path.is_empty() { CString::from(c".") } else { join(path) };
                let Ok(dir) = sys::openat_beneath(main.root_fd(), &rel, libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
                    continue;
                };
                match comp {
                    Comp::Name(n) => {
                        if sys::stat_at(dir.as_fd(), n).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
                            next.push([path.clone(), vec![n.clone()]].concat());
                        }
                    }
                    Comp::Any => {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(batch) = sys::read_dir(dir.as_fd(), &mut buf) {
                            if batch.is_empty() {
                                break;
                            }
                            for e in batch {
                                if e.name.as_bytes() != b"." && e.name.as_bytes() != b".." && e.kind == libc::DT_DIR {
                                    next.push([path.clone(), vec![e.name]].concat());
                                }
                            }
                        }
                    }
                }
            }
            level = next;
        }
        let Some(Comp::Name(last)) = pattern.comps.last() else { continue };
        for path in level {
            let full = [path.clone(), vec![last.clone()]].concat();
            let rel = join(&full);
            if sys::openat_beneath(main.root_fd(), &rel, libc::O_PATH, 0).is_ok() {
                let on_route = sys::openat_beneath(routed.root_fd(), &rel, libc::O_PATH, 0).is_ok();
                out.push(format!(
                    "/{} exists on the main backing {} and is hidden by route {:?}{}; move its contents into the mount's /{} (served from {})",
                    rel.to_string_lossy(),
                    main.path.display(),
                    pattern.text,
                    if on_route { " (the routed backing has it too)" } else { "" },
                    rel.to_string_lossy(),
                    routed.path.display()
                ));
            }
        }
    }
    out
}
