//! One descriptor of a FUSE connection: read a request, write a reply or a notification.
//! /dev/fuse takes each message in one write (header and body gathered with writev) and
//! returns one request per read.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

pub struct Channel {
    dev: File,
}

/// How a read of the device ended when it returned no request.
pub enum ReadEnd {
    /// The connection is gone (unmounted: ENODEV; aborted: ECONNABORTED).
    Closed(io::Error),
    /// Anything else: a real error.
    Failed(io::Error),
}

impl Channel {
    pub fn new(dev: File) -> Channel {
        Channel { dev }
    }

    /// Reads the next request into `buf`; retries the reads the kernel interrupts.
    pub fn receive(&self, buf: &mut [u8]) -> Result<usize, ReadEnd> {
        loop {
            match (&self.dev).read(buf) {
                Ok(n) => return Ok(n),
                Err(e) => match e.raw_os_error() {
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
