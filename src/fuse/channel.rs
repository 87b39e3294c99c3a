//! One descriptor of a FUSE connection: read a request, write a reply or a notification.
//! /dev/fuse takes each message in one write (header and body gathered with writev) and
//! returns one request per read.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Channel {
    dev: File,
    /// For a connection handed over by a supervisor: the read end of a socket pair that, once
    /// readable, makes `receive` return `ReadEnd::Stopped` instead of waiting for a request
    /// (the device is then non-blocking, and an idle reader waits in poll on both).
    stop: Option<Arc<Stop>>,
}

/// Tells the readers of a handed-over connection to stop reading: a flag checked before every
/// read, and a socket pair that wakes the readers waiting for a request.
pub struct Stop {
    /// Handing over has begun: opens are left to the next process (`Handover`).
    draining: AtomicBool,
    /// Requests read and not yet handed to the front (or to a backing's pool).
    inflight: AtomicUsize,
    asked: AtomicBool,
    wake: UnixStream,
    waker: UnixStream,
}

impl Stop {
    pub fn new() -> io::Result<Stop> {
        let (wake, waker) = UnixStream::pair()?;
        Ok(Stop {
            draining: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
            wake,
            waker,
        })
    }

    /// Every reader returns `ReadEnd::Stopped` at its next read (or at once, if waiting).
    pub fn stop(&self) {
        self.asked.store(true, Ordering::SeqCst);
        let _ = (&self.waker).write(&[1]);
    }

    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// No request is between its read and the end of its dispatch.
    pub fn quiet(&self) -> bool {
        self.inflight.load(Ordering::SeqCst) == 0
    }
}

/// How a read of the device ended when it returned no request.
pub enum ReadEnd {
    /// The connection is gone (unmounted: ENODEV; aborted: ECONNABORTED).
    Closed(io::Error),
    /// Anything else: a real error.
    Failed(io::Error),
    /// The handover was asked for: the process hands the connection over (design §18).
    Stopped,
}

impl Channel {
    pub fn new(dev: File) -> Channel {
        Channel { dev, stop: None }
    }

    /// A channel whose reads end when `stop` becomes readable; makes `dev` non-blocking.
    pub fn stoppable(dev: File, stop: Arc<Stop>) -> io::Result<Channel> {
        super::kernel::set_nonblocking(dev.as_fd(), true)?;
        Ok(Channel { dev, stop: Some(stop) })
    }

    /// A request was read: counted until `leave`. Returns whether the connection is being
    /// handed over (then its opens are left unanswered). Counted before the drain flag is
    /// read, so a drain that sees no request in flight sees every later one withheld.
    pub fn enter(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| {
            s.inflight.fetch_add(1, Ordering::SeqCst);
            s.draining()
        })
    }

    /// The request `enter` counted is answered, withheld, or queued to a pool.
    pub fn leave(&self) {
        if let Some(s) = &self.stop {
            s.inflight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Reads the next request into `buf`; retries the reads the kernel interrupts.
    pub fn receive(&self, buf: &mut [u8]) -> Result<usize, ReadEnd> {
        loop {
            if self.stop.as_ref().is_some_and(|s| s.asked()) {
                return Err(ReadEnd::Stopped);
            }
            match (&self.dev).read(buf) {
                Ok(n) => return Ok(n),
                Err(e) => match e.raw_os_error() {
                    // Nothing queued on a stoppable (non-blocking) channel: wait for a request
                    // or the stop.
                    Some(libc::EAGAIN) if self.stop.is_some() => {
                        if let Some(stop) = self.stop.as_deref().map(|s| s.wake.as_fd()) {
                            match super::kernel::wait_readable(self.dev.as_fd(), stop) {
                                Ok(true) => continue,
                                Ok(false) => return Err(ReadEnd::Stopped),
                                Err(e) => return Err(ReadEnd::Failed(e)),
                            }
                        }
                    }
                    // Interrupted by a signal, or the request was interrupted before we read it.
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                    Some(libc::ENODEV) | Some(libc::ECONNABORTED) => return Err(ReadEnd::Closed(e)),
                    _ => return Err(ReadEnd::Failed(e)),
                },
            }
        }
    }

    /// Writes one message. ENOENT (the request was interrupted and is gone) is not an error
    /// the caller can act on; it is returned for the caller to ignore.
    pub fn send(&self, parts: &[&[u8]]) -> io::Result<()> {
        let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let n = (&self.dev).write_vectored(&iov)?;
        if n != total {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write to /dev/fuse: {n} of {total}")));
        }
        Ok(())
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }
}
