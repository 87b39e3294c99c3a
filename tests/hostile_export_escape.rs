//! An export connection (`--exports-dir`) serves one tree: a client of that export (an NFS
//! server turns client handles into `open_by_handle_at` on it, and a client can forge a handle:
//! it is node id and generation) must reach nothing outside the tree. Forged handles naming
//! another project's file, a file and a directory of the mount root, and another tenant's home
//! are stale through the export connections, while the same handles open through the main
//! mount (the recipe works) and a handle inside the tree opens; a symlink leads nowhere outside.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, assert_exact, mounted_at, run_ok};

const HANDLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nfs/handles.py");

fn wait_mounted(p: &Path, f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounted_at(p).as_deref() != Some("fuse.quotafs") {
        assert!(Instant::now() < deadline, "{} not mounted:\n{}", p.display(), f.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The FUSE handle a forger makes for the backing file `p` (its ext4 inode number and true
/// generation), as "TYPE HEX".
fn forged(p: &Path) -> String {
    let ext4 = run_ok(Command::new(HANDLES).arg("get").arg(p));
    let hex = ext4.trim().split(' ').nth(1).unwrap().to_string();
    let raw: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let ino = u32::from_le_bytes(raw[0..4].try_into().unwrap());
    let generation = u32::from_le_bytes(raw[4..8].try_into().unwrap());
    run_ok(Command::new(HANDLES).args(["fuse", &ino.to_string(), &generation.to_string()])).trim().to_string()
}

fn open(mount: &Path, handle: &str) -> String {
    let mut parts = handle.split(' ');
    let (t, hex) = (parts.next().unwrap(), parts.next().unwrap());
    run_ok(Command::new(HANDLES).arg("open").arg(mount).args([t, hex])).trim().to_string()
}

#[test]
fn forged_handles_and_symlinks_never_leave_an_export_connections_tree() {
    let mut f = Fixture::new("export-escape");
    f.home("alice", 1001, 1001);
    f.home("bob", 1004, 1004);
    f.root(
        "mkdir site other && chown 1002:1002 site && chown 1003:1003 other && echo inside > site/mine \
         && echo PROJECT7 > other/secret && echo ROOTFILE > top && mkdir topdir && echo BOB > bob/diary \
         && chown 1004:1004 bob/diary && chmod 644 top bob/diary other/secret",
    );
    for (dir, id, name) in [("site", "42", "site"), ("other", "7", "other")] {
        f.quotafs(&["project", "assign", "--id", id, "--name", name, &f.m(dir).display().to_string()]);
    }
    let exports = f.scratch.dir.join("exports");
    assert!(f.unmount().success());
    f.start(&["--exports-dir", &exports.display().to_string(), "--export-projects", "--export-users"]);
    let site = exports.join("projects/site");
    let alice = exports.join(format!("users/{}", user_leaf(1001)));
    wait_mounted(&site, &f);
    wait_mounted(&alice, &f);

    let outside = [f.b("other/secret"), f.b("top"), f.b("topdir"), f.b("bob/diary"), f.b("bob")];
    for p in &outside {
        let h = forged(p);
        assert_ne!(open(&f.mnt, &h), "err ESTALE", "the forger's recipe must work on the main mount: {}", p.display());
        for x in [&site, &alice] {
            assert_eq!(open(x, &h), "err ESTALE", "{} reached {} through a forged handle", x.display(), p.display());
        }
    }
    // Inside: a project file through the project's export, a home file through the home's.
    assert_eq!(open(&site, &forged(&f.b("site/mine"))), "ok inside");
    f.sh_ok(1001, 1001, "echo notes > alice/notes && ln -s ../bob/diary alice/up && ln -s /top alice/abs");
    assert_eq!(open(&alice, &forged(&f.b("alice/notes"))), "ok notes");
    // Symlinks resolve where the export is mounted (or on the NFS client), never into the mount.
    for link in ["up", "abs"] {
        let out = f.sh_as(1001, 1001, &format!("cat {}/{link}", alice.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("BOB") && !text.contains("ROOTFILE"), "{link} led out of the tree: {text}");
    }
    // `..` of the export's top is outside the connection: the kernel walks to the exports dir.
    let up = f.sh_ok(1001, 1001, &format!("ls -a {}/..", alice.display()));
    assert!(!up.contains("bob") && !up.contains("top"), "`..` of the export showed the mount root: {up}");
    assert_exact(&f.state, f.backing(), "after forged handles");
}

/// The leaf of uid's home export: the user's name if the system knows one, else the uid.
fn user_leaf(uid: u32) -> String {
    let out = Command::new("getent").args(["passwd", &uid.to_string()]).output().unwrap();
    match out.status.success() {
        true => String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or("").to_string(),
        false => uid.to_string(),
    }
}
