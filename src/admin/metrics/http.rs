//! The HTTP responder and the textfile writer of the metrics (see the parent module for the
//! bounds they keep).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{DEADLINE, MAX_REQUEST, MetricsConfig, QUEUE, Source, TEXTFILE_INTERVAL, WORKERS};
use crate::admin::AdminError;

/// Who may read the metrics over HTTP.
#[derive(Clone, Debug)]
struct Access {
    /// Local uids besides root.
    uids: Vec<u32>,
    /// Connections from no local socket (other hosts) are answered: the listener is off
    /// loopback, which `metrics_allow_remote` allowed.
    remote: bool,
}

/// Why a client may not read the metrics (the body of the 403 answer).
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    /// No local socket is connected from the client's address, and remote clients are off.
    Remote,
    /// A local user who is neither root nor in `metrics_allow_uids`.
    Uid(u32),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Remote => f.write_str("no local socket is connected from there"),
            Denied::Uid(uid) => write!(
                f,
                "uid {uid} may not read the metrics (they show every user's usage); root may, and the uids in \
                 metrics_allow_uids"
            ),
        }
    }
}

impl Access {
    /// Whether the client at `peer`, connected to our `ours`, may read the metrics: the
    /// owner of its socket if it is local (any local user can reach a loopback port), else
    /// only if remote clients are allowed.
    fn allows(&self, peer: SocketAddr, ours: SocketAddr) -> Result<(), Denied> {
        let owners = local_socket_owners(peer, ours);
        if owners.is_empty() {
            return match self.remote {
                true => Ok(()),
                false => Err(Denied::Remote),
            };
        }
        match owners.iter().find(|&&u| u != 0 && !self.uids.contains(&u)) {
            Some(uid) => Err(Denied::Uid(*uid)),
            None => Ok(()),
        }
    }
}

/// A socket address as /proc/net/tcp{,6} prints it: the address's bytes as native-endian
/// 32-bit hex words, then the port in hex.
fn proc_net_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        bytes.extend_from_slice(&u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// The uids owning the live local TCP sockets whose local end is `peer` and remote end `ours`
/// (normally one; none for a client on another host), from `table`'s lines.
fn owners_in(table: &str, peer: SocketAddr, ours: SocketAddr) -> Vec<u32> {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (peer, ours) = (canon(peer), canon(ours));
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // TIME_WAIT (06), CLOSE (07) and LISTEN (0A) entries are no live client.
            if f.len() < 8 || ["06", "07", "0A"].contains(&f[3]) {
                return None;
            }
            (proc_net_addr(f[1])? == peer && proc_net_addr(f[2])? == ours).then(|| f[7].parse().ok())?
        })
        .collect()
}

fn local_socket_owners(peer: SocketAddr, ours: SocketAddr) -> Vec<u32> {
    let mut owners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            owners.extend(owners_in(&text, peer, ours));
        }
    }
    owners
}

/// Starts what `cfg` asks for. The listener is bound here (a taken port fails the start).
pub fn start(cfg: &MetricsConfig, source: Arc<Source>, stop: Arc<AtomicBool>) -> Result<(), AdminError> {
    if let Some(addr) = cfg.listen {
        let listener = TcpListener::bind(addr).map_err(|error| AdminError::Listen { addr, error })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<(TcpStream, Instant)>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let access = Arc::new(Access { uids: cfg.allow_uids.clone(), remote: !addr.ip().is_loopback() });
        for n in 0..WORKERS {
            let (rx, source, access) = (Arc::clone(&rx), Arc::clone(&source), Arc::clone(&access));
            std::thread::Builder::new()
                .name(format!("metrics-{n}"))
                .spawn(move || handler(&rx, &source, &access))
                .map_err(AdminError::thread("metrics"))?;
        }
        std::thread::Builder::new()
            .name("metrics-accept".into())
            .spawn(move || accept(&listener, &tx))
            .map_err(AdminError::thread("metrics accept"))?;
        tracing::info!(%addr, "metrics served over HTTP at /metrics");
    }
    if let Some(path) = cfg.textfile.clone() {
        write_textfile(&path, &source.exposition())?;
        std::thread::Builder::new()
            .name("metrics-textfile".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() >= TEXTFILE_INTERVAL {
                        if let Err(e) = write_textfile(&path, &source.exposition()) {
                            tracing::warn!(error = %e, "cannot write the metrics textfile");
                        }
                        last = Instant::now();
                    }
                }
            })
            .map_err(AdminError::thread("metrics textfile"))?;
    }
    Ok(())
}

/// Replaces `path` atomically (a temporary file beside it, then rename), so that
/// node_exporter never reads half a file. The temporary file is created anew (`O_EXCL`,
/// `O_NOFOLLOW`: a link planted in a directory others may write is never followed), mode 0644
/// whatever the umask: who may read the figures is decided by the directory.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), AdminError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    write().map_err(AdminError::io(format!("cannot write metrics textfile {}", path.display())))
}

fn accept(listener: &TcpListener, tx: &SyncSender<(TcpStream, Instant)>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => match tx.try_send((stream, Instant::now() + DEADLINE)) {
                Ok(()) => {}
                // Every handler busy and the queue full: the connection is closed unanswered.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            },
            // EMFILE and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn handler(rx: &Mutex<Receiver<(TcpStream, Instant)>>, source: &Source, access: &Access) {
    loop {
        let (stream, deadline) = match rx.lock().recv() {
            Ok(s) => s,
            Err(_) => return,
        };
        let _ = answer(stream, deadline, source, access);
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics { head: bool },
    Index,
    NotFound,
    BadMethod,
    Bad,
}

/// Parses an HTTP request line (the first line of `req`).
fn parse(req: &[u8]) -> Asked {
    let line_end = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
    let Ok(line) = std::str::from_utf8(&req[..line_end]) else { return Asked::Bad };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Asked::Bad;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => return Asked::BadMethod,
        _ => return Asked::Bad,
    };
    match target.split('?').next() {
        Some("/metrics") => Asked::Metrics { head },
        Some("/") => Asked::Index,
        _ => Asked::NotFound,
    }
}

/// Reads one request until `deadline` (counted from the accept: time spent queued counts) and
/// answers it.
fn answer(mut stream: TcpStream, deadline: Instant, source: &Source, access: &Access) -> std::io::Result<()> {
    stream.set_write_timeout(Some(DEADLINE))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // Read until the end of the headers, the size cap, or the deadline (then dropped).
    // Where the blank line may start in what has arrived (bytes before it were searched).
    let mut searched = 0;
    let complete = loop {
        let tail = &req[searched..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        searched = req.len().saturating_sub(3);
        if req.len() >= MAX_REQUEST {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break !req.is_empty(),
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(_) => return Ok(()),
        }
    };
    let (status, body, head) = if !complete {
        ("431 Request Header Fields Too Large", Arc::new("request too large\n".to_string()), false)
    } else {
        match parse(&req) {
            // Asked once the request is complete: the client's socket is live.
            Asked::Metrics { head } => match access.allows(stream.peer_addr()?, stream.local_addr()?) {
                Ok(()) => ("200 OK", source.exposition(), head),
                Err(why) => ("403 Forbidden", Arc::new(format!("{why}\n")), false),
            },
            Asked::Index => ("200 OK", Arc::new("quotafs metrics: /metrics\n".to_string()), false),
            Asked::NotFound => ("404 Not Found", Arc::new("not found; metrics are at /metrics\n".to_string()), false),
            Asked::BadMethod => ("405 Method Not Allowed", Arc::new("only GET and HEAD\n".to_string()), false),
            Asked::Bad => ("400 Bad Request", Arc::new("bad request\n".to_string()), false),
        }
    };
    let content_type = if status.starts_with("200") && body.starts_with('#') {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let header = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Asked::Metrics { head: false });
        assert_eq!(parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Asked::Metrics { head: true });
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n"), Asked::Index);
        assert_eq!(parse(b"GET /etc/passwd HTTP/1.0\r\n\r\n"), Asked::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.0\r\n\r\n"), Asked::BadMethod);
        assert_eq!(parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), Asked::Bad);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Asked::Bad);
        assert_eq!(parse(b"GET  /metrics HTTP/1.0\r\n\r\n"), Asked::Bad);
    }

    #[test]
    fn proc_net_tcp_lines_name_the_socket_owner() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
            1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
            2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
            3: 0100007F:D432 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        let (ours, peer) = ("127.0.0.1:8080".parse().unwrap(), "127.0.0.1:54321".parse().unwrap());
        assert_eq!(owners_in(table, peer, ours), [1000]);
        assert!(owners_in(table, "127.0.0.1:54322".parse().unwrap(), ours).is_empty(), "TIME_WAIT is no client");
        assert!(owners_in(table, "10.0.0.1:54321".parse().unwrap(), ours).is_empty(), "remote");
        let v6 = "sl local remote\n 0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1F90 01 0:0 0:0 0 107 0 5\n";
        let (ours6, peer6) = ("[::1]:8080".parse().unwrap(), "[::1]:54321".parse().unwrap());
        assert_eq!(owners_in(v6, peer6, ours6), [107]);
        let mapped = "sl local remote\n 0: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:1F90 01 0:0 0:0 0 5 0 5\n";
        assert_eq!(owners_in(mapped, peer, ours), [5], "v4-mapped is the same client");
        let access = Access { uids: vec![107], remote: false };
        assert_eq!(access.allows("10.0.0.1:1".parse().unwrap(), ours), Err(Denied::Remote), "loopback listener");
    }
}
