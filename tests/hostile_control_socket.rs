//! A tenant never gets a root control connection: not by spinning on connect() while the
//! daemon starts (the socket is never reachable at a wider mode than its final 0600), and not
//! through a control socket whose mode an operator widened by hand (the daemon checks the
//! peer's uid, SO_PEERCRED, on every control connection).

mod common;

use std::process::{Command, Stdio};

use common::{Fixture, run};

/// Spins on connect() to `path` as uid 1000 for `secs` seconds; each connection asks for the
/// daemon's status. Prints `SERVED <reply>` and stops at the first status answer.
const SPINNER: &str = r#"
use strict; use IO::Socket::UNIX; use Socket;
my ($path, $secs) = @ARGV; my $end = time + $secs; my $tries = 0;
$SIG{ALRM} = sub { print "STUCK\n"; exit 0 }; $SIG{PIPE} = "IGNORE"; $| = 1;
while (time < $end) {
    $tries++;
    my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path);
    unless ($c) { select(undef, undef, undef, 0.0005); next }
    print $c "{\"op\":\"status\"}\n";
    alarm 20; my $l = <$c>; alarm 0;
    if (defined $l && $l =~ /"result":"status"/) { print "SERVED $l"; exit 0 }
    if (defined $l) { print "REFUSED $l" }
}
print "tries $tries\n";
"#;

fn spinner(path: &std::path::Path, secs: u32) -> std::process::Child {
    Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "perl", "-e", SPINNER])
        .arg(path)
        .arg(secs.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the spinner")
}

#[test]
fn tenants_never_get_a_control_connection() {
    let mut f = Fixture::new("hostile-control");
    let control = f.state.join("control.sock");
    // The daemon pauses right after binding each socket: without the fix the control socket
    // sits there at mode 0777 (umask 0) for the whole pause.
    for round in 0..3 {
        assert_eq!(f.unmount().code(), Some(0));
        let spin = spinner(&control, 6);
        f.start_with_env(&[], &[("QUOTAFS_FAILPOINT_SOCKET_BOUND_PAUSE_MS", "400")]);
        let out = spin.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("SERVED"), "round {round}: a tenant was served on the control socket: {text}");
        assert!(!text.contains("STUCK"), "round {round}: a tenant connection hung: {text}");
    }

    // Second layer on its own: the control socket widened by hand still refuses a tenant.
    run(Command::new("chmod").arg("0666").arg(&control));
    let out = spinner(&control, 2).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("SERVED"), "a tenant was served on a widened control socket: {text}");
    assert!(
        text.contains("REFUSED") && text.contains("root"),
        "a tenant on a widened control socket gets an error line naming the rule: {text}"
    );
    // Root is still served.
    let status = run(Command::new(common::BIN).arg("--state-dir").arg(&f.state).args(["status", "--json"]));
    assert!(status.status.success(), "root's status: {}", String::from_utf8_lossy(&status.stderr));
}
