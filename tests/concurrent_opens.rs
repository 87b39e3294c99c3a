//! Concurrent opens of one file: every pair and triple of open kinds (read-only, write-only,
//! read-write, append, truncate, O_DIRECT, shared and private mmap), in every order, held by
//! processes of different uids (and root, as nfs-ganesha opens for its clients), answer and
//! read exactly what the same sequence answers on ext4 itself; no open fails for how another
//! process opened the file. Then a `tail -f` reader and a mapped reader see a later writer.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::Fixture;
use common::holder::Holder;

const KINDS: [&str; 8] = ["rdonly", "wronly", "rdwr", "append", "trunc", "direct", "mmap_shared", "mmap_private"];

fn writes(kind: &str) -> bool {
    matches!(kind, "wronly" | "rdwr" | "append" | "trunc" | "mmap_shared")
}

fn reads(kind: &str) -> bool {
    !matches!(kind, "wronly" | "append" | "trunc")
}

fn fresh(path: &Path) {
    let data: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// Runs one sequence of opens (open kind i in holder i), then a write through each writer, a
/// read through each reader, an fsync/msync of each writer and a read again; the transcript.
fn sequence(holders: &mut [Holder], path: &Path, kinds: &[&str]) -> Vec<String> {
    fresh(path);
    let mut t = Vec::new();
    let mut open = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let r = holders[i].cmd(&format!("open {i} {} {k}", path.display()));
        if r == "ok" {
            open.push(i);
        }
        t.push(format!("open #{i} {k} as uid {}: {r}", holders[i].uid));
    }
    for &i in &open {
        if writes(kinds[i]) {
            let r = holders[i].cmd(&format!("write {i} {} w{i}{}", 100 + 64 * i, kinds[i]));
            t.push(format!("write #{i}: {r}"));
        }
    }
    for pass in ["before sync", "after sync"] {
        for &i in &open {
            if reads(kinds[i]) {
                t.push(format!("read #{i} {pass}: {}", holders[i].cmd(&format!("read {i}"))));
            }
        }
        if pass == "before sync" {
            for &i in &open {
                if writes(kinds[i]) {
                    t.push(format!("sync #{i}: {}", holders[i].cmd(&format!("sync {i}"))));
                }
            }
        }
    }
    for &i in &open {
        t.push(format!("close #{i}: {}", holders[i].cmd(&format!("close {i}"))));
    }
    t.push(format!("final bytes: {}", sha(&std::fs::read(path).unwrap())));
    t
}

fn sha(data: &[u8]) -> String {
    // FNV-1a is enough to tell contents apart in a transcript.
    let h = data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("{} bytes {h:016x}", data.len())
}

#[test]
fn every_pair_and_triple_of_opens_behaves_as_on_ext4() {
    let f = Fixture::serving("opens", Some("served"), &[]);
    let raw = f.scratch.backing.join("raw");
    for d in [raw.clone(), f.m("shared")] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // Two tenants, and root (as nfs-ganesha opens on behalf of its clients).
    let mut holders = vec![Holder::spawn(1000, 1000), Holder::spawn(1001, 1001), Holder::spawn(0, 0)];
    let mut combos: Vec<Vec<&str>> = Vec::new();
    for a in KINDS {
        for b in KINDS {
            combos.push(vec![a, b]);
            for c in KINDS {
                combos.push(vec![a, b, c]);
            }
        }
    }
    let mut diffs = Vec::new();
    let mut eio = 0;
    for kinds in &combos {
        let want = sequence(&mut holders, &raw.join("f"), kinds);
        let got = sequence(&mut holders, &f.m("shared/f"), kinds);
        eio += got.iter().filter(|l| l.contains("EIO")).count();
        if want != got {
            diffs.push(format!("{kinds:?}\n  ext4:    {want:?}\n  quotafs: {got:?}"));
        }
    }
    assert_eq!(eio, 0, "EIO answered through the mount");
    assert!(
        diffs.is_empty(),
        "{} of {} sequences differ from ext4, e.g.:\n{}",
        diffs.len(),
        combos.len(),
        diffs.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn held_readers_see_later_writes_like_tail_f() {
    let f = Fixture::new("tailf");
    let dir = f.m("logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = dir.join("app.log");
    std::fs::write(&log, b"start\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = log.display();
    let mut reader = Holder::spawn(1001, 1001);
    let mut mapper = Holder::spawn(1002, 1002);
    let mut writer = Holder::spawn(1000, 1000);
    // A reader, and a shared read-only style mapping, are opened before the writer.
    assert_eq!(reader.cmd(&format!("open r {p} rdonly")), "ok");
    assert_eq!(reader.cmd("readnext r"), "next start|");
    assert_eq!(reader.cmd("readnext r"), "next -", "at EOF");
    assert_eq!(mapper.cmd(&format!("open m {p} mmap_private")), "ok");
    assert_eq!(writer.cmd(&format!("open w {p} append")), "ok", "a writer after held readers opens");
    for line in ["one", "two", "three"] {
        assert_eq!(writer.cmd(&format!("write w 0 {line}")), format!("ok {}", line.len()));
        assert_eq!(reader.cmd("readnext r"), format!("next {line}"), "tail -f sees the append");
    }
    // The mapped reader sees the written bytes (within the file's size) once written.
    let expect = b"start\nonetwothree";
    let want = {
        let r = std::fs::read(&log).unwrap();
        assert_eq!(r, expect);
        format!("data {} ", expect.len())
    };
    assert!(mapper.cmd("read m").starts_with(&want), "mapped reader sees the appended bytes");
    // An overwrite through a second writer is seen by both held readers.
    let mut rw = Holder::spawn(1003, 1003);
    assert_eq!(rw.cmd(&format!("open x {p} rdwr")), "ok");
    assert_eq!(rw.cmd("write x 0 START"), "ok 5");
    let whole = rw.cmd("read x");
    assert_eq!(mapper.cmd("read m"), whole, "mapping sees the overwrite");
    assert_eq!(reader.cmd("read r"), whole, "held reader sees the overwrite");
}
