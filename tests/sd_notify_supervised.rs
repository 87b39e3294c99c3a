//! systemd readiness of a `--supervise` mount (Type=notify, NotifyAccess=main in
//! fixtures/quotafs.service): systemd's main process is the supervisor, and systemd drops
//! notifications from any other pid. So READY=1 (once the mount serves) and STOPPING=1 (on
//! SIGTERM) must come from the supervisor's pid, and a serving process (the first, or one
//! started by `quotafs restart`) must send nothing. The sender's pid is what the kernel puts
//! in SCM_CREDENTIALS, as systemd reads it.

mod common;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{BIN, Fixture, mounted_at};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// One datagram: its text and the sender's pid as the kernel gives it.
fn receive(sock: &UnixDatagram) -> Option<(String, i32)> {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(sock, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::empty()).ok()?;
    let pid = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmCredentials(c) => Some(c.pid.as_raw_nonzero().get()),
        _ => None,
    })?;
    Some((String::from_utf8_lossy(&buf[..got.bytes]).into_owned(), pid))
}

#[test]
fn ready_and_stopping_come_from_the_supervisor_and_serving_processes_send_nothing() {
    let mut f = Fixture::with_args("sd-notify-supervised", &["--supervise", "--transport", "classic"]);
    f.sh_ok(1000, 1000, "stat -f . > /dev/null");
    f.signal("TERM");
    assert!(f.wait_exit().success());
    let path = f.scratch.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    rustix::net::sockopt::set_socket_passcred(&sock, true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    f.start_with_env(&["--supervise", "--transport", "classic"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let supervisor = f.daemon_pid() as i32;
    let (text, pid) = loop {
        let (text, pid) = receive(&sock).expect("a notification within 30 s");
        assert_eq!(pid, supervisor, "{text:?} came from pid {pid}, not from the supervisor (main pid)");
        if text.lines().any(|l| l == "READY=1") {
            break (text, pid);
        }
    };
    assert_eq!(pid, supervisor, "{text:?}");
    assert_eq!(mounted_at(&f.mnt).as_deref(), Some("fuse.quotafs"));
    f.sh_ok(1000, 1000, "stat -f . | grep -q fuse");

    // A restart: the new serving process says nothing either.
    let out = std::process::Command::new(BIN).arg("--state-dir").arg(&f.state).arg("restart").output().unwrap();
    assert!(out.status.success(), "restart: {}\n{}", String::from_utf8_lossy(&out.stderr), f.log_text());
    f.sh_ok(1000, 1000, "stat -f . | grep -q fuse");

    f.signal("TERM");
    loop {
        let (text, pid) = receive(&sock).expect("STOPPING=1 within 30 s");
        assert_eq!(pid, supervisor, "{text:?} came from pid {pid}, not from the supervisor (main pid)");
        if text.lines().any(|l| l == "STOPPING=1") {
            break;
        }
    }
    assert!(f.wait_exit().success(), "{}", f.log_text());
    // Nothing more from anyone.
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    if let Some((text, pid)) = receive(&sock) {
        assert_eq!(pid, supervisor, "late {text:?} from pid {pid}");
    }
}
