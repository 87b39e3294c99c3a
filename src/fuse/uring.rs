//! FUSE over io_uring (Linux 6.14+; the kernel's Documentation/filesystems/fuse-io-uring.rst,
//! libfuse's lib/fuse_uring.c). After INIT grants `FUSE_OVER_IO_URING`, each ring thread
//! registers a ring entry (a header buffer and a payload buffer) for one CPU queue with a
//! `URING_CMD` on /dev/fuse; the kernel completes that command when it puts a request in the
//! entry, and the answer goes back with `COMMIT_AND_FETCH`, which also re-arms the entry: one
//! `io_uring_enter` per request instead of a read and a write. FORGET, INTERRUPT and
//! notifications still travel over /dev/fuse.
//!
//! Threads and entries. Every thread serving a queue owns an io_uring of its own and serves
//! the requests of its entries inline, as a /dev/fuse reader does; a queue has several such
//! threads and starts another whenever all of them serve (`Queue`), so a request that blocks
//! (a synced log record, a slow backing) holds only its own thread. A request for a routed node goes to that backing's pool (load isolation): the entry
//! travels with the reply, the pool thread commits it on the ring thread's io_uring, and the
//! ring thread registers another entry meanwhile so that it keeps serving (up to
//! `MAX_ENTRIES` per thread; past that it waits for one to come back).
//!
//! Entry layout (`struct fuse_uring_req_header`): 128 bytes for `fuse_in_header` /
//! `fuse_out_header`, 128 for the opcode's fixed arguments, then `fuse_uring_ent_in_out`
//! (flags, commit id, payload size). All `unsafe` of the transport is here: the ring reads
//! the buffers through raw addresses for as long as it lives.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use parking_lot::Mutex;

use super::FuseFront;
use super::channel::Channel;
use super::reply::Reply;
use crate::wire::{Op, abi, decode};

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
const HEADER_LEN: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;
/// Entries one ring thread may hold (registered with the kernel or out with a pool).
const MAX_ENTRIES: usize = 64;
/// Ring threads a CPU queue may grow to (`Queue`); past that, a request issued on a CPU whose
/// threads are all serving waits in the kernel for the first of them to finish.
const MAX_THREADS_PER_QUEUE: usize = 16;

/// Whether the kernel will offer FUSE over io_uring at INIT, and if not, why.
pub fn kernel_offers() -> Result<(), String> {
    const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
    match std::fs::read_to_string(PARAM) {
        Ok(v) if v.trim() == "Y" => Ok(()),
        Ok(_) => Err(format!(
            "the kernel's FUSE over io_uring is off; turn it on with `echo Y > {PARAM}` \
             (or boot with fuse.enable_uring=1)"
        )),
        Err(_) => Err(format!(
            "this kernel has no FUSE over io_uring ({PARAM} is missing; Linux 6.14+ built with CONFIG_FUSE_IO_URING)"
        )),
    }
}

/// The kernel's queues: one per possible CPU (`/sys/devices/system/cpu/possible`, e.g. `0-3`).
pub fn queues() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = text.trim().split(',').filter_map(|r| r.rsplit('-').next().and_then(|n| n.parse::<usize>().ok())).max();
    last.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n + 1)
}

/// One entry's buffers. Their heap addresses are given to the kernel at registration and
/// never change (the boxes move, their contents do not).
pub(super) struct EntryBuf {
    header: Box<[u8; HEADER_LEN]>,
    payload: Box<[u8]>,
    /// The two iovecs of the registration, as (address, length) pairs.
    iov: Box<[u64; 4]>,
}

impl EntryBuf {
    fn new(payload: usize) -> EntryBuf {
        let header = Box::new([0u8; HEADER_LEN]);
        let payload = vec![0u8; payload].into_boxed_slice();
        let iov = Box::new([header.as_ptr() as u64, HEADER_LEN as u64, payload.as_ptr() as u64, payload.len() as u64]);
        EntryBuf { header, payload, iov }
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.header[at..at + 8]);
        u64::from_ne_bytes(b)
    }
}

/// A ring thread's io_uring and its entries, shared with the pool threads that commit
/// entries of routed requests.
struct Ring {
    uring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// Serializes writes to the submission queue (the ring thread and pool threads push).
    sq: Mutex<()>,
    /// Entries by index (the SQE's user data). An entry waiting in the kernel stays here, where
    /// its completion finds it; `None` while its request is served (inline or on a pool), until
    /// the commit puts it back.
    slots: Mutex<Vec<Option<EntryBuf>>>,
    /// Entries registered with the kernel and waiting for a request.
    armed: AtomicUsize,
    dev: RawFd,
    /// Keeps `dev` open for as long as the ring uses it.
    _channel: Arc<Channel>,
    qid: u16,
    payload: usize,
    ring_thread: std::thread::ThreadId,
}

/// The 80-byte command area: `struct fuse_uring_cmd_req` (flags, commit id, queue id).
fn cmd_req(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut c = [0u8; 80];
    c[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    c[16..18].copy_from_slice(&qid.to_ne_bytes());
    c
}

impl Ring {
    /// Queues one SQE; with `submit`, also enters the kernel (a pool thread's commit).
    fn push(&self, sqe: squeue::Entry128, submit: bool) -> io::Result<()> {
        {
            let _g = self.sq.lock();
            // SAFETY: `self.sq` serializes every producer of this submission queue, and the
            // entry's buffers (addresses inside the SQE) live as long as the ring (`slots`).
            let mut sq = unsafe { self.uring.submission_shared() };
            // SAFETY: as above; the SQE refers only to memory owned by `self.slots`.
            if unsafe { sq.push(&sqe) }.is_err() {
                return Err(io::Error::other("io_uring submission queue full"));
            }
            sq.sync();
        }
        if submit {
            self.uring.submitter().submit()?;
        }
        Ok(())
    }

    /// Registers a new entry with the kernel (it then waits for a request).
    fn register(&self) -> io::Result<()> {
        let buf = EntryBuf::new(self.payload);
        let iov = buf.iov.as_ptr() as u64;
        // The buffers stay in the table, where the completion of this command finds them.
        let index = {
            let mut slots = self.slots.lock();
            slots.push(Some(buf));
            slots.len() - 1
        };
        let sqe = opcode::UringCmd80::new(types::Fd(self.dev), CMD_REGISTER)
            .cmd(cmd_req(self.qid, 0))
            .addr(Some(iov))
            .build()
            .user_data(index as u64);
        let sqe = with_len(sqe, 2);
        self.armed.fetch_add(1, Ordering::SeqCst);
        self.push(sqe, false)
    }
}

/// `sqe.len`, which `UringCmd80` has no setter for (FUSE reads the iovec count from it).
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: `Entry128` is `repr(C)`: a 64-byte `io_uring_sqe` and 64 bytes of command;
    // `len` is the u32 at offset 24 of `io_uring_sqe` (include/uapi/linux/io_uring.h), and
    // any bit pattern is a valid `Entry128`.
    unsafe {
        let mut bytes: [u8; 128] = std::mem::transmute(sqe);
        bytes[24..28].copy_from_slice(&len.to_ne_bytes());
        std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes)
    }
}

/// An entry holding a request, with what its answer needs.
pub(super) struct Slot {
    ring: Arc<Ring>,
    index: usize,
    buf: EntryBuf,
    commit_id: u64,
}

impl Slot {
    /// Writes the answer (`msg`: out header and body; `extra`: data after it) into the entry
    /// and commits it, which also makes the entry wait for the next request.
    pub(super) fn commit(mut self, msg: &[u8], extra: &[u8]) {
        let body = &msg[abi::OUT_HEADER_LEN..];
        let size = body.len() + extra.len();
        self.buf.header[..abi::OUT_HEADER_LEN].copy_from_slice(&msg[..abi::OUT_HEADER_LEN]);
        if size <= self.buf.payload.len() {
            self.buf.payload[..body.len()].copy_from_slice(body);
            self.buf.payload[body.len()..size].copy_from_slice(extra);
            self.submit(size);
        } else {
            tracing::error!(size, room = self.buf.payload.len(), "FUSE reply larger than the ring entry");
            self.buf.header[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
            self.submit(0);
        }
    }

    /// Answers request `unique` with the data `read` writes straight into the entry's payload
    /// (at most `size` bytes; it returns the count), or with its error.
    pub(super) fn commit_read(
        mut self,
        unique: u64,
        size: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, crate::backing::Errno>,
    ) {
        let (error, n) = if size > self.buf.payload.len() {
            // The kernel never asks for more than an entry holds; a short answer would read as
            // the end of the file.
            tracing::error!(size, room = self.buf.payload.len(), "FUSE READ larger than the ring entry");
            (-libc::EIO, 0)
        } else {
            // The entry must be committed whatever `read` does: a request left in it would
            // never be answered (a `Reply` dropped unsent answers EIO; this slot is past that).
            let payload = &mut self.buf.payload[..size];
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(payload))) {
                Ok(Ok(n)) => (0, n.min(size)),
                Ok(Err(e)) => (-e.0, 0),
                Err(_) => {
                    tracing::error!(unique, "a READ panicked; answered EIO");
                    (-libc::EIO, 0)
                }
            }
        };
        let header = crate::wire::Out::with_capacity(abi::OUT_HEADER_LEN).finish(unique, error, n);
        self.buf.header[..abi::OUT_HEADER_LEN].copy_from_slice(&header[..abi::OUT_HEADER_LEN]);
        self.submit(n);
    }

    /// Commits the entry, its out header written and `size` bytes of payload, which also makes
    /// it wait for the next request.
    fn submit(self, size: usize) {
        let Slot { ring, index, mut buf, commit_id } = self;
        buf.header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(size as u32).to_ne_bytes());
        ring.slots.lock()[index] = Some(buf);
        let sqe = opcode::UringCmd80::new(types::Fd(ring.dev), CMD_COMMIT_AND_FETCH)
            .cmd(cmd_req(ring.qid, commit_id))
            .build()
            .user_data(index as u64);
        ring.armed.fetch_add(1, Ordering::SeqCst);
        // On the ring thread the next wait submits it; elsewhere (a pool) enter now.
        let elsewhere = std::thread::current().id() != ring.ring_thread;
        if let Err(e) = ring.push(sqe, elsewhere) {
            tracing::error!(error = %e, "cannot commit a FUSE reply on the ring");
        }
    }
}

/// One CPU queue's ring threads. The kernel hands a request issued on CPU `qid` to an entry of
/// that queue that waits for one, and to no other queue: when every entry of the queue holds a
/// request, the next one waits in the kernel until one of them is answered. So a thread that
/// takes a request while no other thread of its queue is waiting starts one more (up to
/// `max`), which registers an entry of its own: a request that blocks (a synced log record, a
/// slow backing) never leaves its CPU without a thread to take the next request.
pub(super) struct Queue {
    front: FuseFront,
    dev: Arc<Channel>,
    qid: u16,
    payload: usize,
    max: usize,
    /// The queue's threads, started or starting.
    threads: AtomicUsize,
    /// Threads in `io_uring_enter`, waiting for a request.
    waiting: AtomicUsize,
}

impl Queue {
    /// Queue `qid` of the connection `dev`, whose threads may grow to `max` (at least
    /// `MAX_THREADS_PER_QUEUE`); `payload`: each entry's payload buffer.
    pub(super) fn new(front: FuseFront, dev: Arc<Channel>, qid: u16, payload: usize, max: usize) -> Arc<Queue> {
        Arc::new(Queue {
            front,
            dev,
            qid,
            payload,
            max: max.max(MAX_THREADS_PER_QUEUE),
            threads: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Starts one more thread for this queue, unless it has `max` already (`Ok(None)`).
    pub(super) fn start(self: &Arc<Self>) -> io::Result<Option<JoinHandle<io::Result<()>>>> {
        let Ok(n) = self.threads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max).then_some(n + 1))
        else {
            return Ok(None);
        };
        let queue = Arc::clone(self);
        match std::thread::Builder::new().name(format!("fuse-ring-{}-{n}", self.qid)).spawn(move || serve(queue)) {
            Ok(h) => Ok(Some(h)),
            Err(e) => {
                self.threads.fetch_sub(1, Ordering::SeqCst);
                Err(io::Error::new(e.kind(), format!("cannot start a FUSE ring thread: {e}")))
            }
        }
    }
}

/// Serves the queue on this thread until the connection ends; then waits for the threads it
/// started.
fn serve(queue: Arc<Queue>) -> io::Result<()> {
    let mut started = Vec::new();
    let mut result = serve_entries(&queue, &mut started);
    for h in started {
        let r = h.join().unwrap_or_else(|_| Err(io::Error::other("a FUSE ring thread panicked")));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

fn serve_entries(queue: &Arc<Queue>, started: &mut Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let (front, qid) = (&queue.front, queue.qid);
    // The queue's requests are issued on CPU `qid`: served there, they need no wake-up of
    // another CPU (libfuse pins its queue threads the same way). Not fatal if refused.
    let mut cpus = nix::sched::CpuSet::new();
    if cpus.set(usize::from(qid)).is_ok()
        && let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)
    {
        tracing::debug!(qid, error = %e, "cannot pin a ring thread to its CPU");
    }
    let uring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .setup_cqsize(2 * MAX_ENTRIES as u32)
        .build(MAX_ENTRIES as u32)?;
    let ring = Arc::new(Ring {
        uring,
        sq: Mutex::new(()),
        slots: Mutex::new(Vec::new()),
        armed: AtomicUsize::new(0),
        dev: std::os::fd::AsFd::as_fd(&*queue.dev).as_raw_fd(),
        _channel: Arc::clone(&queue.dev),
        qid,
        payload: queue.payload,
        ring_thread: std::thread::current().id(),
    });
    ring.register()?;
    loop {
        queue.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = ring.uring.submitter().submit_and_wait(1);
        let was_last = queue.waiting.fetch_sub(1, Ordering::SeqCst) == 1;
        match waited {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: only this thread consumes the completion queue.
        let done: Vec<(u64, i32)> =
            unsafe { ring.uring.completion_shared() }.map(|c| (c.user_data(), c.result())).collect();
        if was_last && done.iter().any(|&(_, res)| res >= 0) {
            match queue.start() {
                Ok(Some(h)) => started.push(h),
                Ok(None) => {}
                Err(e) => tracing::warn!(qid, error = %e, "cannot add a ring thread to a busy queue"),
            }
        }
        for (index, res) in done {
            ring.armed.fetch_sub(1, Ordering::SeqCst);
            if res < 0 {
                return match -res {
                    // The connection is going away (unmount, abort).
                    libc::ENOTCONN | libc::ECANCELED | libc::ENODEV => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
            let Some(buf) = ring.slots.lock().get_mut(index as usize).and_then(Option::take) else {
                return Err(io::Error::other(format!("ring completion for unknown entry {index}")));
            };
            handle_entry(front, &ring, index as usize, buf);
        }
        // Keep one entry waiting on this thread while others are out with pools.
        let held = ring.slots.lock().len();
        if ring.armed.load(Ordering::SeqCst) == 0 && held < MAX_ENTRIES {
            ring.register()?;
        }
    }
}

/// Serves the request in entry `index`, decoding it once. A write of a node served inline
/// reads its data in place; every other request is decoded from a copy of its header,
/// arguments and names (a few hundred bytes on the stack and one small allocation; a routed
/// write's data too), so that the entry can travel with the answer to a pool.
fn handle_entry(front: &FuseFront, ring: &Arc<Ring>, index: usize, buf: EntryBuf) {
    let commit_id = buf.u64_at(ENT_IN_OUT + 8);
    let size = ((buf.u64_at(ENT_IN_OUT + 16) & 0xffff_ffff) as usize).min(buf.payload.len());
    let slot = |buf: EntryBuf| Slot { ring: Arc::clone(ring), index, buf, commit_id };
    let fail = |buf: EntryBuf, e: decode::DecodeError| {
        tracing::error!(error = %e, "undecodable FUSE request on the ring");
        let unique = buf.u64_at(8);
        Reply::ring(unique, slot(buf)).error(libc::EIO);
    };
    let opcode = u32::from_ne_bytes([buf.header[4], buf.header[5], buf.header[6], buf.header[7]]);
    if opcode == abi::op::WRITE && front.serves_inline(buf.u64_at(16)) {
        let (h, op) = match decode::decode_split(
            &buf.header[..abi::IN_HEADER_LEN],
            &buf.header[OP_IN..ENT_IN_OUT],
            &buf.payload[..size],
        ) {
            Ok(r) => r,
            Err(e) => return fail(buf, e),
        };
        match op {
            Op::Write { fh, offset, write_flags, data } => {
                let cached = write_flags & abi::WRITE_CACHE != 0;
                let node = front.view.inward(h.nodeid);
                let r = front.ops.write(fh, offset, data, cached);
                let len = data.len();
                let _writing = front.touched_data(&r, node, offset, len);
                front.reply_write(node, offset, len, cached, r, Reply::ring(h.unique, slot(buf)));
            }
            // The opcode said WRITE; the decoder cannot say otherwise.
            _ => Reply::ring(h.unique, slot(buf)).error(libc::EIO),
        }
        return;
    }
    let mut head = [0u8; abi::IN_HEADER_LEN];
    head.copy_from_slice(&buf.header[..abi::IN_HEADER_LEN]);
    let mut args = [0u8; ENT_IN_OUT - OP_IN];
    args.copy_from_slice(&buf.header[OP_IN..ENT_IN_OUT]);
    let names = buf.payload[..size].to_vec();
    match decode::decode_split(&head, &args, &names) {
        Ok((h, op)) => super::session::dispatch(front, &h, op, || Reply::ring(h.unique, slot(buf))),
        Err(e) => fail(buf, e),
    }
}
