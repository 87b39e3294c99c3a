//! Timestamps (UTIME_NOW / UTIME_OMIT), statfs, fsync of files and directories, and the
//! refusal of ioctls (a tenant must not reach FS_IOC_FSSETXATTR and the like).

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use common::Fixture;

#[test]
fn timestamps_statfs_fsync_and_ioctls() {
    let f = Fixture::new("attrs");
    f.root("mkdir w && chmod 777 w");
    f.sh_ok(1000, 1000, "echo x > w/f && chmod 666 w/f && touch -d '2001-01-01 00:00:00 UTC' w/f");
    let before = std::fs::metadata(f.m("w/f")).unwrap();
    assert_eq!(before.mtime(), 978307200);
    assert_eq!(before.atime(), 978307200);

    // touch -m: mtime to now, atime omitted (UTIME_OMIT keeps it).
    f.sh_ok(1000, 1000, "touch -m w/f");
    let md = std::fs::metadata(f.m("w/f")).unwrap();
    assert_eq!(md.atime(), 978307200, "UTIME_OMIT leaves atime");
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((md.mtime() - now).abs() < 60, "UTIME_NOW set mtime to now");
    // touch -a with an explicit time: mtime omitted.
    f.sh_ok(1000, 1000, "touch -a -d '2002-02-02 00:00:00 UTC' w/f");
    let md2 = std::fs::metadata(f.m("w/f")).unwrap();
    assert_eq!(md2.atime(), 1012608000);
    assert_eq!(md2.mtime(), md.mtime());
    // UTIME_NOW by a non-owner with write access is allowed; a specific time is not.
    f.sh_ok(1001, 1001, "touch w/f");
    assert!(!f.sh_as(1001, 1001, "touch -d '2003-03-03 00:00:00 UTC' w/f").status.success());

    // statfs through the mount reports the backing ext4's figures.
    let mine = rustix::fs::statvfs(&f.mnt).unwrap();
    let backing = rustix::fs::statvfs(f.backing()).unwrap();
    assert_eq!(mine.f_blocks, backing.f_blocks);
    assert_eq!(mine.f_files, backing.f_files);
    assert_eq!(mine.f_bsize, backing.f_bsize);
    assert_eq!(mine.f_namemax, 255);
    assert!(mine.f_bfree.abs_diff(backing.f_bfree) < 64, "free blocks agree");

    // fsync and fdatasync of a file, fsync of a directory.
    let file = std::fs::OpenOptions::new().write(true).open(f.m("w/f")).unwrap();
    file.sync_all().unwrap();
    file.sync_data().unwrap();
    std::fs::File::open(f.m("w")).unwrap().sync_all().unwrap();

    // ioctls are refused: lsattr/chattr (FS_IOC_GETFLAGS/SETFLAGS) fail, the flags on the
    // backing do not change.
    let out = f.sh_as(0, 0, "chattr +i w/f");
    assert!(!out.status.success(), "chattr through the mount must fail");
    assert!(!f.sh_as(0, 0, "lsattr w/f").status.success());
    let flags = common::run_ok(std::process::Command::new("lsattr").arg(f.b("w/f")));
    assert!(!flags.split_whitespace().next().unwrap().contains('i'), "not immutable: {flags}");
    std::fs::write(f.m("w/f"), b"still writable").unwrap();
}
