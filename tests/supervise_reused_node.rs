//! A node the kernel holds across a takeover cannot reach another tenant's file that took its
//! inode number (issue #19; docs/design.md §18.6). Node ids name an ext4 inode number without
//! its generation, and a new serving process resolves the ids it never handed out by number.
//! Alice holds her file by an `O_PATH` descriptor (the kernel keeps its inode; no open reaches
//! the file system) and removes it; the serving process is killed (with it goes the last
//! descriptor of the removed inode, so ext4 frees the number), and bob makes files in his
//! private directory until one takes that number: the new process never saw alice's node. Alice's reopen through
//! `/proc/self/fd` must then fail rather than open bob's file, and her fstat must not show it.

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use common::holder::Holder;
use common::{Fixture, assert_exact, ino};
use takeover::{file_reusing, kill9, next_pid};

/// One try; Some(bob's file) once one of his took the number of alice's removed file.
fn attempt(f: &Fixture, a: &mut Holder, pid: &mut u32, n: usize) -> Option<String> {
    let alices = format!("shared/a{n}");
    f.sh_ok(1001, 1001, &format!("echo alice > {}", f.m(&alices).display()));
    let old = ino(&f.b(&alices));
    assert_eq!(a.cmd(&format!("open a{n} {} path", f.m(&alices).display())), "ok");
    f.sh_ok(1001, 1001, &format!("rm {}", f.m(&alices).display()));
    kill9(*pid);
    *pid = next_pid(f, Some(*pid));
    if let Some(name) = file_reusing(f, old, "shared/bob", n, "bob-secret") {
        return Some(name);
    }
    assert_eq!(a.cmd(&format!("close a{n}")), "ok");
    None
}

#[test]
fn a_node_held_across_a_takeover_never_reaches_the_file_that_reuses_its_number() {
    let f = Fixture::with_args(
        "supervise-reused-node",
        &["--supervise", "--transport", "classic", "--restart-limit", "100/60s"],
    );
    let mut pid = next_pid(&f, None);
    f.root(&format!("mkdir {0} && chmod 1777 {0}", f.m("shared").display()));
    f.sh_ok(1002, 1002, &format!("mkdir -m 700 {}", f.m("shared/bob").display()));
    let mut a = Holder::spawn(1001, 1001);
    let (n, bobs) = (0..8)
        .find_map(|n| attempt(&f, &mut a, &mut pid, n).map(|b| (n, b)))
        .expect("ext4 gives a freed inode number to a new file of its group");
    // Alice cannot reach bob's private directory by name; through her old node neither: not
    // its attributes, not its data. The new process resolves the node id by number (it carries
    // no generation), but bob's create told the kernel the number's new generation, and the
    // kernel then fails its old inode (EIO) rather than ask for it again.
    let stat = a.cmd(&format!("stat a{n}"));
    assert!(stat == "err EIO" || stat == "err ESTALE", "alice's old node shows bob's {bobs}: {stat}");
    let reopened = a.cmd(&format!("reopen a{n} r{n} rdonly"));
    let read = if reopened == "ok" { a.cmd(&format!("read r{n}")) } else { reopened.clone() };
    assert!(
        reopened == "err EIO" || reopened == "err ESTALE",
        "alice's old node opened bob's {bobs}: {reopened} {read}"
    );
    assert_eq!(std::fs::read_to_string(f.b(&bobs)).unwrap(), "bob-secret\n", "bob's file untouched");
    drop(a);
    assert_exact(&f.state, f.backing(), "after the attempt");
}
