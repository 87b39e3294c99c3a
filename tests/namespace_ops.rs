//! Names: mkdir/rmdir/unlink, rename with RENAME_NOREPLACE and RENAME_EXCHANGE, hard links
//! seen through every name, symlinks, fifos and sockets, device nodes (root only), 255-byte
//! names, paths near PATH_MAX, and readdir agreeing with stat.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{Fixture, errno_of, ino};
use rustix::fs::{CWD, RenameFlags, renameat_with};

#[test]
fn namespace_operations() {
    let f = Fixture::new("ns");
    std::fs::create_dir(f.m("d")).unwrap();
    assert_eq!(errno_of(std::fs::create_dir(f.m("d"))), libc::EEXIST);
    std::fs::write(f.m("d/a"), b"A").unwrap();
    std::fs::write(f.m("d/b"), b"B").unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(f.m("d"))), libc::ENOTEMPTY);

    // Plain rename replaces; NOREPLACE refuses; EXCHANGE swaps atomically.
    std::fs::rename(f.m("d/a"), f.m("d/a2")).unwrap();
    assert_eq!(std::fs::read(f.m("d/a2")).unwrap(), b"A");
    let r = renameat_with(CWD, f.m("d/a2"), CWD, f.m("d/b"), RenameFlags::NOREPLACE);
    assert_eq!(r.unwrap_err().raw_os_error(), libc::EEXIST);
    renameat_with(CWD, f.m("d/a2"), CWD, f.m("d/b"), RenameFlags::EXCHANGE).unwrap();
    assert_eq!(std::fs::read(f.m("d/a2")).unwrap(), b"B");
    assert_eq!(std::fs::read(f.m("d/b")).unwrap(), b"A");
    // Renaming a directory across parents.
    std::fs::create_dir_all(f.m("x/y")).unwrap();
    std::fs::rename(f.m("d"), f.m("x/y/d")).unwrap();
    assert_eq!(std::fs::read(f.m("x/y/d/b")).unwrap(), b"A");
    assert!(f.b("x/y/d/b").exists(), "the backing holds the moved tree");

    // Hard links: one inode, link count seen through every name, data shared.
    std::fs::write(f.m("h1"), b"shared").unwrap();
    std::fs::hard_link(f.m("h1"), f.m("h2")).unwrap();
    std::fs::hard_link(f.m("h1"), f.m("x/h3")).unwrap();
    for name in ["h1", "h2", "x/h3"] {
        let md = std::fs::metadata(f.m(name)).unwrap();
        assert_eq!(md.nlink(), 3, "nlink through {name}");
        assert_eq!(md.ino(), ino(&f.m("h1")));
    }
    std::fs::write(f.m("h2"), b"changed").unwrap();
    assert_eq!(std::fs::read(f.m("x/h3")).unwrap(), b"changed");
    std::fs::remove_file(f.m("h1")).unwrap();
    assert_eq!(std::fs::metadata(f.m("h2")).unwrap().nlink(), 2);
    assert_eq!(errno_of(std::fs::hard_link(f.m("x"), f.m("xlink"))), libc::EPERM, "no hard links to dirs");

    // Symlinks: stored verbatim (even dangling or absolute), followed by the client.
    std::os::unix::fs::symlink("x/h3", f.m("sl")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", f.m("dangling")).unwrap();
    assert_eq!(std::fs::read_link(f.m("sl")).unwrap().to_str(), Some("x/h3"));
    assert_eq!(std::fs::read(f.m("sl")).unwrap(), b"changed");
    assert_eq!(std::fs::read_link(f.m("dangling")).unwrap().to_str(), Some("/nonexistent/target"));
    assert!(std::fs::symlink_metadata(f.m("sl")).unwrap().file_type().is_symlink());

    // mknod: fifo and socket for anyone; device nodes only for root.
    let home = f.home("u", 1000, 1000);
    f.sh_ok(1000, 1000, "mkfifo u/fifo");
    assert!(std::fs::metadata(home.join("fifo")).unwrap().file_type().is_fifo());
    let listener = std::os::unix::net::UnixListener::bind(home.join("sock")).unwrap();
    assert!(std::fs::metadata(home.join("sock")).unwrap().file_type().is_socket());
    drop(listener);
    let dev = f.sh_as(1000, 1000, "mknod u/null c 1 3");
    assert!(!dev.status.success(), "a tenant cannot make a device node");
    f.root("mknod u/rootnull c 1 3");
    let md = std::fs::metadata(home.join("rootnull")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));
    // A fifo carries data between two openers through the mount.
    let out = f.sh_ok(1000, 1000, "(echo through-fifo > u/fifo &) ; cat u/fifo");
    assert_eq!(out.trim(), "through-fifo");

    // unlink and rmdir.
    std::fs::remove_file(f.m("h2")).unwrap();
    assert_eq!(errno_of(std::fs::remove_file(f.m("h2"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::remove_file(f.m("x"))), libc::EISDIR);
    std::fs::create_dir(f.m("empty")).unwrap();
    std::fs::remove_dir(f.m("empty")).unwrap();
    assert!(!f.b("empty").exists());
}

#[test]
fn long_names_and_deep_paths() {
    let f = Fixture::new("names");
    let n255 = "n".repeat(255);
    std::fs::write(f.m(&n255), b"max").unwrap();
    assert_eq!(std::fs::read(f.m(&n255)).unwrap(), b"max");
    let n256 = "n".repeat(256);
    assert_eq!(errno_of(std::fs::write(f.m(&n256), b"x")), libc::ENAMETOOLONG);
    // Names with every awkward byte but '/' and NUL.
    let odd = "sp ace\tnew\nline\u{e9}\\*?\"'";
    std::fs::write(f.m(odd), b"odd").unwrap();
    assert!(std::fs::read_dir(&f.mnt).unwrap().any(|e| e.unwrap().file_name() == odd));

    // A path close to PATH_MAX (4096): 16 levels of 250-byte names.
    let comp = "d".repeat(250);
    let mut rel = String::new();
    for _ in 0..15 {
        rel.push_str(&comp);
        rel.push('/');
    }
    std::fs::create_dir_all(f.m(&rel)).unwrap();
    let room = 4090 - f.m(&rel).as_os_str().len();
    let leaf = format!("{rel}{}", "f".repeat(room.min(255)));
    let full = f.m(&leaf);
    assert!(full.as_os_str().len() > 4000, "path length {}", full.as_os_str().len());
    std::fs::write(&full, b"deep").unwrap();
    assert_eq!(std::fs::read(&full).unwrap(), b"deep");
    let too_long = format!("{rel}{}/{}", comp, "g".repeat(250));
    assert_eq!(errno_of(std::fs::write(f.m(&too_long), b"x")), libc::ENAMETOOLONG);
}

#[test]
fn readdir_matches_stat_and_lists_everything() {
    let f = Fixture::new("readdir");
    std::fs::create_dir(f.m("many")).unwrap();
    for i in 0..3000 {
        std::fs::write(f.m(&format!("many/file-{i:05}")), b"").unwrap();
    }
    let mut seen = HashSet::new();
    for e in std::fs::read_dir(f.m("many")).unwrap() {
        let e = e.unwrap();
        // d_ino from readdir equals st_ino from stat.
        assert_eq!(e.ino(), ino(&e.path()), "{:?}", e.file_name());
        assert!(seen.insert(e.file_name()), "listed twice: {:?}", e.file_name());
    }
    assert_eq!(seen.len(), 3000);
    // `ls -l` (readdirplus) agrees, including . and ..
    let out = f.root("ls -la many | wc -l");
    assert_eq!(out.trim(), "3003", "total line + . + .. + 3000");
    assert_eq!(ino(&f.m("many/..")), ino(&f.mnt));
    assert_eq!(ino(&f.mnt), 1, "the mount root is node 1");

    // The kernel caches listings (directories have no open state); every change made through
    // the mount must show in the very next listing.
    let names = |dir: &str| -> HashSet<String> {
        std::fs::read_dir(f.m(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    };
    std::fs::create_dir(f.m("small")).unwrap();
    std::fs::write(f.m("small/a"), b"").unwrap();
    assert_eq!(names("small"), HashSet::from(["a".to_string()]));
    std::fs::write(f.m("small/b"), b"").unwrap();
    assert_eq!(names("small"), HashSet::from(["a".to_string(), "b".to_string()]));
    std::fs::rename(f.m("small/a"), f.m("small/c")).unwrap();
    std::fs::rename(f.m("small/b"), f.m("many/moved-in")).unwrap();
    assert_eq!(names("small"), HashSet::from(["c".to_string()]));
    assert!(names("many").contains("moved-in"));
    std::fs::remove_file(f.m("small/c")).unwrap();
    assert!(names("small").is_empty());
    assert_eq!(names("many").len(), 3001);
}

use std::os::unix::fs::DirEntryExt;
