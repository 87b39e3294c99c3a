//! systemd readiness (Type=notify): with `NOTIFY_SOCKET` set, the daemon sends READY=1 once
//! the mount serves (a tenant's stat through it is answered when the message arrives, so
//! `Before=nfs-ganesha.service` really waits for the mount), and STOPPING=1 on SIGTERM; both
//! to a path socket and to one in the abstract namespace (`@name`), as systemd uses.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use common::{Fixture, mounted_at};

/// What one datagram said, and whether the mount was up and answering when it arrived.
fn receive(sock: &UnixDatagram, mnt: &std::path::Path) -> (String, bool) {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within the timeout");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let serving = mounted_at(mnt).as_deref() == Some("fuse.quotafs")
        && std::process::Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "stat", "-f"])
            .arg(mnt)
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("fuse"));
    (text, serving)
}

fn ready_then_stopping(f: &mut Fixture, sock: UnixDatagram, env: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mnt = f.mnt.clone();
    // The checks run as READY=1 arrives, while this thread is still starting the daemon
    // (STATUS= lines before it are progress).
    let (text, up) = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            loop {
                let (text, up) = receive(&sock, &mnt);
                if !text.lines().all(|l| l.starts_with("STATUS=")) {
                    break (text, up);
                }
            }
        });
        f.start_with_env(&[], &[("NOTIFY_SOCKET", env)]);
        rx.join().unwrap()
    });
    assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
    assert!(up, "READY=1 arrived before the mount was there");
    // And it answers tenants.
    f.sh_ok(1000, 1000, "stat -f . | grep -q fuse");
    f.signal("TERM");
    let (text, _) = receive(&sock, &mnt);
    assert!(text.lines().any(|l| l == "STOPPING=1"), "{text:?}");
    assert!(f.wait_exit().success());
}

#[test]
fn ready_is_sent_once_the_mount_serves_and_stopping_on_sigterm() {
    let mut f = Fixture::new("sd-notify");
    // Started without NOTIFY_SOCKET: nothing is sent, nothing fails.
    f.signal("TERM");
    assert!(f.wait_exit().success());

    let path = f.scratch.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    ready_then_stopping(&mut f, sock, path.to_str().unwrap());

    let name = format!("quotafs-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    ready_then_stopping(&mut f, sock, &format!("@{name}"));
    assert!(f.log_text().contains("serving"));
}
