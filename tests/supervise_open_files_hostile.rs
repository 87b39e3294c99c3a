//! A handle carried across a takeover cannot reach another tenant's file (issue #19;
//! docs/design.md §18.1). Alice holds a file open across a kill -9; after it, the file is
//! unlinked (its data went with the dead process's descriptors) and bob creates files in the
//! same directory until ext4 gives one of them the freed inode number, which is also the node
//! id alice's handle names. Alice's next write and read through the old handle must fail, and
//! bob's file must be untouched: the open-file table records the inode's generation, checked
//! when the handle is reopened, and the kernel drops an inode whose node id comes back with
//! another generation.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::holder::Holder;
use common::{Fixture, assert_exact, ino};
use takeover::{file_reusing, kill9, next_pid};

/// One try: alice's handle across a kill, her file removed, bob's files made until one takes
/// its inode number. Some(bob's file) once one did (the daemon's own journal records may take
/// the number first: then None, and the caller tries again).
fn attempt(f: &Fixture, a: &mut Holder, pid: &mut u32, n: usize) -> Option<String> {
    let alices = format!("shared/a{n}");
    f.sh_ok(1001, 1001, &format!("echo alice > {}", f.m(&alices).display()));
    let old = ino(&f.b(&alices));
    assert_eq!(a.cmd(&format!("open a{n} {} rdwr", f.m(&alices).display())), "ok");
    kill9(*pid);
    *pid = next_pid(f, Some(*pid));
    f.sh_ok(1001, 1001, &format!("rm {}", f.m(&alices).display()));
    if let Some(name) = file_reusing(f, old, "shared", n, "bob") {
        return Some(name);
    }
    assert_eq!(a.cmd(&format!("close a{n}")), "ok");
    None
}

#[test]
fn an_old_handle_never_reaches_the_file_that_reuses_its_inode_number() {
    let f = Fixture::with_args(
        "supervise-open-hostile",
        &["--supervise", "--transport", "classic", "--restart-limit", "100/60s"],
    );
    let mut pid = next_pid(&f, None);
    f.root(&format!("mkdir {0} && chmod 1777 {0}", f.m("shared").display()));
    let mut a = Holder::spawn(1001, 1001);
    let (n, bobs) = (0..8)
        .find_map(|n| attempt(&f, &mut a, &mut pid, n).map(|b| (n, b)))
        .expect("ext4 gives a freed inode number to a new file of its group");
    let write = a.cmd(&format!("write a{n} 0 XXXX"));
    assert!(write.starts_with("err "), "alice's old handle must not write: {write}");
    let read = a.cmd(&format!("read a{n}"));
    assert!(read.starts_with("err "), "alice's old handle must not read: {read}");
    assert_eq!(std::fs::read_to_string(f.b(&bobs)).unwrap(), "bob\n", "bob's file untouched");
    assert_eq!(a.cmd(&format!("close a{n}")), "ok");
    drop(a);
    assert_exact(&f.state, f.backing(), "after the holder closed it");
}
