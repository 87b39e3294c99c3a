//! A tenant cannot take a file out of its project's limit with a hard link and a rename
//! (issue #14 item 8).
//!
//! One inode has one project. Renaming one name of a file that has others into another
//! project would re-tag the inode while its other names stay in the old tree: appending
//! through those would then be charged to the new project, and the old project's limit no
//! longer binds. So such a rename is EXDEV (as a link into another project is), in each form
//! (plain, over an existing target, RENAME_EXCHANGE either way); `mv` then copies.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run_ok};

const MIB: u64 = 1 << 20;

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)` as `uid`, from the mount root: the errno
/// (0 on success).
fn rename_as(f: &Fixture, uid: u32, from: &str, to: &str, flags: u32) -> i32 {
    // 316: renameat2 on x86_64.
    let script = format!(
        "perl -e 'my $r = syscall(316, -100, $ARGV[0], -100, $ARGV[1], $ARGV[2] + 0); print $r == 0 ? 0 : $! + 0' {from} {to} {flags}"
    );
    let out = f.sh_ok(uid, uid, &script);
    out.trim().parse().unwrap_or_else(|e| panic!("renameat2 printed {out:?}: {e}"))
}

fn tag_project(f: &Fixture, rel: &str) -> u32 {
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(f.b(rel), "trusted.quotafs", &mut buf[..]).unwrap();
    assert_eq!(n, 13, "tag of {rel}");
    u32::from_le_bytes(buf[1..5].try_into().unwrap())
}

fn project_bytes(f: &Fixture, id: u32) -> u64 {
    report(&f.state).get(&("project".to_string(), id)).map_or(0, |u| u.0)
}

#[test]
fn a_second_name_cannot_carry_a_file_out_of_its_project() {
    let f = Fixture::new("project-links");
    let st = f.state.to_str().unwrap().to_string();
    f.home("p", 1000, 1000);
    f.home("free", 1000, 1000);
    run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m("p")).args(["--id", "10"]));
    run_ok(Command::new(BIN).args(["--state-dir", &st, "quota", "set", "--project", "10", "--bytes-hard", "10M"]));
    f.sh_ok(1000, 1000, "head -c 1000000 /dev/zero > p/f && ln p/f p/f2 && mkdir p/d && touch free/t");
    f.sh_ok(1000, 1000, "head -c 100000 /dev/zero > p/g && ln p/g p/g2");

    // Every way of moving one name of a linked file into another project is EXDEV.
    let exchange = libc::RENAME_EXCHANGE;
    assert_eq!(rename_as(&f, 1000, "p/f2", "free/f2", 0), libc::EXDEV, "rename");
    assert_eq!(rename_as(&f, 1000, "p/f2", "free/t", 0), libc::EXDEV, "rename over a file");
    assert_eq!(rename_as(&f, 1000, "p/f2", "free/t", exchange), libc::EXDEV, "exchange, linked file as source");
    assert_eq!(rename_as(&f, 1000, "free/t", "p/g2", exchange), libc::EXDEV, "exchange, linked file as target");
    // A directory into another project: EXDEV too.
    assert_eq!(rename_as(&f, 1000, "p/d", "free/d", 0), libc::EXDEV, "directory");
    assert_eq!(tag_project(&f, "p/f"), 10);
    assert_eq!(tag_project(&f, "p/g"), 10);
    assert_exact(&f.state, f.backing(), "after the refused renames");

    // `mv` copies instead: the copy is project 0's, the linked inode stays in project 10.
    f.sh_ok(1000, 1000, "mv p/f2 free/ && mv p/g2 free/");
    assert_eq!(tag_project(&f, "p/f"), 10);
    assert_eq!(tag_project(&f, "free/f2"), 0);
    assert!(
        std::fs::metadata(f.b("p/f")).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap()
            != std::fs::metadata(f.b("free/f2")).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap()
    );

    // The project's limit still binds writes through the name left in it.
    let out = f.sh_as(1000, 1000, "head -c 20000000 /dev/zero >> p/f");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"),
        "appending 20 MB in a 10 MiB project: {out:?}"
    );
    let size = std::fs::metadata(f.b("p/f")).unwrap().len();
    assert!(size <= 10 * MIB, "p/f holds {size} bytes in a 10 MiB project");
    assert!(project_bytes(&f, 10) <= 10 * MIB + 64 * 1024, "project 10 uses {}", project_bytes(&f, 10));

    // A file with one name still moves, usage and all.
    f.sh_ok(1000, 1000, "rm p/f && head -c 300000 /dev/zero > p/single");
    assert_eq!(rename_as(&f, 1000, "p/single", "free/single", 0), 0);
    assert_eq!(tag_project(&f, "free/single"), 0);
    assert_exact(&f.state, f.backing(), "after the moves");
}
