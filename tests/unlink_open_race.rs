//! No malice: tenants' processes open and write files while others unlink them, on a few
//! shared names. An open that reaches the daemon just after the unlink of its file (the
//! kernel resolved the name before) must still leave every charge taken and released once:
//! afterwards the ledger equals a rescan.

mod common;

use std::process::Command;

use common::{Fixture, assert_exact};

const CHURN: &str = r#"
import os, random, sys, time
rng = random.Random(int(sys.argv[1]))
names = ["n%d" % i for i in range(20)]
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    name = rng.choice(names)
    try:
        if rng.random() < 0.5:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                for _ in range(rng.randrange(1, 9)):
                    os.write(fd, b"w" * 16384)
            finally:
                os.close(fd)
        else:
            os.unlink(name)
    except FileNotFoundError:
        pass
"#;

#[test]
fn open_and_write_racing_unlink_leaves_the_ledger_exact() {
    let f = Fixture::with_args("unlink-open-race", &["--checkpoint-interval", "3600"]);
    f.home("shared", 1000, 1000);
    let script = f.scratch.dir.join("churn.py");
    std::fs::write(&script, CHURN).unwrap();
    let seed = common::seed();
    eprintln!("seed {seed}");
    let procs: Vec<_> = (0..4u64)
        .map(|i| {
            Command::new("setpriv")
                .args(["--reuid=1000", "--regid=1000"])
                .arg("--clear-groups")
                .arg("/usr/bin/python3")
                .arg(&script)
                .arg((seed.wrapping_add(i)).to_string())
                .arg("6")
                .current_dir(f.m("shared"))
                .spawn()
                .expect("spawn a tenant's process")
        })
        .collect();
    for mut p in procs {
        let status = p.wait().unwrap();
        assert!(status.success(), "a tenant's process failed: {status}");
    }
    assert_exact(&f.state, f.backing(), "after opens and writes racing unlinks");
}
