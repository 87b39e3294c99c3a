//! A local user attacks `tenant.sock` (world-accessible): thousands of idle connections and a
//! 1 GiB request line without a newline. The daemon keeps serving everyone else with bounded
//! threads, descriptors and memory; connections over the per-uid cap are closed at once, the
//! others when their deadline passes; the long line is cut off at the request cap.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{BIN, Fixture};

/// Opens N connections to PATH and holds them; prints `open N`. On a line on stdin, waits
/// (at most 60 s) until the daemon has closed each one and prints `closed C of N`.
const HOLDER: &str = r#"
use strict; use IO::Socket::UNIX; use Socket; $SIG{PIPE} = "IGNORE"; $| = 1;
my ($path, $n) = @ARGV; my @s;
for (1..$n) {
    my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or do { print "connect: $!\n"; last };
    push @s, $c;
}
print "open ", scalar(@s), "\n";
<STDIN>;
my $closed = 0;
$SIG{ALRM} = sub { print "closed $closed of ", scalar(@s), "\n"; exit 0 };
alarm 60;
for my $c (@s) { my $buf; while (sysread($c, $buf, 4096)) {} $closed++; }
print "closed $closed of ", scalar(@s), "\n";
"#;

/// Writes up to 1 GiB without a newline to PATH, stopping at the first failed write; prints
/// `sent BYTES`.
const FLOODER: &str = r#"
use strict; use IO::Socket::UNIX; use Socket; $SIG{PIPE} = "IGNORE"; $| = 1;
my ($path) = @ARGV;
my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path) or die "connect: $!";
my $chunk = "x" x (1 << 20); my $sent = 0;
OUTER: for (1..1024) {
    my $off = 0;
    while ($off < length $chunk) {
        my $n = syswrite($c, $chunk, length($chunk) - $off, $off);
        last OUTER unless defined $n;
        $off += $n; $sent += $n;
    }
}
print "sent $sent\n";
"#;

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon is alive");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn perl_as(uid: u32, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).args(["--clear-groups", "perl", "-e", script]);
    cmd.args(args);
    cmd
}

fn quota_show(f: &Fixture, uid: u32) -> String {
    let st = f.state.to_str().unwrap();
    f.sh_ok(uid, uid, &format!("{BIN} --state-dir {st} quota show --json"))
}

#[test]
fn a_hostile_tenant_cannot_exhaust_the_daemon() {
    let mut f = Fixture::new("hostile-tenant");
    assert_eq!(f.unmount().code(), Some(0));
    f.start_with_env(&[], &[("QUOTAFS_SOCKET_TIMEOUT_MS", "2000")]);
    let pid = f.daemon_pid();
    let sock = f.state.join("tenant.sock");
    let sock = sock.to_str().unwrap();
    assert!(quota_show(&f, 1001).contains("\"user\""));
    let threads0 = status_field(pid, "Threads:");
    let fds0 = fds(pid);
    let hwm0 = status_field(pid, "VmHWM:");

    // Thousands of idle connections from one uid.
    const N: usize = 5000;
    let mut holder = perl_as(1000, HOLDER, &[sock, &N.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let opened = lines.next().unwrap().unwrap();
    assert_eq!(opened, format!("open {N}"), "the attacker's connects");
    let (threads, open_fds) = (status_field(pid, "Threads:"), fds(pid));
    assert!(
        threads < threads0 + 16,
        "the daemon runs a thread per connection: {threads} threads with {N} connections open (was {threads0})"
    );
    assert!(open_fds < fds0 + 600, "the daemon holds {open_fds} descriptors with {N} connections open (was {fds0})");
    // Another tenant is answered meanwhile.
    assert!(quota_show(&f, 1001).contains("\"user\""), "another tenant's quota show");
    // Every connection is closed: over the cap at once, the rest at their deadline.
    writeln!(holder.stdin.take().unwrap()).unwrap();
    let closed = lines.next().unwrap().unwrap();
    assert_eq!(closed, format!("closed {N} of {N}"), "idle connections are closed by the daemon");
    holder.wait().unwrap();

    // A 1 GiB line without a newline is cut off at the cap.
    let out = perl_as(1000, FLOODER, &[sock]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let sent: u64 = text.trim().strip_prefix("sent ").and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("flooder: {text} {}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(sent < 64 << 20, "the daemon read {sent} bytes of a request without a newline");
    let hwm = status_field(pid, "VmHWM:");
    println!(
        "{N} connections: {threads} threads (before {threads0}), {open_fds} fds (before {fds0}); \
         1 GiB line: {sent} bytes taken, peak RSS {hwm0} -> {hwm} kB"
    );
    assert!(hwm < hwm0 + 64 * 1024, "the daemon's peak RSS grew from {hwm0} kB to {hwm} kB");

    // Still serving, and still exact.
    assert!(quota_show(&f, 1001).contains("\"user\""));
    f.sh_ok(1000, 1000, "echo hi > /dev/null");
    assert_eq!(f.unmount().code(), Some(0), "the daemon ends cleanly:\n{}", f.log_text());
}
