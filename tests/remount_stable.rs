//! Inode numbers, generations and data are the same after an unmount and a remount: node ids
//! come from the backing inode, not from lookup order.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use common::Fixture;

fn inventory(f: &Fixture) -> BTreeMap<String, (u64, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for rel in ["a", "dir", "dir/b", "dir/sub/c", "link"] {
        let p = f.m(rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let data = if md.is_file() { std::fs::read(&p).unwrap() } else { Vec::new() };
        out.insert(rel.to_string(), (md.ino(), md.nlink(), data));
    }
    out
}

#[test]
fn inode_numbers_and_data_survive_remount() {
    let mut f = Fixture::new("remount");
    std::fs::write(f.m("a"), b"alpha").unwrap();
    std::fs::create_dir_all(f.m("dir/sub")).unwrap();
    std::fs::write(f.m("dir/b"), vec![7u8; 100_000]).unwrap();
    std::fs::write(f.m("dir/sub/c"), b"gamma").unwrap();
    std::os::unix::fs::symlink("a", f.m("link")).unwrap();
    std::fs::hard_link(f.m("a"), f.m("dir/a-again")).unwrap();
    let before = inventory(&f);
    // Node ids are the backing inode numbers.
    assert_eq!(before["dir/b"].0, std::fs::metadata(f.b("dir/b")).unwrap().ino());
    assert!(f.unmount().success());
    f.start(&[]);
    // Look the names up in another order this time.
    let _ = std::fs::metadata(f.m("dir/sub/c"));
    let after = inventory(&f);
    assert_eq!(before, after);
}
