//! Export connections (`--exports-dir`) and the main mount cache pages, attributes and names
//! each for itself: a change through one must be seen through the other at once. A tenant
//! rewrites a file in place, appends, creates and removes names through one connection and
//! reads through the other right after, both ways.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Fixture, assert_exact, mounted_at, read_ahead_kb};

fn wait_mounted(p: &Path, f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounted_at(p).as_deref() != Some("fuse.quotafs") {
        assert!(Instant::now() < deadline, "{} not mounted:\n{}", p.display(), f.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn changes_through_one_connection_show_through_the_other_at_once() {
    let mut f = Fixture::new("export-coherence");
    f.root("mkdir site && chown 1002:1002 site");
    f.quotafs(&["project", "assign", "--id", "42", "--name", "site", &f.m("site").display().to_string()]);
    let exports: PathBuf = f.scratch.dir.join("exports");
    assert!(f.unmount().success());
    f.start(&["--exports-dir", &exports.display().to_string(), "--export-projects"]);
    let x = exports.join("projects/site");
    wait_mounted(&x, &f);
    // An export connection reads ahead as far as the main mount (its window is set once its
    // own INIT is answered; the stat waits for that).
    assert_eq!(read_ahead_kb(&x), 1024, "the export connection's readahead window");
    let (m, x) = (f.m("site").display().to_string(), x.display().to_string());

    // Each side caches the file's pages first (KEEP_CACHE keeps them across opens).
    f.sh_ok(1002, 1002, &format!("printf AAAA > {m}/f && cat {m}/f {x}/f >/dev/null"));
    // A same-size rewrite in place through the main mount, read through the export at once.
    let out = f.sh_ok(1002, 1002, &format!("printf BBBB | dd of={m}/f conv=notrunc status=none && cat {x}/f"));
    assert_eq!(out, "BBBB", "the export connection served stale pages");
    // And the other way.
    let out = f.sh_ok(1002, 1002, &format!("printf CCCC | dd of={x}/f conv=notrunc status=none && cat {m}/f"));
    assert_eq!(out, "CCCC", "the main mount served stale pages");
    // Sizes: an append through one, the size through the other.
    let out = f.sh_ok(1002, 1002, &format!("stat -c %s {x}/f >/dev/null; printf DD >> {m}/f && stat -c %s {x}/f"));
    assert_eq!(out.trim(), "6", "the export connection kept a stale size");
    let out = f.sh_ok(1002, 1002, &format!("stat -c %s {m}/f >/dev/null; printf EE >> {x}/f && stat -c %s {m}/f"));
    assert_eq!(out.trim(), "8", "the main mount kept a stale size");
    // Names: a negative entry cached on one side, the file made through the other.
    let out = f.sh_ok(
        1002,
        1002,
        &format!("test -e {x}/new || true; echo made > {m}/new && cat {x}/new && rm {x}/new && test ! -e {m}/new && echo gone"),
    );
    assert_eq!(out.trim(), "made\ngone", "names through one connection not seen through the other");
    // A rename through the export shows on the main mount.
    let out = f.sh_ok(1002, 1002, &format!("cat {m}/f >/dev/null; mv {x}/f {x}/g && test ! -e {m}/f && cat {m}/g"));
    assert_eq!(out, "CCCCDDEE");
    assert_exact(&f.state, f.backing(), "after changes through both connections");
}
