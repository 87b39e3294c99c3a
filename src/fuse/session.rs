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

use super::channel::{Channel, ReadEnd, Stop};
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
    /// Set for a connection handed over by a supervisor (docs/design.md §18).
    adopted: Option<Adopted>,
}

/// A connection made and held by a supervisor: the descriptors to read (the supervisor keeps
/// them open, so requests a dead process had read stay queued to them), and where the INIT
/// agreement is kept for the next process.
struct Adopted {
    readers: Vec<Arc<Channel>>,
    init_file: PathBuf,
    stop: Arc<Stop>,
}

/// Hands a supervised connection over (`quotafs restart`, docs/design.md §18): the readers stop
/// reading, what they read is answered, and `Session::run` returns without unmounting.
#[derive(Clone)]
pub struct Handover(Arc<Stop>);

impl Handover {
    /// Hands over: first, for up to `limit`, opens and creates are left unanswered (the next
    /// process gets them by FUSE_NOTIFY_RESEND) while everything else is served, so that files
    /// opened for a moment are closed before the process goes (`open_files` counts the handles
    /// it holds); then the readers stop.
    /// `idle`: no request queued or running in a backing's pool. An open in progress when the
    /// drain begins is waited for too (it would leave a handle behind).
    pub fn start(&self, open_files: impl Fn() -> usize, idle: impl Fn() -> bool, limit: std::time::Duration) {
        self.0.drain();
        let since = std::time::Instant::now();
        let settled = || self.0.quiet() && idle() && open_files() == 0;
        while !settled() && since.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let left = open_files();
        if left > 0 {
            tracing::warn!(
                open_files = left,
                "files still open at the handover; the next process does not know their handles (EBADF to their holders)"
            );
        }
        self.0.stop();
    }

    /// Whether a handover was asked for.
    pub fn asked(&self) -> bool {
        self.0.asked()
    }
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

    /// Drops the kernel's cached entry `name` in directory `parent` (negative ones too) and
    /// the directory's attributes. ENOENT: the kernel holds no such directory or entry.
    pub fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        self.0.send(&[&encode::notify_inval_entry(parent, name)])
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
        Ok(Session { ch: Arc::new(Channel::new(dev)), mountpoint: mountpoint.to_path_buf(), transport, adopted: None })
    }

    /// Takes over a connection a supervisor mounted on `mountpoint`: `devs` are its
    /// descriptors, one per reader thread (the first also takes notifications); `init_file`
    /// holds the INIT agreement once a first process has made it. A process that finds it
    /// there does not wait for an INIT (the kernel sends none again) and asks the kernel to
    /// send again every request it had sent and not seen answered (FUSE_NOTIFY_RESEND).
    pub fn adopt(
        devs: Vec<std::fs::File>,
        mountpoint: &Path,
        init_file: PathBuf,
        transport: Arc<OnceLock<&'static str>>,
    ) -> io::Result<Session> {
        let stop = Arc::new(Stop::new()?);
        let readers: Vec<Arc<Channel>> = devs
            .into_iter()
            .map(|d| Channel::stoppable(d, Arc::clone(&stop)).map(Arc::new))
            .collect::<io::Result<_>>()?;
        let ch = readers
            .first()
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no FUSE descriptor handed over"))?;
        Ok(Session {
            ch,
            mountpoint: mountpoint.to_path_buf(),
            transport,
            adopted: Some(Adopted { readers, init_file, stop }),
        })
    }

    /// How to hand this connection over; None for a connection this process mounted itself.
    pub fn handover(&self) -> Option<Handover> {
        self.adopted.as_ref().map(|a| Handover(Arc::clone(&a.stop)))
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
        let negotiated = match &self.adopted {
            None => self.handshake(&front, bufsize)?,
            Some(a) => match std::fs::read_to_string(&a.init_file).ok().and_then(|t| InitOut::parse(&t)) {
                Some(agreed) => {
                    // What the dead process had read and not answered is queued again.
                    if let Err(e) = self.ch.send(&[&encode::notify_resend()]) {
                        tracing::warn!(error = %e, "cannot ask the kernel to resend pending requests");
                    }
                    front.ops.set_adopted();
                    tracing::info!("took over a FUSE connection; pending requests resent");
                    agreed
                }
                None => {
                    // A process before this one may have read the INIT and died before it
                    // answered (it is then on a kept descriptor's processing list): queued
                    // again, it reaches this handshake like a first INIT.
                    if let Err(e) = self.ch.send(&[&encode::notify_resend()]) {
                        tracing::warn!(error = %e, "cannot ask the kernel to resend a pending INIT");
                    }
                    let agreed = self.handshake(&front, bufsize)?;
                    save_init(&a.init_file, &agreed)?;
                    agreed
                }
            },
        };
        front.ops.set_apply_umask(negotiated.flags & abi::init::DONT_MASK != 0);
        // Only now: the kernel sets the mount's window to the lesser of its current one and
        // INIT's max_readahead when it takes the INIT reply, so a window widened before that
        // was cut back to its default of 128 KiB.
        if let Err(e) = super::set_read_ahead(&self.mountpoint, negotiated.max_write / 1024) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "cannot widen the mount's readahead; sequential reads use the kernel's default");
        }
        let mut workers = Vec::new();
        let over_uring = negotiated.flags & abi::init::OVER_IO_URING != 0;
        let classic_threads = if over_uring {
            let queues = uring::queues();
            let per_queue = (threads / queues).max(1);
            // The kernel copies requests of up to max_write (or max_pages pages) into an entry.
            let payload =
                (negotiated.max_write as usize).max(usize::from(negotiated.max_pages) * 4096).max(abi::MIN_READ_BUFFER);
            for qid in 0..queues {
                let queue = uring::Queue::new(front.clone(), Arc::clone(&self.ch), qid as u16, payload, per_queue);
                for _ in 0..per_queue {
                    workers.extend(queue.start()?);
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
        let handed: Vec<Arc<Channel>> = self.adopted.as_ref().map(|a| a.readers.clone()).unwrap_or_default();
        for i in 1..classic_threads.max(1).max(handed.len()) {
            let cloned = match handed.get(i) {
                // A supervisor's descriptor: it outlives this process.
                Some(ch) => Ok(Arc::clone(ch)),
                None if !handed.is_empty() => break,
                None => {
                    kernel::clone_device(std::os::fd::AsFd::as_fd(&*self.ch)).map(|dev| Arc::new(Channel::new(dev)))
                }
            };
            let ch = match cloned {
                Ok(ch) => ch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot clone the FUSE descriptor; threads share one");
                    Arc::clone(&self.ch)
                }
            };
            let front = front.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("fuse-{i}"))
                    .spawn(move || serve(&front, &ch, bufsize, std::time::Duration::ZERO))
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot start a FUSE thread: {e}")))?,
            );
        }
        // Over io_uring this thread reads only what still travels on /dev/fuse: mostly FORGETs.
        let pause = if over_uring { FORGET_PAUSE } else { std::time::Duration::ZERO };
        let mut result = serve(&front, &self.ch, bufsize, pause);
        for w in workers {
            let r = w.join().unwrap_or_else(|_| Err(io::Error::other("a FUSE thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        if let Some(a) = &self.adopted
            && a.stop.asked()
        {
            // Requests queued to a backing's pool are answered before the process goes; any
            // left after the wait are resent to the next process by the kernel.
            if !front.pools.wait_idle(std::time::Duration::from_secs(30)) {
                tracing::warn!("requests still in progress after 30 s; the next process gets them again");
            }
            tracing::info!("stopped reading the FUSE connection and answered what was read; handing it over");
        }
        // A connection that ended without an unmount (aborted) leaves a dead mount behind.
        // (A supervisor's connection ends only by an unmount: the supervisor holds it.)
        if self.adopted.is_none() {
            let _ = kernel::unmount(&self.mountpoint, true);
        }
        result
    }

    /// Reads requests until INIT, answers it, and returns what was agreed.
    fn handshake(&self, front: &FuseFront, bufsize: usize) -> io::Result<InitOut> {
        let mut buf = vec![0u8; bufsize];
        loop {
            let n = self.ch.receive(&mut buf).map_err(|e| match e {
                ReadEnd::Closed(e) | ReadEnd::Failed(e) => e,
                ReadEnd::Stopped => io::Error::new(io::ErrorKind::Interrupted, "handed over before INIT"),
            })?;
            let (h, op) = decode(&buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let Op::Init(kernel) = op else {
                Reply::new(h.unique, Arc::clone(&self.ch)).error(libc::EIO);
                continue;
            };
            crate::failpoint::INIT_REPLY.hold();
            let resend = kernel.flags & abi::init::HAS_RESEND != 0 && crate::failpoint::INIT_NO_RESEND.check().is_ok();
            if self.adopted.is_some() && !resend {
                // Without it, requests a dead serving process had read are lost: their callers
                // would wait forever. Refused before anything is served.
                Reply::new(h.unique, Arc::clone(&self.ch)).error(libc::EPROTO);
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "--supervise needs FUSE_HAS_RESEND (Linux 6.9 or later) and this kernel did not offer it at \
                     INIT; mount without --supervise, or on a newer kernel",
                ));
            }
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

/// How long the /dev/fuse reader of an io_uring connection waits after a FORGET before it
/// reads again. The kernel queues the FORGETs of that time and hands them over in one
/// BATCH_FORGET: an `rm -rf` then wakes this thread once per batch, not once per file (a
/// forget only lets go of a node the kernel no longer uses, so its lateness costs nothing).
const FORGET_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// One thread's loop: read, decode, hand to the front; until the connection closes. After a
/// FORGET it waits `forget_pause` before the next read (zero: reads at once).
fn serve(front: &FuseFront, ch: &Arc<Channel>, bufsize: usize, forget_pause: std::time::Duration) -> io::Result<()> {
    let mut buf = vec![0u8; bufsize];
    loop {
        let n = match ch.receive(&mut buf) {
            Ok(n) => n,
            Err(ReadEnd::Closed(e)) => {
                tracing::debug!(error = %e, "FUSE connection closed");
                return if e.raw_os_error() == Some(libc::ECONNABORTED) { Err(e) } else { Ok(()) };
            }
            Err(ReadEnd::Failed(e)) => return Err(e),
            Err(ReadEnd::Stopped) => return Ok(()),
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
        let forget = op.is_forget();
        if ch.enter() && matches!(op, Op::Open { .. } | Op::Create { .. }) {
            // Handing over: left on the supervisor's descriptor, resent to the next process.
            ch.leave();
            continue;
        }
        dispatch(front, &h, op, || Reply::new(h.unique, Arc::clone(ch)));
        ch.leave();
        if forget && !forget_pause.is_zero() {
            std::thread::sleep(forget_pause);
        }
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

/// Keeps the INIT agreement for the next process (written whole, then renamed into place).
fn save_init(path: &Path, agreed: &InitOut) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, agreed.to_text())?;
    std::fs::rename(&tmp, path)
}

/// Answers every request of the connection EIO until it is unmounted: what a supervisor does
/// once its serving processes keep dying (docs/design.md §18), so that callers get an error
/// instead of waiting. Requests a dead process had read are asked for again first.
pub fn refuse_all(dev: std::fs::File) -> io::Result<()> {
    // A serving process may have left the descriptor non-blocking.
    kernel::set_nonblocking(std::os::fd::AsFd::as_fd(&dev), false)?;
    let ch = Arc::new(Channel::new(dev));
    let _ = ch.send(&[&encode::notify_resend()]);
    let mut buf = vec![0u8; (16 << 20) + 2 * abi::MIN_READ_BUFFER];
    loop {
        let n = match ch.receive(&mut buf) {
            Ok(n) => n,
            Err(ReadEnd::Closed(_) | ReadEnd::Stopped) => return Ok(()),
            Err(ReadEnd::Failed(e)) => return Err(e),
        };
        match decode(&buf[..n]) {
            Ok((_, op)) if op.is_forget() => {}
            Ok((h, Op::Interrupt { .. })) => Reply::new(h.unique, Arc::clone(&ch)).error(libc::ENOSYS),
            Ok((h, _)) => Reply::new(h.unique, Arc::clone(&ch)).error(libc::EIO),
            Err(_) if n >= 16 => {
                let unique = u64::from_ne_bytes(buf[8..16].try_into().unwrap_or_default());
                Reply::new(unique, Arc::clone(&ch)).error(libc::EIO);
            }
            Err(_) => {}
        }
    }
}
