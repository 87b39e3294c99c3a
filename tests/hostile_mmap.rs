//! Writes through a shared mapping are charged and limited as the file's opener: the kernel
//! writes dirty pages back as uid 0 (which is exempt), so a tenant that ftruncates a file to
//! 60 MiB, touches every page through mmap(MAP_SHARED) and msyncs must still be held to its
//! 20 MiB limit, in the main tree and inside a routed Dropbox, with the refusal reaching it
//! at msync/fsync, the refused pages dropped (readers see what was stored), and the ledger
//! exact.

mod common;

use std::process::Command;

use common::{Fixture, assert_exact_all, report, run_ok};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/mmapfill.py");
const MIB: u64 = 1 << 20;

fn used(f: &Fixture) -> u64 {
    report(&f.state).get(&("user".to_string(), 1000)).copied().unwrap_or_default().0
}

#[test]
fn shared_mapping_writeback_is_held_to_the_openers_limit() {
    let f = Fixture::with_routes("mmap", &["/home/*/Dropbox"], &[]);
    f.home("home", 0, 0);
    f.home("home/u", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/u/Dropbox");
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "20M"]);
    for dir in ["home/u", "home/u/Dropbox"] {
        let path = f.m(&format!("{dir}/mapped"));
        let out = f.sh_ok(1000, 1000, &format!("/usr/bin/python3 {SCRIPT} {} 60", path.display()));
        assert!(
            out.lines().any(|l| l == "msync: err EDQUOT" || l == "fsync: err EDQUOT"),
            "{dir}: the refusal reaches the tenant at msync or fsync:\n{out}"
        );
        run_ok(&mut Command::new("sync"));
        // What a reader sees through the mount is what was stored, not the refused pages.
        let backing = f.all_backings().iter().map(|b| b.join(dir).join("mapped")).find(|p| p.exists()).unwrap();
        let stored = std::fs::read(&backing).unwrap();
        let seen = std::fs::read(&path).unwrap();
        let count = |d: &[u8]| d.iter().filter(|&&b| b != 0).count();
        assert_eq!(count(&seen), count(&stored), "{dir}: pages through the mount vs stored bytes");
        let u = used(&f);
        assert!(u <= 20 * MIB, "{dir}: {} MiB stored under a 20 MiB limit", u / MIB);
        assert_exact_all(&f.state, &f.all_backings(), &format!("after mmap writes in {dir}"));
        f.sh_ok(1000, 1000, &format!("rm {}", path.display()));
    }
}
