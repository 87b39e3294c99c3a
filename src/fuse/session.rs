//! A FUSE connection served by threads reading /dev/fuse: mount, INIT, then each thread reads
//! a request, decodes it and hands it to the front, until the kernel closes the connection
//! (unmount: ENODEV) or aborts it (ECONNABORTED).
//!
//! Each thread reads its own clone of the device descriptor (`kernel::clone_device`), so the
//! kernel keeps one queue of requests in processing per thread; a request's reply goes to the
//! descriptor it came from, whichever thread (a backing's pool) sends it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::channel::{Channel, ReadEnd};
use super::reply::Reply;
use super::{FuseFront, init, kernel, uring};
use crate::wire::encode::{InitOut, Out};
use crate::wire::{Op, abi, decode, encode};

/// A mounted connection, before and while it is served.
pub struct Session {
    ch: Arc<Channel>,
    mountpoint: PathBuf,
    /// The transport in use once INIT is answered: "uring" or "classic".
    transport: Arc<OnceLock<&'static str>>,
}

/// Sends notifications on a connection (any of its descriptors takes them).
#[derive(Clone)]
pub struct Notifier(Arc<Channel>);

impl Notifier {
    /// Drops the kernel's cached data of `node` in `[offset, offset + len)` (len 0: all) and
    /// its attributes. ENOENT: the kernel holds no such node (any more).
    pub fn inval_inode(&self, node: u64, offset: i64, len: i64) -> io::Result<()> {
        self.0.send(&[&encode::notify_inval_inode(node, offset, len)])
    }
}

/// Unmounts the session's mount point from another thread.
pub struct Unmounter(PathBuf);

impl Unmounter {
    /// Unmounts; a busy mount is detached lazily (open files keep working until closed, and the
    /// session ends after that).
    pub fn unmount(&self) -> io::Result<()> {
        match kernel::unmount(&self.0, false) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::info!("mount busy; detaching it lazily");
                kernel::unmount(&self.0, true)
            }
            r => r,
        }
    }
}

impl Session {
    /// Opens a connection and mounts it on `mountpoint` (`fuse.quotafs`, source `fsname`).
    /// `transport` is set to the transport in use once INIT is answered.
    pub fn mount(mountpoint: &Path, fsname: &str, transport: Arc<OnceLock<&'static str>>) -> io::Result<Session> {
        let dev = kernel::open_device()?;
        kernel::mount(&dev, mountpoint, fsname, "quotafs")?;
        Ok(Session { ch: Arc::new(Channel::new(dev)), mountpoint: mountpoint.to_path_buf(), transport })
    }

    pub fn notifier(&self) -> Notifier {
        Notifier(Arc::clone(&self.ch))
    }

    pub fn unmounter(&self) -> Unmounter {
        Unmounter(self.mountpoint.clone())
    }

    /// Serves the connection on `threads` threads until it closes; answers INIT first.
    ///
    /// Over io_uring, every CPU queue gets `threads / queues` ring threads (at least one), and
    /// one thread keeps reading /dev/fuse for what still travels there (FORGET, INTERRUPT, and
    /// requests sent before every queue has an entry).
    pub fn run(self, front: FuseFront, threads: usize) -> io::Result<()> {
        let bufsize = front.opts.max_write as usize + 2 * abi::MIN_READ_BUFFER;
        let negotiated = self.handshake(&front, bufsize)?;
        front.ops.set_apply_umask(negotiated.flags & abi::init::DONT_MASK != 0);
        let mut workers = Vec::new();
        let over_uring = negotiated.flags & abi::init::OVER_IO_URING != 0;
        let classic_threads = if over_uring {
            let queues = uring::queues();
            let per_queue = (threads / queues).max(1);
            // The kernel copies requests of up to max_write (or max_pages pages) into an entry.
            let payload =
                (negotiated.max_write as usize).max(usize::from(negotiated.max_pages) * 4096).max(abi::MIN_READ_BUFFER);
            for qid in 0..queues {
                for t in 0..per_queue {
                    let (front, ch) = (front.clone(), Arc::clone(&self.ch));
                    workers.push(
                        std::thread::Builder::new()
                            .name(format!("fuse-ring-{qid}-{t}"))
                            .spawn(move || uring::serve(front, ch, qid as u16, payload))
                            .map_err(|e| io::Error::new(e.kind(), format!("cannot start a FUSE ring thread: {e}")))?,
                    );
                }
            }
            tracing::info!(queues, per_queue, payload, "serving FUSE over io_uring");
            let _ = self.transport.set("uring");
            1
        } else {
            if front.opts.transport == crate::config::Transport::Uring {
                let _ = kernel::unmount(&self.mountpoint, true);
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel did not offer FUSE over io_uring at INIT (--transport uring)",
                ));
            }
            tracing::info!(threads, "serving FUSE over /dev/fuse reads");
            let _ = self.transport.set("classic");
            threads
        };
        for i in 1..classic_threads.max(1) {
            let ch = match kernel::clone_device(self.ch.as_ref().as_fd_ref()) {
                Ok(dev) => Arc::new(Channel::new(dev)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot clone the FUSE descriptor; threads share one");
                    Arc::clone(&self.ch)
                }
            };
            let front = front.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("fuse-{i}"))
                    .spawn(move || serve(&front, &ch, bufsize))
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot start a FUSE thread: {e}")))?,
            );
        }
        let mut result = serve(&front, &self.ch, bufsize);
        for w in workers {
            let r = w.join().unwrap_or_else(|_| Err(io::Error::other("a FUSE thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        // A connection that ended without an unmount (aborted) leaves a dead mount behind.
        let _ = kernel::unmount(&self.mountpoint, true);
        result
    }

    /// Reads requests until INIT, answers it, and returns what was agreed.
    fn handshake(&self, front: &FuseFront, bufsize: usize) -> io::Result<InitOut> {
        let mut buf = vec![0u8; bufsize];
        loop {
            let n = self.ch.receive(&mut buf).map_err(|e| match e {
                ReadEnd::Closed(e) | ReadEnd::Failed(e) => e,
            })?;
            let (h, op) = decode(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let Op::Init(kernel) = op else {
                Reply::new(h.unique, Arc::clone(&self.ch)).error(libc::EIO);
                continue;
            };
            match init::negotiate(&kernel, &front.opts) {
                Ok(out) => {
                    let mut o = Out::new();
                    o.init(&out);
                    Reply::new(h.unique, Arc::clone(&self.ch)).body(o);
                    return Ok(out);
                }
                Err(e) => {
                    Reply::new(h.unique, Arc::clone(&self.ch)).error(libc::EPROTO);
                    return Err(io::Error::new(io::ErrorKind::Unsupported, e.0));
                }
            }
        }
    }
}

impl Channel {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// One thread's loop: read, decode, hand to the front; until the connection closes.
fn serve(front: &FuseFront, ch: &Arc<Channel>, bufsize: usize) -> io::Result<()> {
    let mut buf = vec![0u8; bufsize];
    loop {
        let n = match ch.receive(&mut buf) {
            Ok(n) => n,
            Err(ReadEnd::Closed(e)) => {
                tracing::debug!(error = %e, "FUSE connection closed");
                return if e.raw_os_error() == Some(libc::ECONNABORTED) { Err(e) } else { Ok(()) };
            }
            Err(ReadEnd::Failed(e)) => return Err(e),
        };
        let (h, op) = match decode(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "undecodable FUSE request");
                // The unique is the third field; answer it so the caller does not hang.
                if n >= 16 {
                    let unique = u64::from_ne_bytes(buf[8..16].try_into().unwrap_or_default());
                    Reply::new(unique, Arc::clone(ch)).error(libc::EIO);
                }
                continue;
            }
        };
        dispatch(front, &h, op, || Reply::new(h.unique, Arc::clone(ch)));
    }
}

/// Hands a decoded request to the front; `reply` makes its answer (not made for the requests
/// the kernel expects none to).
pub(super) fn dispatch(front: &FuseFront, h: &crate::wire::Header, op: Op<'_>, reply: impl FnOnce() -> Reply) {
    match op {
        Op::Forget { nlookup } => front.forget(h.nodeid, nlookup),
        Op::BatchForget { pairs } => {
            for (node, nlookup) in crate::wire::decode::forget_pairs(pairs) {
                front.forget(node, nlookup);
            }
        }
        // ENOSYS: the kernel stops sending interrupts (requests are not abandoned midway).
        Op::Interrupt { .. } => reply().error(libc::ENOSYS),
        Op::Init(_) => reply().error(libc::EIO),
        op => front.handle(h, op, reply()),
    }
}
