//! Serving the daemon's two sockets: binding them so that no one reaches them before their
//! final mode, and answering them from one event-loop thread with bounded resources.
//!
//! * `control.sock` (0600): root only. The peer's uid (`SO_PEERCRED`) is checked on every
//!   connection as well; anyone else gets one error line and is closed. A complete request
//!   runs on a thread of its own (check, repair and project assign take long; the tenant
//!   socket must not wait for them); at most `CONTROL_MAX` control connections exist at once.
//! * `tenant.sock` (0666): `show` for the peer's own uid, answered on the loop thread.
//!
//! Bounds, whatever a local user does: connections in total and per peer uid (one over the
//! cap gets an error line and is closed at once, the daemon never runs out of threads or
//! descriptors); a request line of at most `request_max` bytes (a longer one gets an error
//! reply and the connection closes; nothing more is read); a deadline per connection, from
//! accept to the last byte of the reply (`QUOTAFS_SOCKET_TIMEOUT_MS`, default 10 s): an idle,
//! slow or never-reading client is closed when it passes; replies are written without
//! blocking, so a client that never reads cannot stall the loop.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::AdminError;
use super::Response;
use super::server::Server;
use crate::backing::sys;

/// Tenant connections open at once, all uids together.
pub const TENANT_MAX: usize = 512;
/// Tenant connections open at once per peer uid.
pub const TENANT_PER_UID: usize = 8;
/// Largest tenant request line (`{"op":"show"}` is 13 bytes).
pub const TENANT_REQUEST_MAX: usize = 4096;
/// Control connections open at once (waiting for a request or being answered).
pub const CONTROL_MAX: usize = 16;
/// Largest control request line.
pub const CONTROL_REQUEST_MAX: usize = 64 << 10;
/// Default deadline of a connection, from accept to the end of the reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Overrides `DEFAULT_TIMEOUT` (milliseconds; for tests and operators who need another).
pub const TIMEOUT_ENV: &str = "QUOTAFS_SOCKET_TIMEOUT_MS";
/// Directory (0700, in the state dir) where sockets are bound and given their mode before
/// they are renamed into place.
const PRIVATE_DIR: &str = ".sockets.new";

/// The bounds the loop enforces.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub tenant_max: usize,
    pub tenant_per_uid: usize,
    pub tenant_request_max: usize,
    pub control_max: usize,
    pub control_request_max: usize,
    pub timeout: Duration,
}

impl Policy {
    /// The defaults, with the timeout from `QUOTAFS_SOCKET_TIMEOUT_MS` when set.
    pub fn from_env() -> Result<Policy, AdminError> {
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(AdminError::Env(format!(
                        "{TIMEOUT_ENV}={v:?}: expected a positive number of milliseconds"
                    )));
                }
            },
            Err(_) => DEFAULT_TIMEOUT,
        };
        Ok(Policy {
            tenant_max: TENANT_MAX,
            tenant_per_uid: TENANT_PER_UID,
            tenant_request_max: TENANT_REQUEST_MAX,
            control_max: CONTROL_MAX,
            control_request_max: CONTROL_REQUEST_MAX,
            timeout,
        })
    }
}

/// Binds `name` in `private` (a 0700 directory of root's), gives it `mode`, then renames it to
/// `dir/name` (replacing a stale socket atomically). Until the rename nobody but root can
/// reach it; after it, it has its final mode. The process umask plays no part.
fn listen(private: &Path, dir: &Path, name: &str, mode: u32) -> Result<UnixListener, AdminError> {
    let tmp = private.join(name);
    let path = dir.join(name);
    let l = UnixListener::bind(&tmp).map_err(AdminError::io(format!("cannot bind {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(AdminError::io(format!("chmod {}", tmp.display())))?;
    crate::failpoint::SOCKET_BOUND.hit();
    std::fs::rename(&tmp, &path).map_err(AdminError::io(format!(
        "cannot move {} to {}",
        tmp.display(),
        path.display()
    )))?;
    l.set_nonblocking(true).map_err(AdminError::io(path.display().to_string()))?;
    Ok(l)
}

/// Binds `control.sock` (0600, root only, every request) and `tenant.sock` (0666, `show` only,
/// for the peer's own uid; the state dir is 0711 so tenants can reach it) and serves them
/// for the daemon's lifetime from one thread. Returns the control socket's path.
pub fn start(state_dir: &Path, server: Server) -> Result<PathBuf, AdminError> {
    let policy = Policy::from_env()?;
    let private = state_dir.join(PRIVATE_DIR);
    // Left over from a crash during a start: only root can create it (the state dir is root's
    // and not writable by others); remove_dir_all does not follow a symlink.
    if let Ok(md) = std::fs::symlink_metadata(&private) {
        let removed = if md.is_dir() { std::fs::remove_dir_all(&private) } else { std::fs::remove_file(&private) };
        removed.map_err(AdminError::io(format!("cannot remove {}", private.display())))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(AdminError::io(format!("cannot create {}", private.display())))?;
    let bound = listen(&private, state_dir, super::SOCKET, 0o600)
        .and_then(|c| listen(&private, state_dir, super::TENANT_SOCKET, 0o666).map(|t| (c, t)));
    let _ = std::fs::remove_dir(&private);
    let (control, tenant) = bound?;
    let mut event_loop = Loop {
        server: Arc::new(server),
        control,
        tenant,
        conns: Vec::new(),
        per_uid: HashMap::new(),
        control_busy: Arc::new(AtomicUsize::new(0)),
        policy,
        accept_paused_until: None,
        refused: Refused::default(),
    };
    std::thread::Builder::new()
        .name("sockets".into())
        .spawn(move || event_loop.run())
        .map_err(AdminError::thread("socket"))?;
    Ok(super::socket_path(state_dir))
}

/// Removes both sockets (at a clean exit).
pub fn remove(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(super::SOCKET));
    let _ = std::fs::remove_file(state_dir.join(super::TENANT_SOCKET));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Control,
    Tenant,
}

/// One connection the loop owns.
struct Conn {
    stream: UnixStream,
    kind: Kind,
    uid: u32,
    /// The request so far (never more than the kind's request cap plus one read).
    input: Vec<u8>,
    /// The reply, once there is one; `sent` bytes of it are written.
    output: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
}

/// Refused connections, logged at most once per 10 s whatever their rate (a flood of them
/// must not flood the log).
#[derive(Default)]
struct Refused {
    /// Control connections from non-root peers since the last warning, and the last such uid.
    not_root: u64,
    last_uid: u32,
    /// Connections over a cap since the last warning.
    over_cap: u64,
    last_warning: Option<Instant>,
}

impl Refused {
    fn note(&mut self, not_root: bool, uid: u32) {
        if not_root {
            self.not_root += 1;
            self.last_uid = uid;
        } else {
            self.over_cap += 1;
        }
        if self.last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            if self.not_root > 0 {
                tracing::warn!(
                    connections = self.not_root,
                    last_uid = self.last_uid,
                    "refused control connections from non-root users"
                );
            }
            if self.over_cap > 0 {
                tracing::warn!(connections = self.over_cap, "refused connections over the socket caps");
            }
            *self = Refused { last_warning: Some(Instant::now()), ..Refused::default() };
        }
    }
}

/// What one readiness event led to.
enum Step {
    Keep,
    Close,
    /// A complete control request: hand the connection to a worker.
    Dispatch(Vec<u8>),
}

struct Loop {
    server: Arc<Server>,
    control: UnixListener,
    tenant: UnixListener,
    conns: Vec<Conn>,
    /// Tenant connections per peer uid.
    per_uid: HashMap<u32, usize>,
    /// Control connections handed to worker threads and not finished yet.
    control_busy: Arc<AtomicUsize>,
    policy: Policy,
    /// After accept failed for lack of descriptors: when to try again.
    accept_paused_until: Option<Instant>,
    refused: Refused,
}

/// One JSON line.
pub fn encode(resp: &Response) -> Vec<u8> {
    let mut out =
        serde_json::to_string(resp).unwrap_or_else(|_| r#"{"result":"error","message":"unencodable reply"}"#.into());
    out.push('\n');
    out.into_bytes()
}

fn error_line(message: String) -> Vec<u8> {
    encode(&Response::Error { message })
}

/// One attempt to write `line` without blocking; what does not fit is dropped (the line is
/// for a peer being turned away).
fn say_and_close(stream: UnixStream, line: &[u8]) {
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(line);
}

impl Loop {
    fn run(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            let now = Instant::now();
            self.expire(now);
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
            }
            let listening = self.accept_paused_until.is_none();
            fds.clear();
            for l in [&self.control, &self.tenant] {
                fds.push(libc::pollfd {
                    fd: if listening { l.as_raw_fd() } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            for c in &self.conns {
                let events = if c.output.is_some() { libc::POLLOUT } else { libc::POLLIN };
                fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
            }
            let next = self.conns.iter().map(|c| c.deadline).chain(self.accept_paused_until).min();
            let timeout = next.map_or(-1, |t| {
                let ms = t.saturating_duration_since(now).as_millis() + 1;
                i32::try_from(ms).unwrap_or(i32::MAX)
            });
            match sys::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(crate::backing::Errno(libc::EINTR)) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "poll on the control sockets failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            // Connections first, from the end: `swap_remove` then only moves entries already
            // seen, and the indexes of `fds` still match.
            let polled = fds.len() - 2;
            for i in (0..polled).rev() {
                let revents = fds[i + 2].revents;
                if revents == 0 {
                    continue;
                }
                match self.step(i, revents) {
                    Step::Keep => {}
                    Step::Close => self.close(i),
                    Step::Dispatch(line) => self.dispatch(i, line),
                }
            }
            if fds[0].revents != 0 {
                self.accept(Kind::Control);
            }
            if fds[1].revents != 0 {
                self.accept(Kind::Tenant);
            }
        }
    }

    /// Closes every connection past its deadline.
    fn expire(&mut self, now: Instant) {
        for i in (0..self.conns.len()).rev() {
            if self.conns[i].deadline <= now {
                self.close(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let c = self.conns.swap_remove(i);
        if c.kind == Kind::Tenant
            && let Some(n) = self.per_uid.get_mut(&c.uid)
        {
            *n -= 1;
            if *n == 0 {
                self.per_uid.remove(&c.uid);
            }
        }
    }

    fn count(&self, kind: Kind) -> usize {
        self.conns.iter().filter(|c| c.kind == kind).count()
    }

    /// Accepts what is pending on one listener (at most 256 at a time, so the other listener
    /// and the open connections get their turn).
    fn accept(&mut self, kind: Kind) {
        for _ in 0..256 {
            let listener = if kind == Kind::Control { &self.control } else { &self.tenant };
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE and the like: the pending connection stays queued; try again
                    // shortly instead of spinning on a listener that stays readable.
                    tracing::warn!(error = %e, "cannot accept on a control socket; pausing 100 ms");
                    self.accept_paused_until = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            };
            self.admit(kind, stream);
        }
    }

    fn admit(&mut self, kind: Kind, stream: UnixStream) {
        let uid = match sys::peer_uid(stream.as_fd()) {
            Ok(uid) => uid,
            Err(_) => return,
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let refusal = match kind {
            Kind::Control if uid != 0 => Some(format!(
                "the control socket serves root only (you are uid {uid}); `quotafs quota show` answers any user"
            )),
            Kind::Control
                if self.count(Kind::Control) + self.control_busy.load(Ordering::SeqCst) >= self.policy.control_max =>
            {
                Some(format!("{} control requests are running; retry when one has finished", self.policy.control_max))
            }
            Kind::Tenant if self.per_uid.get(&uid).copied().unwrap_or(0) >= self.policy.tenant_per_uid => {
                Some(format!(
                    "uid {uid} already has {} connections open to quotafs; close one and retry",
                    self.policy.tenant_per_uid
                ))
            }
            Kind::Tenant if self.count(Kind::Tenant) >= self.policy.tenant_max => {
                Some("quotafs is busy (too many connections); retry in a few seconds".to_string())
            }
            _ => None,
        };
        if let Some(message) = refusal {
            self.refused.note(kind == Kind::Control && uid != 0, uid);
            say_and_close(stream, &error_line(message));
            return;
        }
        if kind == Kind::Tenant {
            *self.per_uid.entry(uid).or_default() += 1;
        }
        self.conns.push(Conn {
            stream,
            kind,
            uid,
            input: Vec::new(),
            output: None,
            sent: 0,
            deadline: Instant::now() + self.policy.timeout,
        });
    }

    fn step(&mut self, i: usize, revents: libc::c_short) -> Step {
        if self.conns[i].output.is_some() {
            if revents & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) == 0 {
                return Step::Keep;
            }
            return self.flush(i);
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return Step::Keep;
        }
        let c = &mut self.conns[i];
        let cap = match c.kind {
            Kind::Control => self.policy.control_request_max,
            Kind::Tenant => self.policy.tenant_request_max,
        };
        let line = match read_request(&c.stream, &mut c.input, cap) {
            Read::Pending => return Step::Keep,
            Read::Closed => return Step::Close,
            Read::Line(line) => line,
            Read::TooLong => {
                // The rest is never read.
                c.input = Vec::new();
                c.output = Some(error_line(format!("request longer than {cap} bytes; connection closed")));
                return self.flush(i);
            }
        };
        match c.kind {
            Kind::Control => Step::Dispatch(line),
            Kind::Tenant => {
                let reply = encode(&self.server.tenant_reply(c.uid, &line));
                self.conns[i].output = Some(reply);
                self.flush(i)
            }
        }
    }

    /// Writes as much of connection `i`'s reply as the socket takes now.
    fn flush(&mut self, i: usize) -> Step {
        let c = &mut self.conns[i];
        let Some(out) = &c.output else { return Step::Keep };
        while c.sent < out.len() {
            match (&c.stream).write(&out[c.sent..]) {
                Ok(0) => return Step::Close,
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        Step::Close
    }

    /// Runs a complete control request on a thread of its own, which answers and closes.
    fn dispatch(&mut self, i: usize, line: Vec<u8>) {
        let stream = self.conns.swap_remove(i).stream;
        if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(self.policy.timeout)).is_err() {
            return;
        }
        let server = Arc::clone(&self.server);
        let busy = Arc::clone(&self.control_busy);
        busy.fetch_add(1, Ordering::SeqCst);
        let done = Arc::clone(&busy);
        let spawned = std::thread::Builder::new().name("control-request".into()).spawn(move || {
            let reply = encode(&server.control_reply(&line));
            let _ = (&stream).write_all(&reply);
            done.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            // The connection went with the closure: the client sees it closed.
            busy.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot start a thread for a control request");
        }
    }
}

enum Read {
    Pending,
    Closed,
    Line(Vec<u8>),
    TooLong,
}

/// Reads what `stream` has into `input` until a newline (the line, without it), the peer's
/// end, nothing more for now, or more than `cap` bytes without a newline.
fn read_request(stream: &UnixStream, input: &mut Vec<u8>, cap: usize) -> Read {
    let mut buf = [0u8; 4096];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return Read::Closed,
            Ok(n) => {
                let start = input.len();
                input.extend_from_slice(&buf[..n]);
                if let Some(pos) = input[start..].iter().position(|b| *b == b'\n') {
                    let end = start + pos;
                    if end > cap {
                        return Read::TooLong;
                    }
                    input.truncate(end);
                    return Read::Line(std::mem::take(input));
                }
                if input.len() > cap {
                    return Read::TooLong;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Read::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Read::Closed,
        }
    }
}
