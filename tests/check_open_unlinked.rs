//! `quotafs check` while a tenant holds a file it unlinked: the rescan cannot see the file,
//! the ledger charges it until the last close. check reports no drift, `check --repair`
//! changes nothing, and after the last close the ledger equals the rescan for the user and
//! the project.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run};

#[test]
fn check_and_repair_count_a_file_unlinked_while_open() {
    let f = Fixture::with_args("check-open-unlinked", &["--checkpoint-interval", "3600"]);
    f.home("t", 1000, 1000);
    f.sh_ok(1000, 1000, "head -c 8388608 /dev/urandom > t/held");
    // The tenant opens the file, unlinks it, and keeps it open until told to stop.
    let holder = common::Held::spawn(
        1000,
        &f.mnt,
        &["sh", "-c", "exec 3<>t/held && rm t/held && echo held && read _ && exec 3>&-"],
    );

    let before = report(&f.state);
    let check = |repair: bool| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--state-dir").arg(&f.state).arg("check");
        if repair {
            cmd.arg("--repair");
        }
        run(&mut cmd)
    };
    let out = check(false);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !said.contains("drift"), "check with a file unlinked but open:\n{said}");
    let out = check(true);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !said.contains("repaired"), "check --repair changed the ledger:\n{said}");
    assert_eq!(report(&f.state), before, "the ledger after check --repair");

    holder.release();
    // The release reaches the daemon asynchronously after close: wait for the charge to go.
    let user = ("user".to_string(), 1000);
    for _ in 0..100 {
        if report(&f.state).get(&user).is_some_and(|u| u.0 < 8 << 20) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_exact(&f.state, f.backing(), "after the last close");
}
