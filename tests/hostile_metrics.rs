//! The metrics port is not a way to take the daemon down: a local tenant (uid 1000, its own
//! process) opens hundreds of connections that send nothing, floods the port with connections
//! it closes at once, sends binary garbage, an endless header block and a request cut short.
//! Meanwhile the mount serves every tenant, and the daemon never holds more descriptors than
//! its bounds allow; once the attacker stops, a scrape is answered and the daemon's descriptor
//! count is back where it was. The tenant's own scrape is refused (403: the figures are
//! everyone's); a uid in `metrics_allow_uids` is answered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fixture;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// A scrape; None if the connection was refused, closed unanswered, or timed out.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.0 200 OK").then_some(text)
}

/// Sends `req` and returns what came back (empty if the connection was dropped).
fn exchange(port: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const ATTACK: &str = r#"
import socket, sys, time
port = int(sys.argv[1])
idle = []
for i in range(300):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.append(s)
    except OSError:
        pass
for i in range(2000):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.close()
    except OSError:
        pass
print("holding", len(idle), flush=True)
sys.stdin.readline()
for s in idle:
    s.close()
"#;

#[test]
fn idle_floods_and_garbage_do_not_take_the_daemon_down() {
    let port = free_port();
    let mut f = Fixture::with_args("hostile-metrics", &["--metrics-listen", &format!("127.0.0.1:{port}")]);
    f.home("u", 1000, 1000);
    f.home("v", 1001, 1001);
    let pid = f.daemon_pid();
    assert!(scrape(port).is_some(), "scrape before the attack");
    let before = fds(pid);

    // A tenant's process holds 300 idle connections and floods 2000 more.
    let mut attacker = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "/usr/bin/python3", "-c", ATTACK])
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 7];
    attacker.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(&line, b"holding");
    // The daemon holds at most its handlers' and queue's connections, whatever is held open.
    let during = fds(pid);
    assert!(during <= before + 2 + 16 + 4, "{during} descriptors during the attack, {before} before");
    // The mount is unaffected: other tenants work.
    f.sh_ok(1001, 1001, "head -c 100000 /dev/zero > v/f && cat v/f > /dev/null && ls -la v");

    // Garbage, an endless header block and a cut-short request, once the idle ones have
    // timed out (each gets an answer or is dropped; none is a way in).
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(port).is_none() {
        assert!(Instant::now() < deadline, "no scrape answered while idle connections are held");
        std::thread::sleep(Duration::from_millis(200));
    }
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let answer = exchange(port, &[&garbage[..], b"\r\n\r\n"].concat());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.0 400"), "{answer}");
    let long = [b"GET /metrics HTTP/1.0\r\n".as_slice(), &b"X-Pad: aaaaaaaaaaaaaaaa\r\n".repeat(2000)].concat();
    let answer = exchange(port, &long);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.0 431"), "{answer}");
    let answer = exchange(port, b"POST /metrics HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
    assert!(answer.starts_with("HTTP/1.0 405"), "{answer}");
    // A request that arrives a byte at a time (its blank line split across reads) is answered.
    {
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.set_nodelay(true).unwrap();
        for b in b"GET /metrics HTTP/1.0\r\n\r\n" {
            slow.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut text = String::new();
        let _ = slow.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    }
    {
        let mut cut = TcpStream::connect(("127.0.0.1", port)).unwrap();
        cut.write_all(b"GET /metr").unwrap();
    }

    // The attacker lets go: scrapes are answered, the descriptors are back.
    attacker.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    assert!(attacker.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if scrape(port).is_some() && fds(pid) <= before + 4 {
            break;
        }
        assert!(Instant::now() < deadline, "daemon holds {} descriptors, {before} before", fds(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    f.sh_ok(1000, 1000, "echo still > u/alive && cat u/alive");
    assert!(f.log_text().lines().all(|l| !l.contains("panicked")), "{}", f.log_text());

    // The figures are everyone's: a tenant reaching the loopback port is refused; a uid in
    // metrics_allow_uids (a local Prometheus's) is answered.
    assert!(tenant_get(1000, port).starts_with("HTTP/1.0 403"), "{}", tenant_get(1000, port));
    assert!(tenant_get(1000, port).contains("uid 1000 may not read the metrics"));
    f.signal("TERM");
    assert!(f.wait_exit().success());
    let config = f.scratch.dir.join("metrics.toml");
    std::fs::write(&config, "metrics_allow_uids = [1001]\n").unwrap();
    f.start(&["--config", config.to_str().unwrap(), "--metrics-listen", &format!("127.0.0.1:{port}")]);
    assert!(tenant_get(1001, port).starts_with("HTTP/1.0 200 OK"), "{}", tenant_get(1001, port));
    assert!(tenant_get(1000, port).starts_with("HTTP/1.0 403"));
    assert!(scrape(port).is_some(), "root");
}

/// `GET /metrics` from a process of `uid`: what came back.
fn tenant_get(uid: u32, port: u16) -> String {
    let script = "import socket,sys\n\
        s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=10)\n\
        s.sendall(b'GET /metrics HTTP/1.0\\r\\n\\r\\n')\n\
        out=b''\n\
        while True:\n    b=s.recv(65536)\n    if not b: break\n    out+=b\n\
        sys.stdout.write(out.decode())\n";
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
