//! `quotafs rquotad`: the rquota service (ONC RPC program 100011, versions 1 and 2) that NFS
//! clients' `quota(1)` asks, answered from the running daemon's live ledger.
//!
//! It is a process of its own, as rpc.rquotad is: the daemon that serves the file system
//! stays off the network, and this one reaches it only through the root-only control socket
//! (`Request::Quota`, one subject per call). It listens on one port over UDP and TCP,
//! registers both with the local rpcbind (portmap v2) and unregisters at SIGTERM/SIGINT.
//!
//! Who sees what, as rpc.rquotad: a caller sees its own figures (AUTH_SYS uid for user
//! quotas, whatever the path; its gid or supplementary gids for group quotas, which quotafs
//! does not keep: `Q_NOQUOTA`); root calling from a trusted address (`--trusted`, default
//! loopback) sees anyone's, projects included. A project's figures are also answered to any
//! AUTH_SYS caller whose path is that project's export (`/projects/<name or id>[/...]`, the
//! pseudo paths `quotafs nfs exports` generates, see `exports`): the client asks about the
//! export it mounted. Everything else is `Q_EPERM`. SETQUOTA is `Q_EPERM`: limits are set on
//! the server with `quotafs quota set`.

pub mod exports;
pub mod rpc;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::admin::{ProjectRoot, Request, Response, Row, call};
use rpc::{Answer, Call, Caller, Figures, Query, QuotaType};

/// How many TCP clients are served at once; later ones wait in the listen queue.
const MAX_TCP: usize = 32;
/// A TCP client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(10);

/// Why rquotad did not start (for `Rpcbind`: what it had registered is unregistered again).
#[derive(Debug)]
pub enum RquotaError {
    /// The port (`proto`: "UDP" or "TCP") cannot be bound: in use, or reserved and not root.
    Bind { proto: &'static str, port: u16, error: std::io::Error },
    /// No port is free for both UDP and TCP (with `--port 0`).
    NoPort,
    /// rpcbind on 127.0.0.1:111 could not be reached or refused the registration.
    Rpcbind(String),
    /// The process could not set itself up (signal handlers, threads, the socket's address).
    Setup { what: &'static str, error: std::io::Error },
}

impl std::fmt::Display for RquotaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RquotaError::Bind { proto, port, error } => write!(f, "cannot bind {proto} port {port}: {error}"),
            RquotaError::NoPort => f.write_str("no port free for both UDP and TCP; pick one with --port"),
            RquotaError::Rpcbind(m) => {
                write!(f, "{m}; start rpcbind, or run with --no-register and tell the clients the port")
            }
            RquotaError::Setup { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for RquotaError {}

/// For the CLI, which prints the message (exit status 1).
impl From<RquotaError> for String {
    fn from(e: RquotaError) -> String {
        e.to_string()
    }
}

pub struct Options {
    pub state_dir: PathBuf,
    /// 0: any free port.
    pub port: u16,
    /// Addresses from which root may ask about any subject.
    pub trusted: Vec<IpAddr>,
    /// Register with rpcbind on 127.0.0.1:111.
    pub register: bool,
}

struct Service {
    state_dir: PathBuf,
    trusted: Vec<IpAddr>,
}

impl Service {
    fn permitted(&self, caller: Option<&Caller>, from: IpAddr, q: &Query) -> bool {
        let Some(c) = caller else { return false };
        if c.uid == 0 && self.trusted.contains(&from) {
            return true;
        }
        match q.kind {
            QuotaType::User => c.uid == q.id,
            QuotaType::Group => c.gid == q.id || c.gids.contains(&q.id),
            QuotaType::Project => self.in_export_of(&q.path, q.id),
        }
    }

    /// Whether `path` (a client's mount path) lies in project `id`'s generated export. Asked
    /// of the daemon at each call, about that one project, so names, assignments and clears
    /// show at once and a call costs the same however many projects there are.
    fn in_export_of(&self, path: &str, id: u32) -> bool {
        let Some(leaf) = exports::project_leaf_of(path) else { return false };
        let list = match call(&self.state_dir, &Request::Projects { id: Some(id) }) {
            Ok(Some(Response::Done { message })) => serde_json::from_str::<Vec<ProjectRoot>>(&message).ok(),
            _ => None,
        };
        // Only a project with a top directory has an export.
        list.into_iter()
            .flatten()
            .filter(|p| p.id == id && p.path.is_some())
            .any(|p| exports::project_leaf(p.id, p.name.as_deref()) == leaf)
    }

    fn answer(&self, caller: Option<&Caller>, from: IpAddr, q: &Query) -> Answer {
        if !self.permitted(caller, from, q) {
            return Answer::NotPermitted;
        }
        let kind = match q.kind {
            QuotaType::User => "user",
            QuotaType::Project => "project",
            QuotaType::Group => return Answer::NoQuota,
        };
        match call(&self.state_dir, &Request::Quota { kind: kind.into(), id: q.id }) {
            Ok(Some(Response::Report { rows })) => rows.first().map_or(Answer::NoQuota, |r| Answer::Quota(figures(r))),
            Ok(None) => {
                tracing::warn!(state_dir = %self.state_dir.display(), "no quotafs daemon answers; replying Q_NOQUOTA");
                Answer::NoQuota
            }
            Ok(Some(other)) => {
                tracing::warn!(state_dir = %self.state_dir.display(), reply = ?other, "the daemon did not report; replying Q_NOQUOTA");
                Answer::NoQuota
            }
            Err(e) => {
                tracing::warn!(state_dir = %self.state_dir.display(), error = %e, "cannot ask the daemon; replying Q_NOQUOTA");
                Answer::NoQuota
            }
        }
    }

    /// The reply to one datagram or TCP record; `None`: drop it.
    fn handle(&self, msg: &[u8], from: IpAddr) -> Option<Vec<u8>> {
        if let Some(xid) = rpc::is_null_call(msg) {
            return Some(rpc::reply_null(xid));
        }
        match rpc::decode_call(msg) {
            Ok(Call::Get { xid, caller, query }) => {
                Some(rpc::reply_quota(xid, self.answer(caller.as_ref(), from, &query)))
            }
            Ok(Call::Set { xid }) => Some(rpc::reply_quota(xid, Answer::NotPermitted)),
            Err(e) => rpc::reply_error(&e),
        }
    }
}

fn figures(r: &Row) -> Figures {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let left = |end: Option<u64>| end.map_or(0, |e| u32::try_from(e.saturating_sub(now)).unwrap_or(u32::MAX).max(1));
    Figures {
        bytes_used: r.bytes_used,
        bytes_soft: r.bytes_soft.unwrap_or(0),
        bytes_hard: r.bytes_hard.unwrap_or(0),
        inodes_used: r.inodes_used,
        inodes_soft: r.inodes_soft.unwrap_or(0),
        inodes_hard: r.inodes_hard.unwrap_or(0),
        bytes_grace_left: left(r.grace_expires_unix),
        inodes_grace_left: left(r.inodes_grace_expires_unix),
    }
}

fn serve_udp(svc: Arc<Service>, sock: UdpSocket, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; rpc::MAX_CALL + 1];
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        if let Some(reply) = svc.handle(&buf[..n], from.ip()) {
            let _ = sock.send_to(&reply, from);
        }
    }
}

/// Reads one RPC record (record marking, RFC 5531 §11): fragments up to `MAX_CALL` in all.
fn read_record(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut rec = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        s.read_exact(&mut mark).ok()?;
        let mark = u32::from_be_bytes(mark);
        let len = (mark & 0x7fff_ffff) as usize;
        if rec.len() + len > rpc::MAX_CALL {
            return None;
        }
        let start = rec.len();
        rec.resize(start + len, 0);
        s.read_exact(&mut rec[start..]).ok()?;
        if mark & 0x8000_0000 != 0 {
            return Some(rec);
        }
    }
}

fn serve_tcp_client(svc: &Service, mut s: TcpStream, from: IpAddr) {
    s.set_read_timeout(Some(IDLE)).ok();
    s.set_write_timeout(Some(IDLE)).ok();
    while let Some(msg) = read_record(&mut s) {
        let Some(reply) = svc.handle(&msg, from) else { return };
        let mut out = (0x8000_0000u32 | reply.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

fn serve_tcp(svc: Arc<Service>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(peer) = stream.peer_addr() else { continue };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            busy.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: the client retries, as with a full listen queue
        }
        let (svc, busy2) = (Arc::clone(&svc), Arc::clone(&busy));
        let spawned = std::thread::Builder::new().name("rquota-tcp".into()).spawn(move || {
            serve_tcp_client(&svc, stream, peer.ip());
            busy2.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Portmap v2 SET (1) or UNSET (2) of `PROGRAM`, version `vers`, `proto` (6 TCP, 17 UDP),
/// sent to 127.0.0.1:111 from a reserved port (rpcbind accepts registrations only from
/// loopback and, for these, from privileged ports).
fn portmap(proc_: u32, vers: u32, proto: u32, port: u16) -> Result<bool, RquotaError> {
    let rpcbind = |m: String| RquotaError::Rpcbind(m);
    let sock = (600..1024)
        .find_map(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).ok())
        .ok_or_else(|| rpcbind("no free reserved port to reach rpcbind from".into()))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|error| RquotaError::Setup { what: "cannot set a timeout on the rpcbind socket", error })?;
    let xid = std::process::id() ^ (proc_ << 16) ^ (vers << 8) ^ proto;
    let words = [xid, 0, 2, 100_000, 2, proc_, 0, 0, 0, 0, rpc::PROGRAM, vers, proto, u32::from(port)];
    let msg: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    sock.send_to(&msg, (Ipv4Addr::LOCALHOST, 111)).map_err(|e| rpcbind(format!("send to rpcbind: {e}")))?;
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).map_err(|e| rpcbind(format!("no answer from rpcbind on 127.0.0.1:111 ({e})")))?;
    let w: Vec<u32> = buf[..n].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    // xid, REPLY, MSG_ACCEPTED, verf flavor, verf len, SUCCESS, result
    match w.as_slice() {
        [x, 1, 0, _, 0, 0, r, ..] if *x == xid => Ok(*r != 0),
        _ => Err(rpcbind("rpcbind refused the registration".into())),
    }
}

fn register(port: u16, on: bool) -> Result<(), RquotaError> {
    // UNSET drops a version's registrations for every protocol: all of them first (a stale
    // registration of an earlier run would make SET answer false), then the SETs.
    for vers in rpc::VERSION_LOW..=rpc::VERSION_HIGH {
        let _ = portmap(2, vers, 17, 0);
    }
    if !on {
        return Ok(());
    }
    for vers in rpc::VERSION_LOW..=rpc::VERSION_HIGH {
        for proto in [17, 6] {
            if !portmap(1, vers, proto, port)? {
                return Err(RquotaError::Rpcbind(format!("rpcbind would not register rquota v{vers} on port {port}")));
            }
        }
    }
    Ok(())
}

/// Binds UDP and TCP on one port (any free one for 0).
fn bind(port: u16) -> Result<(UdpSocket, TcpListener), RquotaError> {
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(|error| RquotaError::Bind {
            proto: "UDP",
            port,
            error,
        })?;
        let p = local_port(&udp)?;
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p))) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if port != 0 => return Err(RquotaError::Bind { proto: "TCP", port, error }),
            Err(_) => continue, // that free UDP port is taken for TCP: try another
        }
    }
    Err(RquotaError::NoPort)
}

fn local_port(udp: &UdpSocket) -> Result<u16, RquotaError> {
    udp.local_addr().map(|a| a.port()).map_err(|error| RquotaError::Setup { what: "cannot read the bound port", error })
}

/// Serves until SIGTERM or SIGINT. Prints the port it listens on (for scripts and tests).
pub fn run(opts: Options) -> Result<(), RquotaError> {
    let (udp, tcp) = bind(opts.port)?;
    let port = local_port(&udp)?;
    if opts.register
        && let Err(e) = register(port, true)
    {
        let _ = register(port, false);
        return Err(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let svc = Arc::new(Service { state_dir: opts.state_dir, trusted: opts.trusted });
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|error| RquotaError::Setup { what: "cannot handle signals", error })?;
    }
    {
        let (svc, stop) = (Arc::clone(&svc), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("rquota-udp".into())
            .spawn(move || serve_udp(svc, udp, stop))
            .map_err(|error| RquotaError::Setup { what: "cannot start the UDP thread", error })?;
    }
    {
        let (svc, stop) = (Arc::clone(&svc), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("rquota-tcp-accept".into())
            .spawn(move || serve_tcp(svc, tcp, stop))
            .map_err(|error| RquotaError::Setup { what: "cannot start the TCP thread", error })?;
    }
    tracing::info!(port, "rquotad serving");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "rquotad listening on port {port}");
    let _ = out.flush();
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    if opts.register {
        let _ = register(port, false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpcbind_failure_names_the_way_to_serve_without_it() {
        let e = RquotaError::Rpcbind("rpcbind refused the registration".into());
        assert_eq!(
            e.to_string(),
            "rpcbind refused the registration; start rpcbind, or run with --no-register and tell the clients the port"
        );
    }
}
