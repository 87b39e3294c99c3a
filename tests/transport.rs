//! `--transport`: FUSE over io_uring where the kernel offers it (`auto`, the default), the
//! /dev/fuse reads otherwise or when asked (`classic`); `uring` refuses to start, exit 2 with
//! the way to turn the kernel side on, where the kernel will not. `status --json` says which
//! is in use. The kernel switch is set by each test and put back by a guard, also when the
//! test fails; the tests of this file run one at a time.

mod common;

use std::process::Command;
use std::sync::Mutex;

use common::guards::UringSwitch;
use common::{BIN, Fixture, Scratch, assert_exact, mounted_at, run};

static SERIAL: Mutex<()> = Mutex::new(());

fn transport(f: &Fixture) -> String {
    let status: serde_json::Value = serde_json::from_str(&f.quotafs(&["status", "--json"])).expect("status JSON");
    status["transport"].as_str().unwrap_or_default().to_string()
}

/// What a tenant does on any mount: files made, written, read back, listed, renamed, removed;
/// a write past the limit refused; the ledger exact afterwards.
fn tenant_work(f: &Fixture) {
    f.quotafs(&["quota", "set", "--user", "1001", "--bytes-hard", "8M"]);
    let home = f.home("alice", 1001, 1001);
    let h = home.display();
    f.sh_ok(
        1001,
        1001,
        &format!(
            "cd {h} && for i in $(seq 1 200); do echo file $i > f$i; done && mkdir d && mv f1 d/ && \
             cat f2 | grep -q 'file 2' && ls | wc -l | grep -q 200 && rm f3 f4 && \
             dd if=/dev/urandom of=big bs=1M count=3 status=none && cmp big big && ln -s big link && \
             test \"$(readlink link)\" = big"
        ),
    );
    let out = f.sh_as(1001, 1001, &format!("dd if=/dev/zero of={h}/over bs=1M count=16 status=none"));
    assert!(!out.status.success(), "a write past the 8 MiB limit must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("quota"),
        "EDQUOT expected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exact(&f.state, f.backing(), "after the tenant's work");
}

#[test]
fn io_uring_serves_the_mount_where_the_kernel_offers_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _switch = UringSwitch::set(true);
    let mut f = Fixture::with_args("transport-uring", &["--transport", "auto"]);
    assert_eq!(transport(&f), "uring", "auto must pick io_uring when the kernel offers it:\n{}", f.log_text());
    tenant_work(&f);
    assert!(f.unmount().success(), "clean unmount over io_uring:\n{}", f.log_text());
    assert!(mounted_at(&f.mnt).is_none());
}

#[test]
fn classic_when_asked_or_when_the_kernel_does_not_offer_io_uring() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    {
        let _switch = UringSwitch::set(true);
        let mut f = Fixture::with_args("transport-classic", &["--transport", "classic"]);
        assert_eq!(transport(&f), "classic");
        tenant_work(&f);
        assert!(f.unmount().success());
    }
    let _switch = UringSwitch::set(false);
    let mut f = Fixture::with_args("transport-auto-off", &["--transport", "auto"]);
    assert_eq!(transport(&f), "classic", "auto falls back to /dev/fuse when the kernel switch is off");
    assert!(f.unmount().success());
}

#[test]
fn transport_uring_is_refused_where_the_kernel_cannot() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _switch = UringSwitch::set(false);
    let s = Scratch::new("transport-refused");
    let mnt = s.dir.join("mnt");
    let out = run(Command::new(BIN)
        .args(["mount", "--transport", "uring", "--backing"])
        .arg(&s.backing)
        .arg("--state-dir")
        .arg(s.dir.join("state"))
        .arg(&mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused with exit 2: {err}");
    assert!(err.contains("enable_uring") && err.contains("echo Y"), "the message says how to turn it on: {err}");
    assert!(mounted_at(&mnt).is_none(), "nothing mounted");
    // A value that is no transport is refused too, naming the choices.
    let out = run(Command::new(BIN).args(["mount", "--transport", "fast", "--backing"]).arg(&s.backing).arg(&mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("auto, uring or classic"), "{err}");
}
