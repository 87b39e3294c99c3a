//! One tenant's open files do not starve everyone: a tenant that holds far more files open
//! than its share (and than the daemon's whole open-file limit) gets EMFILE past its share,
//! while another tenant's ls, create and write, and the ledger's checkpoints, keep working.
//! Root (nfs-ganesha) is not held to a share but stops at the daemon's reserve: checkpoints
//! still work.

mod common;

use std::process::Command;

use common::holder::Holder;
use common::{BIN, Fixture, assert_exact_settled, run_ok};

const FILES: usize = 20_000;
const SHARE: usize = 1000;

fn checkpoint_epoch(f: &Fixture) -> u64 {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).arg("checkpoint"));
    let epoch = out.split("epoch ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok());
    epoch.unwrap_or_else(|| panic!("checkpoint answer without an epoch: {out}"))
}

fn other_tenant_works(f: &Fixture, what: &str) {
    f.sh_ok(
        1001,
        1001,
        "ls v > /dev/null && echo data > v/new && head -c 100000 /dev/zero >> v/new && cat v/new > /dev/null && rm v/new",
    );
    let before = checkpoint_epoch(f);
    assert!(checkpoint_epoch(f) > before, "checkpoints advance {what}");
}

#[test]
fn one_tenants_open_files_do_not_starve_the_others() {
    let share = SHARE.to_string();
    let f = Fixture::with_args("fds", &["--opens-per-uid", &share, "--fd-cache", "256"]);
    f.home("u", 1000, 1000);
    f.home("v", 1001, 1001);
    f.sh_ok(1000, 1000, &format!("mkdir u/many && cd u/many && seq 0 {} | xargs touch", FILES - 1));
    // Tenant 1000 tries to hold every file open, from two processes (each below its own
    // limit, together past the daemon's).
    let prefix = f.m("u/many/").display().to_string();
    let mut a = Holder::spawn(1000, 1000);
    let mut b = Holder::spawn(1000, 1000);
    let half = FILES / 2;
    let ra = a.cmd(&format!("openmany {prefix} 0 {half}"));
    let rb = b.cmd(&format!("openmany {prefix} {half} {FILES}"));
    let opened: usize = [&ra, &rb].iter().map(|r| r.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(opened, SHARE, "the tenant holds exactly its share: {ra} / {rb}");
    assert!(ra.contains("EMFILE") && rb.contains("EMFILE"), "the rest is EMFILE: {ra} / {rb}");
    other_tenant_works(&f, "while a tenant holds its share");
    // Root, not held to a share, stops short of the reserve; the ledger keeps working.
    let mut r = Holder::spawn(0, 0);
    let rr = r.cmd(&format!("openmany {prefix} 0 {FILES}"));
    assert!(rr.contains("ENFILE"), "root stops at the daemon's budget: {rr}");
    let before = checkpoint_epoch(&f);
    assert!(checkpoint_epoch(&f) > before, "checkpoints advance with the budget used up");
    drop(r);
    other_tenant_works(&f, "after root let go");
    drop((a, b));
    // Thousands of RELEASEs are queued in the kernel's background queue by now (root's and
    // the tenant's holders ended): the ledger is exact once they have arrived.
    assert_exact_settled(&f.state, f.backing(), "after the descriptor storm");
}
