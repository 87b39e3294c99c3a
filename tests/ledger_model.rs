//! Model-based test of the ledger: random sequences of every usage-changing operation (write,
//! truncate, fallocate, punch hole, unlink, link, rename within and across projects, mkdir,
//! rmdir, symlink, chown, xattrs, project assign, tenants creating their own files), and after
//! each step `quotafs report` must equal an independent recount of the backing.
//! Replay a failure with QUOTAFS_SEED=<seed printed below>.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::{BIN, Fixture, Rng, assert_exact, run_ok, seed};
use rustix::fs::{FallocateFlags, fallocate};

struct World {
    files: Vec<String>,
    dirs: Vec<String>,
    n: u64,
}

impl World {
    fn pick<'a>(v: &'a [String], rng: &mut Rng) -> Option<&'a String> {
        (!v.is_empty()).then(|| &v[rng.below(v.len() as u64) as usize])
    }
}

#[test]
fn ledger_equals_recount_after_every_step() {
    let seed = seed();
    println!("QUOTAFS_SEED={seed}");
    let mut rng = Rng(seed);
    let f = Fixture::with_args("model", &["--checkpoint-interval", "0.5"]);
    let st = f.state.to_str().unwrap().to_string();
    let mut w = World { files: Vec::new(), dirs: Vec::new(), n: 0 };
    for (i, uid) in (1000..1004).enumerate() {
        let h = format!("h{i}");
        f.home(&h, uid, uid);
        w.dirs.push(h);
    }
    w.dirs.push("shared".into());
    std::fs::create_dir(f.m("shared")).unwrap();
    for (dir, id) in [("h0", "10"), ("h1", "11"), ("shared", "12")] {
        run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m(dir)).args(["--id", id]));
    }
    assert_exact(&f.state, f.backing(), "after setup");

    for step in 0..150 {
        let op = rng.below(15);
        let desc = apply(&f, &mut w, &mut rng, op, &st);
        assert_exact(&f.state, f.backing(), &format!("step {step} ({desc}), seed {seed}"));
    }
}

fn apply(f: &Fixture, w: &mut World, rng: &mut Rng, op: u64, st: &str) -> String {
    w.n += 1;
    let n = w.n;
    match op {
        0 | 1 => {
            // Write (often sparse) into a new or existing file.
            let path = match World::pick(&w.files, rng) {
                Some(p) if op == 1 => p.clone(),
                _ => {
                    let d = World::pick(&w.dirs, rng).unwrap().clone();
                    let p = format!("{d}/f{n}");
                    w.files.push(p.clone());
                    p
                }
            };
            let len = rng.below(200_000) as usize + 1;
            let off = rng.below(4 << 20);
            if let Ok(file) = OpenOptions::new().write(true).create(true).truncate(false).open(f.m(&path)) {
                let _ = file.write_all_at(&vec![0x5a; len], off);
            }
            format!("write {len} at {off} to {path}")
        }
        2 => {
            let Some(p) = World::pick(&w.files, rng).cloned() else { return "noop".into() };
            let size = rng.below(3 << 20);
            let _ = OpenOptions::new().write(true).open(f.m(&p)).and_then(|file| file.set_len(size));
            format!("truncate {p} to {size}")
        }
        3 | 4 => {
            let Some(p) = World::pick(&w.files, rng).cloned() else { return "noop".into() };
            let off = rng.below(2 << 20);
            let len = rng.below(1 << 20) + 1;
            let flags = if op == 3 {
                if rng.below(2) == 0 { FallocateFlags::empty() } else { FallocateFlags::KEEP_SIZE }
            } else {
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE
            };
            if let Ok(file) = OpenOptions::new().write(true).open(f.m(&p)) {
                let _ = fallocate(&file, flags, off, len);
            }
            format!("fallocate {flags:?} {off}+{len} on {p}")
        }
        5 => {
            let Some(i) = (!w.files.is_empty()).then(|| rng.below(w.files.len() as u64) as usize) else {
                return "noop".into();
            };
            let p = w.files.remove(i);
            let _ = std::fs::remove_file(f.m(&p));
            format!("unlink {p}")
        }
        6 => {
            let (Some(p), Some(d)) = (World::pick(&w.files, rng).cloned(), World::pick(&w.dirs, rng).cloned()) else {
                return "noop".into();
            };
            let q = format!("{d}/l{n}");
            if std::fs::hard_link(f.m(&p), f.m(&q)).is_ok() {
                w.files.push(q.clone());
            }
            format!("link {p} {q}")
        }
        7 => {
            let (Some(i), Some(d)) = (
                (!w.files.is_empty()).then(|| rng.below(w.files.len() as u64) as usize),
                World::pick(&w.dirs, rng).cloned(),
            ) else {
                return "noop".into();
            };
            let q = format!("{d}/r{n}");
            let p = w.files[i].clone();
            if std::fs::rename(f.m(&p), f.m(&q)).is_ok() {
                w.files[i] = q.clone();
            }
            format!("rename {p} {q}")
        }
        8 => {
            let d = World::pick(&w.dirs, rng).unwrap().clone();
            let q = format!("{d}/d{n}");
            if std::fs::create_dir(f.m(&q)).is_ok() {
                w.dirs.push(q.clone());
            }
            format!("mkdir {q}")
        }
        9 => {
            // rmdir of an empty directory made by the model (never a home).
            let candidates: Vec<usize> = (0..w.dirs.len()).filter(|&i| w.dirs[i].contains("/d")).collect();
            let Some(&i) = candidates.get(rng.below(candidates.len().max(1) as u64) as usize) else {
                return "noop".into();
            };
            let d = w.dirs[i].clone();
            if std::fs::remove_dir(f.m(&d)).is_ok() {
                w.dirs.remove(i);
            }
            format!("rmdir {d}")
        }
        10 => {
            let d = World::pick(&w.dirs, rng).unwrap().clone();
            let target = "t".repeat(rng.below(120) as usize + 1);
            let q = format!("{d}/s{n}");
            let _ = std::os::unix::fs::symlink(target, f.m(&q));
            format!("symlink {q}")
        }
        11 => {
            let Some(p) = World::pick(&w.files, rng).cloned() else { return "noop".into() };
            let uid = 1000 + rng.below(4) as u32;
            let _ = std::os::unix::fs::lchown(f.m(&p), Some(uid), Some(uid));
            format!("chown {p} {uid}")
        }
        12 => {
            let Some(p) = World::pick(&w.files, rng).cloned() else { return "noop".into() };
            let big = vec![b'x'; rng.below(3000) as usize + 1];
            let _ = rustix::fs::setxattr(f.m(&p), "user.model", &big, rustix::fs::XattrFlags::empty());
            format!("setxattr {} bytes on {p}", big.len())
        }
        13 => {
            let d = World::pick(&w.dirs, rng).unwrap().clone();
            let id = [10, 11, 12, 13][rng.below(4) as usize].to_string();
            let _ = Command::new(BIN)
                .args(["--state-dir", st, "project", "assign"])
                .arg(f.m(&d))
                // Trees nest and move between projects here, as the walk must handle.
                .args(["--id", &id, "--absorb"])
                .output();
            format!("project assign {d} {id}")
        }
        _ => {
            // A tenant works in its own home with its own credentials.
            let i = rng.below(4);
            let uid = 1000 + i as u32;
            let name = format!("h{i}/t{n}");
            let out =
                f.sh_as(uid, uid, &format!("head -c {} /dev/zero > {name} && mkdir -p h{i}/td{n}", rng.below(50_000)));
            if out.status.success() {
                w.files.push(name.clone());
                w.dirs.push(format!("h{i}/td{n}"));
            }
            format!("tenant {uid} creates {name}")
        }
    }
}
