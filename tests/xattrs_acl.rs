//! Extended attributes: user.* round trip; the private trusted.* namespace is invisible and
//! untouchable through the mount; POSIX ACLs grant and deny as on ext4, default ACLs inherit.

mod common;

use common::{Fixture, errno_of};
use rustix::fs::{XattrFlags, getxattr, listxattr, removexattr, setxattr};

fn list(p: &std::path::Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = listxattr(p, &mut buf[..]).unwrap();
    buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

#[test]
fn user_xattrs_and_private_namespace() {
    let f = Fixture::new("xattr");
    std::fs::write(f.m("file"), b"x").unwrap();
    std::fs::create_dir(f.m("dir")).unwrap();
    for p in [f.m("file"), f.m("dir")] {
        setxattr(&p, "user.colour", b"blue", XattrFlags::empty()).unwrap();
        let mut buf = [0u8; 64];
        let n = getxattr(&p, "user.colour", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"blue");
        assert!(list(&p).contains(&"user.colour".to_string()));
        assert_eq!(errno_of(setxattr(&p, "user.colour", b"red", XattrFlags::CREATE).map_err(Into::into)), libc::EEXIST);
        removexattr(&p, "user.colour").unwrap();
        assert_eq!(errno_of(getxattr(&p, "user.colour", &mut buf[..]).map_err(Into::into)), libc::ENODATA);
    }
    // Too small a buffer is ERANGE, as on ext4.
    setxattr(f.m("file"), "user.long", &[b'v'; 100], XattrFlags::empty()).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(errno_of(getxattr(f.m("file"), "user.long", &mut small[..]).map_err(Into::into)), libc::ERANGE);

    // trusted.* set directly on the backing (where quotafs keeps project ids) is invisible...
    setxattr(f.b("file"), "trusted.quotafs.project", b"42", XattrFlags::empty()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut buf = [0u8; 64];
    assert_eq!(
        errno_of(getxattr(f.m("file"), "trusted.quotafs.project", &mut buf[..]).map_err(Into::into)),
        libc::ENODATA
    );
    assert!(!list(&f.m("file")).iter().any(|n| n.starts_with("trusted.")), "{:?}", list(&f.m("file")));
    // ...and untouchable, by root too.
    assert_eq!(
        errno_of(setxattr(f.m("file"), "trusted.quotafs.project", b"7", XattrFlags::empty()).map_err(Into::into)),
        libc::EPERM
    );
    assert_eq!(errno_of(removexattr(f.m("file"), "trusted.quotafs.project").map_err(Into::into)), libc::EPERM);
    let n = getxattr(f.b("file"), "trusted.quotafs.project", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"42", "the backing value is unchanged");

    // Tenants: user xattrs need write permission on the file.
    f.home("u", 1000, 1000);
    f.sh_ok(1000, 1000, "echo x > u/f");
    f.sh_ok(1000, 1000, "setfattr -n user.k -v v u/f");
    let denied = f.sh_as(1001, 1001, "setfattr -n user.k -v w u/f");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"), "{denied:?}");
    assert_eq!(f.sh_ok(1001, 1001, "getfattr --only-values -n user.k u/f"), "v", "still the owner's value");
}

#[test]
fn posix_acls() {
    let f = Fixture::new("acl");
    f.home("alice", 1000, 1000);
    f.sh_ok(1000, 1000, "cd alice && umask 077 && echo private > f && mkdir inherit");
    assert!(!f.sh_as(1001, 1001, "cat alice/f").status.success(), "0600 file, no ACL");
    // An ACL entry grants bob (1001) read access to the file.
    f.sh_ok(1000, 1000, "chmod 711 alice && setfacl -m u:1001:r alice/f");
    assert_eq!(f.sh_ok(1001, 1001, "cat alice/f").trim(), "private");
    assert!(f.sh_ok(0, 0, "getfacl -p alice/f").contains("user:1001:r--"));
    assert!(!f.sh_as(1002, 1002, "cat alice/f").status.success(), "others still denied");
    // A default ACL on a directory is inherited by new files, over the creator's umask.
    f.sh_ok(
        1000,
        1000,
        "setfacl -m u:1001:rx -d -m u:1001:rw alice/inherit && umask 077 && echo new > alice/inherit/g",
    );
    assert!(f.sh_ok(0, 0, "getfacl -p alice/inherit/g").contains("user:1001:rw-"));
    f.sh_ok(1001, 1001, "echo appended >> alice/inherit/g");
    // Removing the ACL revokes.
    f.sh_ok(1000, 1000, "setfacl -b alice/f");
    assert!(!f.sh_as(1001, 1001, "cat alice/f").status.success());
}
