//! The front's state and the helpers its request handlers share: the options, the pools each
//! backing's requests run on (`dispatch`, which asks the router), the invalidation thread, and
//! the conversions between the wire's types and the layer below's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::pool;
use super::reply::Reply;
use super::session::Notifier;
use crate::backing::Errno;
use crate::backing::creds::Caller;
use crate::backing::sys::TimeSpec;
use crate::passthrough::{Entry, Passthrough};
use crate::wire::{Header, abi};

/// Kernel-facing settings.
#[derive(Clone, Debug)]
pub struct FrontOptions {
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    pub max_write: u32,
    pub acl: bool,
    /// Ask for FUSE over io_uring at INIT (`Transport`).
    pub transport: crate::config::Transport,
}

#[derive(Clone)]
pub struct FuseFront {
    pub(super) ops: Arc<Passthrough>,
    pub(super) opts: FrontOptions,
    /// Where each backing's requests run (load isolation).
    pub(super) pools: Arc<pool::Pools>,
    /// Ranges of cached pages to drop, served by the `invalidate` thread (see `write`).
    pub(super) invalidate: std::sync::mpsc::Sender<(u64, i64, i64)>,
    /// Which tree this connection shows (`export`): the whole mount, or one exported tree.
    pub(super) view: super::export::View,
    /// The daemon's connections, when it has export connections (`export`).
    pub(super) fabric: Option<Arc<super::export::Fabric>>,
}

/// Drops the kernel's cached data, attributes and directory listings of every node it holds
/// on backing `index`, after something changed that backing behind the mount's back (the
/// page cache is kept across opens only because every change goes through the mount).
pub fn invalidate_backing(notifier: &Notifier, ops: &Passthrough, index: crate::ids::BackingIndex) {
    let nodes = ops.held_nodes(index);
    let mut failed = 0usize;
    for node in &nodes {
        // offset 0, len 0: the whole file; ENOENT if the kernel has forgotten it meanwhile.
        match notifier.inval_inode(*node, 0, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(_) => failed += 1,
        }
    }
    if failed > 0 {
        tracing::warn!(backing = index.0, failed, "cannot invalidate cached pages after outside writes");
    }
    tracing::debug!(backing = index.0, nodes = nodes.len(), "cached pages invalidated after outside writes");
}

/// Sets the readahead window of the FUSE mount at `mountpoint` (its backing device info in
/// sysfs). The kernel starts a FUSE mount with its default window (128 KiB), and when it
/// takes the INIT reply it cuts the window to at most INIT's max_readahead (which is at most
/// the window it offered): call this after INIT is answered. A window of `kb` lets sequential
/// reads arrive as requests of up to `max_write`. Reads /proc/self/mountinfo rather than stat
/// the mount point: the session is not serving yet, so a stat would wait on ourselves.
pub fn set_read_ahead(mountpoint: &Path, kb: u32) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let want = mountpoint.to_string_lossy();
    let dev = info
        .lines()
        .rev()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        // Ours: a FUSE mount (fields after " - ": type, source) on that path, the newest
        // (last) if a dead one lies below it; not another file system mounted over it.
        .find(|f| {
            f.get(4).map(|m| crate::config::unescape_mountinfo(m)).as_deref() == Some(&*want)
                && f.iter().skip_while(|x| **x != "-").nth(1).is_some_and(|t| t.starts_with("fuse"))
        })
        .and_then(|f| f.get(2).map(|d| d.to_string()))
        .ok_or_else(|| format!("{want} is not in /proc/self/mountinfo"))?;
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    std::fs::write(&path, kb.to_string()).map_err(|e| format!("{path}: {e}"))
}

pub(super) fn caller(h: &Header) -> Caller {
    Caller { uid: h.uid, gid: h.gid, pid: h.pid }
}

/// A SETATTR time: unset, the current time, or the given one.
pub(super) fn time_spec(set: bool, now: bool, (secs, nanos): (i64, u32)) -> Option<TimeSpec> {
    match (set, now) {
        (false, _) => None,
        (true, true) => Some(TimeSpec::Now),
        (true, false) => Some(TimeSpec::At { secs, nanos }),
    }
}

impl FuseFront {
    /// `notifier` is set once the session exists (until then nothing can need invalidating).
    pub fn new(
        ops: Arc<Passthrough>,
        opts: FrontOptions,
        pools: Arc<pool::Pools>,
        notifier: Arc<std::sync::OnceLock<Notifier>>,
    ) -> Result<FuseFront, String> {
        let (invalidate, ranges) = std::sync::mpsc::channel::<(u64, i64, i64)>();
        // Never a FUSE worker: invalidating waits for write-back of the pages, which workers serve.
        std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                while let Ok(first) = ranges.recv() {
                    // Whatever else is queued, merged per node: one invalidation of the span.
                    let mut spans = HashMap::<u64, (i64, i64)>::new();
                    for (node, offset, len) in std::iter::once(first).chain(ranges.try_iter()) {
                        let s = spans.entry(node).or_insert((offset, offset + len));
                        *s = (s.0.min(offset), s.1.max(offset + len));
                    }
                    for (node, (start, end)) in spans {
                        if let Some(n) = notifier.get()
                            && let Err(e) = n.inval_inode(node, start, end - start)
                            && e.raw_os_error() != Some(libc::ENOENT)
                        {
                            tracing::warn!(node, error = %e, "cannot drop refused pages from the page cache");
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the invalidation thread: {e}"))?;
        Ok(FuseFront { ops, opts, pools, invalidate, view: super::export::View::main(), fabric: None })
    }

    /// This front over /dev/fuse reads whatever the main connection uses (export connections:
    /// a few threads each, no ring per CPU).
    pub fn over_dev_fuse(&self) -> FuseFront {
        let mut f = self.clone();
        f.opts.transport = crate::config::Transport::Classic;
        f
    }

    /// This front as connection `view.conn` of `fabric` (the main one: `View::main()`).
    pub fn in_fabric(&self, view: super::export::View, fabric: Arc<super::export::Fabric>) -> FuseFront {
        FuseFront { view, fabric: Some(fabric), ..self.clone() }
    }

    /// Replies to a WRITE. A refused write-back of cached pages (a shared mapping's) also has
    /// those pages dropped once the reply is sent: the kernel keeps them, clean, after a
    /// failed write-back, and readers would see bytes that were never stored.
    pub(super) fn reply_write(
        &self,
        ino: u64,
        offset: u64,
        len: usize,
        cached: bool,
        r: Result<usize, Errno>,
        reply: Reply,
    ) {
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => {
                reply.error(e.0);
                if cached {
                    match &self.fabric {
                        Some(f) if self.view.conn != 0 => f.drop_own(self.view.conn, ino, offset as i64, len as i64),
                        _ => {
                            let _ = self.invalidate.send((ino, offset as i64, len as i64));
                        }
                    }
                }
            }
        }
    }

    /// The backing whose pool serves requests for node `node`, as the router answers.
    pub(super) fn serving_backing(&self, node: u64) -> usize {
        self.ops.router().serving_backing(node).0 as usize
    }

    /// Whether requests for `node` run on the thread that received them (backing 0, or every
    /// backing with a shared pool).
    pub(super) fn serves_inline(&self, node: u64) -> bool {
        !self.pools.offloads(self.serving_backing(node))
    }

    /// Runs a request's work for node `node`: on this thread for backing 0, on its backing's
    /// pool otherwise (then with a clone of the front, which is a few `Arc`s).
    pub(super) fn dispatch(&self, node: u64, job: impl FnOnce(&FuseFront) + Send + 'static) {
        let backing = self.serving_backing(node);
        if self.pools.offloads(backing) {
            let me = self.clone();
            self.pools.run(backing, move || job(&me));
        } else {
            self.pools.inline(backing, || job(self));
        }
    }

    pub(super) fn reply_entry(&self, reply: Reply, r: Result<Entry, Errno>) {
        match r {
            Ok(e) => reply.entry(self.opts.attr_ttl, self.opts.entry_ttl, &self.outward(&e.attr, true), e.generation),
            Err(e) => reply.error(e.0),
        }
    }

    /// How every regular-file open is served (docs/design.md §4): through the page cache,
    /// kept across opens (every change to a file goes through this mount, and the kernel
    /// updates or drops the cached pages it changes); nothing is buffered in the daemon, so
    /// close() needs no FLUSH round trip.
    pub(super) const FOPEN: u32 = abi::fopen::KEEP_CACHE | abi::fopen::NOFLUSH;
}
