//! Tenants act with their own credentials: ownership of what they create, setgid directories,
//! supplementary groups, sticky directories, setuid/setgid clearing on write, chown and chmod
//! limits — all as ext4 itself would decide.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::Fixture;

fn meta(f: &Fixture, rel: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(f.m(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn files_belong_to_their_creator() {
    let f = Fixture::new("owner");
    f.home("alice", 1000, 1000);
    f.sh_ok(1000, 1000, "cd alice && umask 022 && echo x > f && mkdir d && ln -s f s && mkfifo p && touch d/inner");
    for rel in ["alice/f", "alice/d", "alice/s", "alice/p", "alice/d/inner"] {
        let md = meta(&f, rel);
        assert_eq!((md.uid(), md.gid()), (1000, 1000), "{rel} owned by its creator");
        let on_backing = std::fs::symlink_metadata(f.b(rel)).unwrap();
        assert_eq!((on_backing.uid(), on_backing.gid()), (1000, 1000), "{rel} on the backing");
    }
    // The caller's umask applies.
    assert_eq!(meta(&f, "alice/f").mode() & 0o777, 0o644);
    assert_eq!(meta(&f, "alice/d").mode() & 0o777, 0o755);
    f.sh_ok(1000, 1000, "cd alice && umask 077 && echo y > private");
    assert_eq!(meta(&f, "alice/private").mode() & 0o777, 0o600);

    // Another tenant cannot write into alice's 0755 home nor read her 0600 file.
    assert!(!f.sh_as(1001, 1001, "echo z > alice/intruder").status.success());
    assert!(!f.sh_as(1001, 1001, "cat alice/private").status.success());
    assert!(!f.b("alice/intruder").exists());

    // A tenant cannot give a file away or take one; root can.
    assert!(!f.sh_as(1000, 1000, "chown 1001 alice/f").status.success());
    assert!(!f.sh_as(1001, 1001, "chown 1001 alice/f").status.success());
    assert!(!f.sh_as(1001, 1001, "chmod 777 alice/f").status.success(), "chmod by a non-owner");
    f.sh_ok(1000, 1000, "chmod 600 alice/f");
    assert_eq!(meta(&f, "alice/f").mode() & 0o777, 0o600);
    f.root("chown 1002:1002 alice/f");
    assert_eq!(meta(&f, "alice/f").uid(), 1002);
    // utimens: the owner may set times; UTIME_NOW also by anyone with write access.
    f.sh_ok(1000, 1000, "touch -d '2001-02-03 04:05:06 UTC' alice/d");
    assert_eq!(meta(&f, "alice/d").mtime(), 981173106);
}

#[test]
fn groups_setgid_and_sticky() {
    let f = Fixture::new("groups");
    // A project directory writable by group 2000 only, setgid.
    f.root("mkdir shared && chown 0:2000 shared && chmod 2770 shared");
    // A member through a supplementary group can create; the file takes the directory's group.
    f.sh_groups(1000, 1000, &[2000], "echo hi > shared/by-member && mkdir shared/sub");
    let md = meta(&f, "shared/by-member");
    assert_eq!((md.uid(), md.gid()), (1000, 2000), "setgid directory gives its group");
    let sub = meta(&f, "shared/sub");
    assert_eq!(sub.gid(), 2000);
    assert!(sub.mode() & 0o2000 != 0, "subdirectories inherit setgid");
    // A non-member cannot.
    let out = f.sh_as(1001, 1001, "echo hi > shared/by-stranger");
    assert!(!out.status.success());

    // Sticky /tmp-like directory: others cannot delete or rename your files.
    f.root("mkdir tmp && chmod 1777 tmp");
    f.sh_ok(1000, 1000, "echo mine > tmp/alice-file");
    assert!(!f.sh_as(1001, 1001, "rm -f tmp/alice-file").status.success());
    assert!(!f.sh_as(1001, 1001, "mv tmp/alice-file tmp/stolen").status.success());
    assert!(f.m("tmp/alice-file").exists());
    f.sh_ok(1000, 1000, "rm tmp/alice-file");
    assert!(!f.b("tmp/alice-file").exists());
}

#[test]
fn writes_by_tenants_clear_setuid_and_setgid() {
    let f = Fixture::new("suid");
    f.root("mkdir w && chmod 777 w");
    f.sh_ok(1000, 1000, "echo '#!/bin/sh' > w/prog && chmod 6775 w/prog");
    assert_eq!(meta(&f, "w/prog").mode() & 0o7777, 0o6775);
    // A write by a non-root caller clears both bits (ext4 does it because the write runs with
    // the caller's credentials).
    f.sh_ok(1000, 1000, "echo 'echo hi' >> w/prog");
    assert_eq!(meta(&f, "w/prog").mode() & 0o7777, 0o0775, "setuid/setgid cleared by the write");
    // Truncation by a non-root caller clears them too.
    f.sh_ok(1000, 1000, "chmod 4755 w/prog && truncate -s 0 w/prog");
    assert_eq!(meta(&f, "w/prog").mode() & 0o7777, 0o0755);
    // Root's writes keep them (CAP_FSETID), as on ext4.
    f.root("chmod 4755 w/prog && echo more >> w/prog");
    assert_eq!(meta(&f, "w/prog").permissions().mode() & 0o7777, 0o4755);
}
