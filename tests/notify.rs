//! Notifications (`notify_command`): a tenant passes its soft limit, lets its grace run out and
//! is refused, again and again; the operator's command runs once per kind of event, with the
//! subject, usage, limits and grace in its environment. A command that hangs holds up
//! neither the tenant it is about (refusals keep being answered while it runs) nor the
//! events after it: at `notify_timeout` it is killed with everything it started.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Fixture;

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Waits until `log` has a line starting with `prefix` (the command runs on a thread of its own).
fn wait_line(log: &Path, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(l) = lines(log).into_iter().find(|l| l.starts_with(prefix)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no {prefix:?} in {:?}", lines(log));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` runs (a killed one may linger as a zombie until its reaper gets to it).
fn alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn refused(f: &Fixture, uid: u32, script: &str) {
    // `timeout`: a refusal held up by the command would fail here, not hang the test.
    let out = f.sh_as(uid, uid, &format!("timeout 20 sh -c '{script}'"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"), "{script}: {out:?}");
}

#[test]
fn each_event_runs_the_command_once_and_a_hanging_one_is_killed() {
    let scratch = common::Scratch::new("notify-cmd");
    let log = scratch.dir.join("events.log");
    let pidfile = scratch.dir.join("hang.pid");
    let cmd = scratch.dir.join("warn.sh");
    std::fs::write(
        &cmd,
        format!(
            "#!/bin/sh\n\
             echo \"$QUOTAFS_EVENT $QUOTAFS_SUBJECT_KIND $QUOTAFS_SUBJECT_ID $QUOTAFS_RESOURCE $QUOTAFS_USAGE \
             $QUOTAFS_SOFT_LIMIT $QUOTAFS_HARD_LIMIT $QUOTAFS_GRACE_SECS $QUOTAFS_GRACE_EXPIRES \
             caller=$QUOTAFS_CALLER_UID ${{NOTIFY_SOCKET:-}}$1\" >> {log}\n\
             if [ \"$QUOTAFS_SUBJECT_ID\" = 1001 ]; then sleep 1000 & echo $! > {pid}; wait; fi\n",
            log = log.display(),
            pid = pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cmd, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = scratch.dir.join("quotafs.toml");
    std::fs::write(&config, format!("notify_command = [\"{}\", \"arg\"]\nnotify_timeout = 10\n", cmd.display()))
        .unwrap();

    let f = Fixture::with_args("notify", &["--config", config.to_str().unwrap()]);
    f.home("u", 1000, 1000);
    f.home("v", 1001, 1001);
    f.home("w", 1002, 1002);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-soft", "256K", "--bytes-hard", "1M", "--grace", "1s"]);
    f.quotafs(&["quota", "set", "--user", "1001", "--bytes-hard", "64K"]);
    f.quotafs(&["quota", "set", "--user", "1002", "--bytes-hard", "64K"]);

    // Over the soft limit: its grace period starts.
    f.sh_ok(1000, 1000, "head -c 300000 /dev/zero > u/a");
    let soft = wait_line(&log, "soft_exceeded user 1000 bytes ");
    let fields: Vec<&str> = soft.split(' ').collect();
    assert!(fields[4].parse::<u64>().unwrap() > 262_144, "usage past the soft limit: {soft}");
    assert_eq!(&fields[5..9], ["262144", "1048576", "1", fields[8]], "{soft}");
    assert!(fields[8].parse::<u64>().unwrap() > 1_700_000_000, "grace end: {soft}");
    assert_eq!(
        &fields[9..],
        ["caller=", "arg"],
        "no caller for a soft crossing, argv from the config, no NOTIFY_SOCKET: {soft}"
    );
    // Its grace runs out (one second); a change that leaves it over the soft limit says so.
    std::thread::sleep(Duration::from_millis(2100));
    f.sh_ok(1000, 1000, "truncate -s 290000 u/a");
    wait_line(&log, "grace_expired user 1000 bytes ");
    // The soft limit acts as hard now: refused, three times; one notification.
    for _ in 0..3 {
        refused(&f, 1000, "head -c 10000 /dev/zero >> u/a");
    }
    let refusal = wait_line(&log, "refused user 1000 bytes ");
    assert!(refusal.ends_with(" caller=1000 arg"), "caller uid: {refusal}");

    // A command that hangs: the refused tenant is answered meanwhile, again and again.
    refused(&f, 1001, "head -c 100000 /dev/zero > v/a");
    wait_line(&log, "refused user 1001 ");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the hanging command never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    for _ in 0..3 {
        refused(&f, 1001, "head -c 100000 /dev/zero >> v/a");
    }
    f.sh_ok(1001, 1001, "rm v/a && echo fine > v/b && cat v/b");
    assert!(alive(&pid), "the command still runs while its tenant is served");
    // Another subject's event waits for it, and runs once it is killed, with what it started.
    refused(&f, 1002, "head -c 100000 /dev/zero > w/a");
    wait_line(&log, "refused user 1002 ");
    // SIGKILL is delivered, and the orphan reaped, a moment after the kill returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(&pid), "the command's child was killed with it");

    let all = lines(&log);
    for kind in ["soft_exceeded user 1000", "grace_expired user 1000", "refused user 1000", "refused user 1001"] {
        assert_eq!(all.iter().filter(|l| l.starts_with(kind)).count(), 1, "{kind} once: {all:?}");
    }
    assert!(f.log_text().contains("notification command failed"), "the kill is logged:\n{}", f.log_text());
}
