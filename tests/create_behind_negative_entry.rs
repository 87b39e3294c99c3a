//! An open(O_CREAT) whose name the kernel believes absent (a cached negative entry; entries
//! are cached for `entry_ttl`, 10 s by default) while a file of that name exists on the
//! backing: put there since by a move on the backing, or by another connection of the same
//! daemon. The kernel sends CREATE; the daemon must open what is there, as open(2) would, and
//! charge nothing twice. Before: the backing's open(O_CREAT) opened the existing file and the
//! daemon tagged and charged it as new (one inode and its blocks charged twice, its birth epoch
//! and project rewritten), and O_TRUNC truncated it unaccounted.

mod common;

use std::io::Write;

use common::{Fixture, assert_exact, errno_of};

#[test]
fn create_over_a_name_the_kernel_thinks_absent_opens_the_existing_file() {
    let f = Fixture::new("create-negative");
    f.root("mkdir -p home/t && chown 1001:1001 home/t");
    f.sh_ok(1001, 1001, "cd home/t && head -c 20000 /dev/urandom > a && head -c 30000 /dev/urandom > b && echo c > c");
    assert_exact(&f.state, f.backing(), "before");
    for (name, src) in [("x", "a"), ("y", "b"), ("z", "c")] {
        // The kernel learns that the name is absent, and caches that.
        assert_eq!(errno_of(std::fs::metadata(f.m(&format!("home/t/{name}")))), libc::ENOENT);
        // A charged file moves onto that name on the backing.
        std::fs::rename(f.b(&format!("home/t/{src}")), f.b(&format!("home/t/{name}"))).unwrap();
    }
    // Plain O_CREAT (append), O_CREAT|O_TRUNC (the shell's >), and O_CREAT|O_EXCL.
    f.sh_ok(1001, 1001, "cd home/t && echo more >> x && echo new > y");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    assert_eq!(errno_of(opts.open(f.m("home/t/z"))), libc::EEXIST, "O_EXCL still refuses an existing name");
    // What a tenant sees: the existing files, opened, appended to and truncated.
    let x = std::fs::read(f.m("home/t/x")).unwrap();
    assert_eq!(x.len(), 20005, "x is a's 20,000 bytes and the appended line");
    assert_eq!(std::fs::read(f.m("home/t/y")).unwrap(), b"new\n", "y was truncated and rewritten");
    assert_eq!(std::fs::read(f.m("home/t/z")).unwrap(), b"c\n");
    assert_exact(&f.state, f.backing(), "after creates over names the kernel thought absent");
    // Another tenant cannot reach a file it may not open this way either.
    f.root("chmod 600 home/t/x && chmod 777 home/t");
    assert_eq!(errno_of(std::fs::metadata(f.m("home/t/w"))), libc::ENOENT);
    std::fs::rename(f.b("home/t/x"), f.b("home/t/w")).unwrap();
    let out = f.sh_as(1002, 1002, "echo evil >> home/t/w");
    assert!(!out.status.success(), "uid 1002 appended to a 0600 file of uid 1001: {out:?}");
    let w = std::fs::read(f.b("home/t/w")).unwrap();
    assert_eq!(w.len(), 20005, "the file is as it was");
    let mut last = std::fs::OpenOptions::new().append(true).open(f.m("home/t/w")).unwrap();
    last.write_all(b"!").unwrap();
    drop(last);
    assert_exact(&f.state, f.backing(), "after the refused open");
}
