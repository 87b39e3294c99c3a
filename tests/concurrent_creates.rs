//! Many tenants creating, renaming and removing in one directory at once: every file lands,
//! none is lost or duplicated, inode numbers stay unique, and the daemon stays consistent.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use common::Fixture;

#[test]
fn concurrent_creates_in_one_directory() {
    let f = Fixture::new("concurrent");
    f.root("mkdir shared && chmod 1777 shared");
    let writers: Vec<_> = (0..8u32)
        .map(|w| {
            let uid = 1000 + w % 4;
            let script = format!(
                "i=0; while [ $i -lt 250 ]; do echo {w}-$i > shared/w{w}-$i; i=$((i+1)); done; \
                 i=0; while [ $i -lt 50 ]; do mv shared/w{w}-$i shared/r{w}-$i; rm shared/w{w}-$((i+200)); i=$((i+1)); done"
            );
            let mnt = f.mnt.clone();
            std::thread::spawn(move || {
                let out = std::process::Command::new("setpriv")
                    .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "sh".into(), "-c".into(), script])
                    .current_dir(mnt)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "writer {w}: {}", String::from_utf8_lossy(&out.stderr));
            })
        })
        .collect();
    for t in writers {
        t.join().unwrap();
    }
    let mut names = HashSet::new();
    let mut inos = HashSet::new();
    for e in std::fs::read_dir(f.m("shared")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let md = std::fs::metadata(e.path()).unwrap();
        assert!(inos.insert(md.ino()), "inode number {} listed twice", md.ino());
        // Content matches the name it was written under.
        let content = std::fs::read_to_string(e.path()).unwrap();
        assert_eq!(content.trim(), &name[1..], "{name}");
        let w: u32 = name[1..].split('-').next().unwrap().parse().unwrap();
        assert_eq!(md.uid(), 1000 + w % 4, "{name} owned by its writer");
        names.insert(name);
    }
    // Each writer: 250 created, 50 renamed, 50 removed -> 200 left (150 w*, 50 r*).
    assert_eq!(names.len(), 8 * 200);
    for w in 0..8 {
        assert!(names.contains(&format!("r{w}-49")) && names.contains(&format!("w{w}-199")));
        assert!(!names.contains(&format!("w{w}-0")) && !names.contains(&format!("w{w}-249")));
    }
    // The backing agrees.
    assert_eq!(std::fs::read_dir(f.b("shared")).unwrap().count(), 8 * 200);
}
