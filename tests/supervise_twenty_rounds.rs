//! The test (#19): 20 rounds of kill -9 of the serving process (the pid `status
//! --json` reports) under a multi-tenant workload. Two tenants loop creating, writing,
//! reading, listing, renaming and unlinking files and directories in their homes; each also
//! holds a file open across every kill (read-write, and O_DIRECT for reads the kernel always
//! sends) and writes and reads it after each. No tenant sees an error, `check` is exact after
//! every round, and the pause of each round (a create issued right after the kill, timed to
//! its answer) is printed as p50/p99 (not asserted).

mod common;
#[path = "common/takeover.rs"]
mod takeover;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::holder::Holder;
use common::{Fixture, assert_exact};
use takeover::{kill9, next_pid};

const ROUNDS: usize = 20;

/// A tenant's loop in `home`; its stderr (any error the shell or a command reports) goes to
/// `errors`, outside the mount.
fn tenant(uid: u32, home: &std::path::Path, errors: &std::path::Path) -> Child {
    let script = "cd \"$0\" || exit 1; i=0; while [ ! -e stop ]; do i=$((i+1)); \
         echo $i > f$i; cat f$i > /dev/null; ls -l > /dev/null; \
         mkdir d$i; mv f$i d$i/g; cat d$i/g > /dev/null; \
         if [ $((i % 2)) = 0 ]; then rm d$((i-1))/g; rmdir d$((i-1)); fi; done";
    Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "sh".into(), "-c".into()])
        .arg(script)
        .arg(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(errors).unwrap())
        .spawn()
        .expect("tenant shell")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn twenty_kill9_rounds_under_two_tenants() {
    let mut f = Fixture::with_args(
        "supervise-twenty",
        &["--supervise", "--transport", "classic", "--restart-limit", "100/60s"],
    );
    let supervisor = f.daemon_pid();
    let tenants = [(1001u32, "alice"), (1002, "bob")];
    let mut holders = Vec::new();
    let mut shells = Vec::new();
    for (uid, name) in tenants {
        let home = f.home(name, uid, uid);
        f.sh_ok(uid, uid, &format!("printf start > {}/held", home.display()));
        let mut h = Holder::spawn(uid, uid);
        assert_eq!(h.cmd(&format!("open rw {}/held rdwr", home.display())), "ok");
        assert_eq!(h.cmd(&format!("open direct {}/held direct", home.display())), "ok");
        holders.push(h);
        let errors = f.scratch.dir.join(format!("{name}.errors"));
        shells.push((tenant(uid, &home, &errors), errors, home));
    }
    let mut pid = next_pid(&f, None);
    let mut pauses = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(400));
        kill9(pid);
        let t = Instant::now();
        std::fs::write(f.m(&format!("pause{round}")), b"x").expect("a create right after the kill");
        pauses.push(t.elapsed());
        pid = next_pid(&f, Some(pid));
        for h in &mut holders {
            let token = format!("r{round:02}");
            assert_eq!(h.cmd(&format!("write rw {} {token}", 5 + 3 * round)), "ok 3", "round {round}");
            let through_cache = h.cmd("read rw");
            assert_eq!(h.cmd("read direct"), through_cache, "round {round}: both handles read the same file");
            let size = 5 + 3 * (round + 1);
            assert!(through_cache.starts_with(&format!("data {size} ")), "round {round}: {through_cache}");
        }
        let out = f.quotafs(&["check"]);
        assert!(out.contains("exactly"), "round {round}: {out}");
    }
    for (_, _, home) in &shells {
        std::fs::write(home.join("stop"), b"").unwrap();
    }
    for (mut shell, errors, _) in shells {
        let status = shell.wait().unwrap();
        let errors = std::fs::read_to_string(&errors).unwrap();
        assert!(status.success() && errors.is_empty(), "a tenant saw errors ({status}):\n{errors}");
    }
    for (h, (_, name)) in holders.iter_mut().zip(tenants) {
        let text = std::fs::read_to_string(f.m(&format!("{name}/held"))).unwrap();
        let expected: String =
            std::iter::once("start".to_string()).chain((0..ROUNDS).map(|r| format!("r{r:02}"))).collect();
        assert_eq!(text, expected, "{name}'s held file has every round's write");
        assert_eq!(h.cmd("close rw"), "ok");
        assert_eq!(h.cmd("close direct"), "ok");
    }
    drop(holders);
    assert_eq!(f.daemon_pid(), supervisor, "the supervisor itself never restarted");
    assert_exact(&f.state, f.backing(), "after 20 takeovers, the tenants stopped");
    pauses.sort();
    eprintln!(
        "takeover pause over {ROUNDS} rounds: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&pauses, 50),
        percentile(&pauses, 99),
        pauses[pauses.len() - 1]
    );
    f.signal("TERM");
    assert!(f.wait_exit().success(), "clean exit on SIGTERM:\n{}", f.log_text());
}
