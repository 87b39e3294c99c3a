//! Work on files made before the current epoch (most of a file server) waits for no fdatasync:
//! the record of an old inode's first change rides in the backing's own journal
//! (docs/design.md §16). Counted as `status --json` counts it, and exact after the work, after
//! kill -9 in the middle of it, and with a backing too full to take a record.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, run, run_ok};

fn status(f: &Fixture) -> serde_json::Value {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

fn fsyncs(f: &Fixture) -> u64 {
    status(f)["log_fsyncs_total"].as_u64().expect("log_fsyncs_total")
}

/// A tenant's tree of `dirs` × `files` small files, made and then made old by a checkpoint.
fn old_tree(f: &Fixture, dirs: u32, files: u32) {
    f.root("mkdir -p home/t && chown 1001:1001 home/t");
    f.sh_ok(
        1001,
        1001,
        &format!(
            "cd home/t && for d in $(seq {dirs}); do mkdir d$d; for i in $(seq {files}); do echo old$i > d$d/f$i; done; done"
        ),
    );
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
}

#[test]
fn old_tree_work_costs_no_fdatasync_per_file() {
    let args = ["--checkpoint-interval", "3600"];
    let f = Fixture::with_args("oldtree-fsyncs", &args);
    // The tree: 2,000 files in 20 directories, each appended to, chmod'ed and renamed,
    // then all deleted: 8,020 operations on inodes born before the epoch.
    old_tree(&f, 20, 100);
    let before = fsyncs(&f);
    f.sh_ok(
        1001,
        1001,
        "cd home/t && for d in d*; do for i in $(seq 100); do echo more >> $d/f$i; chmod 600 $d/f$i; mv $d/f$i $d/g$i; done; done",
    );
    f.sh_ok(1001, 1001, "rm -rf home/t/d*");
    let used = fsyncs(&f) - before;
    let s = status(&f);
    assert!(used <= 8020 / 40, "{used} log fdatasyncs for 8,020 operations on old files (status: {s})");
    assert!(
        s["journal_records"].as_u64().unwrap() >= 2000,
        "the first change of each old file is recorded in the backing's journal (status: {s})"
    );
    assert_exact(&f.state, f.backing(), "after the old tree's work");
    // The journal directory is the daemon's own: not served, not counted, not creatable.
    let listed = run_ok(Command::new("ls").arg("-a").arg(&f.mnt));
    assert!(!listed.contains(".quotafs-journal"), "hidden from listings: {listed}");
    assert!(std::fs::metadata(f.m(".quotafs-journal")).is_err(), "hidden from lookups");
    for name in [".quotafs-journal", ".quotafs-journal.new"] {
        let made = std::fs::create_dir(f.m(name));
        assert_eq!(common::errno_of(made), libc::EPERM, "{name} cannot be made at the root");
    }
    assert!(f.b(".quotafs-journal").is_dir(), "it is on the backing");
}

#[test]
fn kill9_in_the_middle_of_old_tree_work_recovers_exactly() {
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args("oldtree-kill9", &args);
    old_tree(&f, 4, 50);
    // Appends, truncates, a chown, renames over, hard links and deletes of old files, new
    // files beside them; then the daemon dies before any checkpoint.
    f.sh_ok(
        1001,
        1001,
        "cd home/t && for i in $(seq 50); do head -c 5000 /dev/zero >> d1/f$i; truncate -s 1 d2/f$i; done; \
         for i in $(seq 25); do mv d3/f$i d3/f$((i + 25)); ln d4/f$i d4/l$i; done; rm -rf d2; \
         for i in $(seq 26 50); do rm d4/f$i; done; mkdir d5 && echo new > d5/n && echo new > d1/n",
    );
    f.root("chown -R 1002 home/t/d1");
    f.kill9();
    f.start(&args);
    let s = status(&f);
    let r = &s["last_recovery"];
    assert!(r["journal_records"].as_u64().unwrap() >= 150, "recovery read the backing's records: {s}");
    assert_exact(&f.state, f.backing(), "after kill -9 during old-tree work");
    let left: Vec<_> = std::fs::read_dir(f.b(".quotafs-journal")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "only the current epoch's directory is left after a checkpoint: {left:?}");
}

#[test]
fn a_backing_too_full_for_records_still_deletes_old_files_exactly() {
    let args = ["--checkpoint-interval", "3600"];
    let f = Fixture::with_args("oldtree-full", &args);
    old_tree(&f, 2, 300);
    // Fill the backing (as root, the reserved blocks too). Twice, each time flushed: the first
    // fill's delayed allocation leaves ext4's free count uncertain until it is written back.
    // The journal directory then cannot grow past its block, so records go to the log, synced.
    for filler in ["filler", "filler2"] {
        let _ = run(Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", f.b(filler).display())).arg("bs=4k"));
        run_ok(Command::new("sync").arg("-f").arg(f.backing()));
    }
    // Appends first: they free nothing, so the journal directory soon needs a block it cannot
    // get. Then deletes, which must work on a full disk.
    f.sh_ok(1001, 1001, "cd home/t && for i in $(seq 300); do echo x >> d2/f$i; done && rm -rf d1");
    let s = status(&f);
    assert!(s["log_records"].as_u64().unwrap() > 0, "records fell back to the log on a full backing: {s}");
    std::fs::remove_file(f.b("filler")).unwrap();
    let _ = std::fs::remove_file(f.b("filler2"));
    assert_exact(&f.state, f.backing(), "after deleting old files on a full backing");
}

/// The files of the current epoch's journal directory on the backing.
fn epoch_entries(f: &Fixture) -> Vec<std::path::PathBuf> {
    let epochs: Vec<_> = std::fs::read_dir(f.b(".quotafs-journal")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(epochs.len(), 1, "one epoch directory: {epochs:?}");
    std::fs::read_dir(&epochs[0]).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn records_of_many_old_files_take_a_few_journal_inodes() {
    // Each record an inode of its own cost a create per old file and an unlink per old file at
    // the next checkpoint; packs hold about a hundred records per inode.
    let args = ["--checkpoint-interval", "3600"];
    let f = Fixture::with_args("oldtree-packs", &args);
    old_tree(&f, 4, 150);
    f.sh_ok(
        1001,
        1001,
        "cd home/t && for i in $(seq 150); do echo more >> d1/f$i; echo more >> d2/f$i; done; rm -rf d3",
    );
    let s = status(&f);
    let records = s["journal_records"].as_u64().unwrap();
    assert!(records >= 450, "every first change of an old file is recorded (status: {s})");
    let files = epoch_entries(&f);
    assert!((files.len() as u64) * 20 <= records, "{records} records in {} journal inodes: {files:?}", files.len());
    assert_eq!(s["log_records"].as_u64().unwrap(), 0, "none fell back to the log: {s}");
    assert_exact(&f.state, f.backing(), "after old-tree work recorded in packs");
}

#[test]
fn a_journal_of_one_empty_file_per_record_still_recovers_exactly() {
    // What versions before packs left in the journal (an upgrade after a crash): rewrite this
    // run's packs as one empty file per record, named as those versions named them, and
    // recover from that.
    use quotafs::ledger::journal::{pack, record_name};
    let args = ["--checkpoint-interval", "3600"];
    let mut f = Fixture::with_args("oldtree-names", &args);
    old_tree(&f, 3, 60);
    f.sh_ok(
        1001,
        1001,
        "cd home/t && for i in $(seq 60); do head -c 3000 /dev/zero >> d1/f$i; done; rm -rf d2; mkdir d4",
    );
    f.kill9();
    let mut rewritten = 0;
    for path in epoch_entries(&f) {
        let name = path.file_name().unwrap().as_encoded_bytes().to_vec();
        if !pack::is_pack(&name) {
            continue;
        }
        let mut buf = vec![0u8; 65536];
        let n = rustix::fs::getxattr(&path, "trusted.quotafs.records", &mut buf).unwrap();
        let recs = pack::decode(quotafs::ids::BackingIndex(0), &buf[..n]).expect("a pack this run wrote");
        for rec in recs {
            let file = path.with_file_name(std::str::from_utf8(record_name(&rec).as_bytes()).unwrap());
            std::fs::File::create(file).unwrap();
            rewritten += 1;
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert!(rewritten >= 120, "{rewritten} records rewritten");
    f.start(&args);
    let s = status(&f);
    assert!(s["last_recovery"]["journal_records"].as_u64().unwrap() >= 120, "recovery read them: {s}");
    assert_exact(&f.state, f.backing(), "after recovering from one-file-per-record journal entries");
}
