//! Inodes with generation 0 (made by `mke2fs -d` or `debugfs`, as image builders do): a file
//! handle with generation 0 makes ext4 skip its generation check, so a record of such a file,
//! once the file is deleted and its number reused, used to reopen the *new* file. Found by the
//! power-cut rig: a deleted old file's record and the new file's own record (next epoch, a
//! crash inside the checkpoint between them) charged the new file twice.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, ino, run_ok};

#[test]
fn a_deleted_generation_zero_file_is_not_found_in_the_file_that_took_its_number() {
    // Whether ext4 hands a deleted number to the next file depends on when the kernel lets go
    // of the deleted inode (about one run in four it does not within the wait): a fresh
    // attempt then, until one exercises the reuse.
    for attempt in 0..6 {
        if attempt_reuse(attempt) {
            return;
        }
    }
    panic!("ext4 reused none of the deleted files' numbers in 6 attempts; the scenario was not exercised");
}

/// One attempt; false if ext4 gave none of the deleted numbers to a new file.
fn attempt_reuse(attempt: u32) -> bool {
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args(&format!("gen0-{attempt}"), &args);
    f.root("mkdir d && for i in 1 2 3 4 5 6 7 8; do head -c 3000 /dev/urandom > d/x$i; done");
    // Generation 0, as mke2fs -d leaves it, set on the unmounted image.
    f.unmount();
    let img = f.scratch.dir.join("backing.img");
    run_ok(Command::new("umount").arg(f.backing()));
    for i in 1..=8 {
        run_ok(
            Command::new("debugfs").args(["-w", "-R"]).arg(format!("set_inode_field /d/x{i} generation 0")).arg(&img),
        );
    }
    run_ok(Command::new("mount").arg("-o").arg("loop").arg(&img).arg(f.backing()));
    let gen0 = run_ok(Command::new("lsattr").arg("-v").arg(f.b("d/x1")));
    assert!(gen0.trim_start().starts_with("0 "), "the file has generation 0: {gen0}");
    f.start_with_env(&args, &[("QUOTAFS_FAILPOINT_CHECKPOINT_PAUSE_MS", "4000")]);

    // Delete the old files (each recorded with its generation-0 handle) and make new ones
    // until one takes a deleted file's number.
    let old: Vec<u64> = (1..=8).map(|i| ino(&f.m(&format!("d/x{i}")))).collect();
    f.root("rm d/x*");
    // The kernel forgets the deleted nodes, and the daemon their descriptors: ext4 frees them.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut reused = None;
    for k in 0..200 {
        let p = f.m(&format!("d/y{k}"));
        std::fs::write(&p, vec![7u8; 5000]).unwrap();
        if old.contains(&ino(&p)) {
            reused = Some(k);
            break;
        }
        // A deleted inode is freed once nothing holds it: the daemon lets go of its descriptor
        // when the charge goes, but an unused dentry of it (an O_PATH descriptor opened by
        // handle leaves one) keeps it until the dentry cache is pruned.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    }
    let Some(k) = reused else {
        let held = run_ok(
            Command::new("sh").arg("-c").arg(format!("ls -l /proc/{}/fd | grep -c deleted || true", f.daemon_pid())),
        );
        eprintln!(
            "attempt {attempt}: no deleted number reused {old:?}; deleted files the daemon holds: {}",
            held.trim()
        );
        return false;
    };
    // A checkpoint rotates to the next epoch and is held before its commit; the new file's
    // first change there records it again; the daemon dies before the commit.
    let mut ck = Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    f.root(&format!("head -c 9000 /dev/urandom >> d/y{k}"));
    f.kill9();
    let _ = ck.wait();
    f.start(&args);
    assert_exact(&f.state, f.backing(), "after a crash with a generation-0 file's number reused");
    true
}
