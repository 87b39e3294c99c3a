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
        let Some(routed) = backings.get(backing.as_usize()) else { continue };
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::backing::BackingIndex;
    use crate::route::Pattern;

    /// A directory of its own under the temp dir, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("quotafs-route-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn mkdirs(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn backing(index: u8, path: &Path) -> Backing {
        Backing::open(BackingIndex(index), path).unwrap()
    }

    #[test]
    fn open_dir_stays_beneath_the_backing_and_follows_no_symlink() {
        let d = Dir::new("open");
        d.mkdirs("main/home/a");
        std::os::unix::fs::symlink(d.0.join("main/home"), d.0.join("main/link")).unwrap();
        let b = backing(0, &d.0.join("main"));
        assert!(open_dir(&b, &[]).is_ok());
        assert!(open_dir(&b, &[c("home"), c("a")]).is_ok());
        assert!(open_dir(&b, &[c("home"), c("b")]).is_err());
        assert!(open_dir(&b, &[c("..")]).is_err());
        assert!(open_dir(&b, &[c("link"), c("a")]).is_err());
    }

    #[test]
    fn names_to_root_finds_the_path_by_walking_up() {
        let d = Dir::new("walk");
        d.mkdirs("main/home/a/Mail");
        d.mkdirs("elsewhere");
        let b = backing(0, &d.0.join("main"));
        let path = [c("home"), c("a"), c("Mail")];
        let fd = open_dir(&b, &path).unwrap();
        let ino = sys::stat_fd(fd.as_fd()).unwrap().st_ino;
        assert_eq!(names_to_root(&b, fd, ino).unwrap(), Some(path.to_vec()));
        let root = open_dir(&b, &[]).unwrap();
        assert_eq!(names_to_root(&b, root, b.root_ino).unwrap(), Some(Vec::new()));
        // A directory outside the backing has no path beneath its root.
        let outside = backing(1, &d.0.join("elsewhere"));
        let fd = open_dir(&outside, &[]).unwrap();
        assert!(!matches!(names_to_root(&b, fd, outside.root_ino), Ok(Some(_))));
    }

    #[test]
    fn is_empty_sees_any_entry() {
        let d = Dir::new("empty");
        let p = d.mkdirs("main/x");
        let b = backing(0, &d.0.join("main"));
        assert!(is_empty(&open_dir(&b, &[c("x")]).unwrap()).unwrap());
        std::fs::write(p.join("f"), b"").unwrap();
        assert!(!is_empty(&open_dir(&b, &[c("x")]).unwrap()).unwrap());
    }

    #[test]
    fn conflicts_name_routed_paths_shadowed_on_the_main_backing() {
        let d = Dir::new("conflicts");
        d.mkdirs("main/home/a/Dropbox");
        d.mkdirs("main/home/b/Mail");
        d.mkdirs("main/home/c/Dropbox");
        d.mkdirs("dropbox/home/c/Dropbox");
        let backings = vec![backing(0, &d.0.join("main")), backing(1, &d.0.join("dropbox"))];
        let routes = Routes { routes: vec![(Pattern::parse("/home/*/Dropbox").unwrap(), BackingIndex(1))] };
        let mut found = conflicts(&backings, &routes);
        found.sort();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("/home/a/Dropbox exists on the main backing"), "{}", found[0]);
        assert!(!found[0].contains("has it too"), "{}", found[0]);
        assert!(found[1].starts_with("/home/c/Dropbox exists on the main backing"), "{}", found[1]);
        assert!(found[1].contains("(the routed backing has it too)"), "{}", found[1]);
    }
}
