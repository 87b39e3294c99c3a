//! A tenant's `O_PATH` descriptor of a file it unlinked, reopened through `/proc/self/fd`, must
//! reach that file or fail (ESTALE once the daemon let go of it, EIO once the kernel saw its
//! inode number reused): never another file.
//!
//! Tenant 1001 makes `shared/a` ("attacker\n"), holds it by `O_PATH`, unlinks it and reopens
//! `/proc/self/fd/N` again and again, while tenant 1002 creates and removes 0600 files in its
//! 0700 directory next to it, so that ext4 hands the freed inode number to 1002's files. A FUSE
//! OPEN carries a node id and no generation, and node id = inode number: an OPEN of the old
//! node that the daemon serves after it registered the new file under that node id (and before
//! the kernel, seeing the new generation, marked its old inode stale) opens 1002's file for
//! 1001. Found by the stress run (successful reopens whose later calls answered EIO).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Fixture;

const ROUNDS: u32 = 300;

const VICTIM: &str = r#"
import os
i = 0
while not os.path.exists("shared/stop"):
    p = f"shared/v/s{i % 4}"
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"SECRET-OF-1002\n")
        os.close(fd)
        if i % 4 == 3:
            for k in range(4):
                os.unlink(f"shared/v/s{k}")
    except OSError:
        pass
    i += 1
"#;

/// Prints one line per successful reopen that did not reach the attacker's own file.
const ATTACKER: &str = r#"
import errno, os, sys
rounds = int(sys.argv[1])
for r in range(rounds):
    fd = os.open("shared/a", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"attacker\n")
    os.close(fd)
    op = os.open("shared/a", os.O_PATH)
    os.unlink("shared/a")
    for _ in range(200):
        try:
            fd = os.open(f"/proc/self/fd/{op}", os.O_RDONLY)
        except OSError as e:
            if e.errno == errno.EIO:
                break  # the kernel saw the number reused: the documented answer
            continue
        what = None
        try:
            data = os.pread(fd, 64, 0)
            if data != b"attacker\n":
                what = f"read {data!r}"
        except OSError as e:
            what = f"read: {e}"
        try:
            os.close(fd)
        except OSError as e:
            what = what or f"close: {e}"
        if what:
            print(f"round {r}: reopened, then {what}")
    os.close(op)
open("shared/stop", "w").close()
"#;

#[test]
fn reopen_of_an_unlinked_file_never_reaches_the_file_that_reuses_its_inode_number() {
    let f = Fixture::new("reopenreuse");
    f.root("mkdir -p shared/v && chmod 1777 shared && chown 1002:1002 shared/v && chmod 700 shared/v");
    let python = ["/usr/bin/python3", "/bin/python3"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("python3");
    let as_tenant = |uid: u32, script: &str, args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups");
        cmd.args([python, "-B", "-c", script]).args(args).current_dir(&f.mnt).stdin(Stdio::null());
        cmd
    };
    let mut victim = as_tenant(1002, VICTIM, &[]).spawn().expect("spawn the victim (setpriv, python3)");
    let out = as_tenant(1001, ATTACKER, &[&ROUNDS.to_string()]).output().expect("run the attacker");
    let _ = std::fs::File::create(f.m("shared/stop"));
    let _ = victim.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the attacker failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let wrong: Vec<&str> = stdout.lines().collect();
    assert!(
        wrong.is_empty(),
        "{} reopens of an unlinked file reached another inode (the file now holding its inode number), e.g.:\n  {}",
        wrong.len(),
        wrong.iter().take(5).copied().collect::<Vec<_>>().join("\n  ")
    );
}
