//! Per-backing worker pools (load isolation, docs/design.md §14).
//!
//! The session's threads read requests from /dev/fuse. The front asks the router
//! (`passthrough::router::Router::serving_backing`) which backing serves a request's node. A request for a
//! node of backing 0 is served on that thread; a request for a node of a routed backing is
//! queued to that backing's own pool and the reader goes back to /dev/fuse at once, so a
//! saturated or slow Dropbox disk occupies only its own threads. Replies are sent from whichever thread served
//! the request (a `Reply` is `Send`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Upper bounds (microseconds) of the request-latency histogram's buckets; a last bucket
/// counts the rest.
pub const LATENCY_BOUNDS_US: [u64; 6] = [100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// Counters of one backing's requests.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub queued: AtomicU64,
    pub busy: AtomicU64,
    /// Requests finished, by latency (from arrival to the end of its handling, queueing
    /// included): one bucket per `LATENCY_BOUNDS_US` (not cumulative), then the rest.
    pub latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    /// Total latency of the requests finished, in microseconds.
    pub latency_us: AtomicU64,
}

impl Counters {
    fn finished(&self, since: Instant) {
        let us = since.elapsed().as_micros() as u64;
        let bucket = LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_us.fetch_add(us, Ordering::Relaxed);
    }
}

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    wake: Condvar,
}

/// The pools of one mount: index = backing index. Backing 0 (and every backing, with
/// `shared`) has no pool of its own: its requests run on the session's threads.
pub struct Pools {
    pools: Vec<Option<Arc<Pool>>>,
    counters: Vec<Arc<Counters>>,
    paths: Vec<String>,
}

impl Pools {
    /// `threads` workers for each routed backing (none if `shared`); an error, not a panic,
    /// if a thread cannot be started.
    pub fn new(paths: Vec<String>, threads: usize, shared: bool) -> Result<Arc<Pools>, String> {
        let mut pools = Vec::new();
        let mut counters = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let c = Arc::new(Counters::default());
            if i == 0 || shared {
                pools.push(None);
            } else {
                let pool = Arc::new(Pool { queue: Mutex::new(VecDeque::new()), wake: Condvar::new() });
                for n in 0..threads.max(1) {
                    let (pool, c) = (Arc::clone(&pool), Arc::clone(&c));
                    std::thread::Builder::new()
                        .name(format!("backing{i}-{n}"))
                        .spawn(move || worker(&pool, &c))
                        .map_err(|e| format!("cannot start a worker thread for backing {path}: {e}"))?;
                }
                pools.push(Some(pool));
            }
            counters.push(c);
        }
        Ok(Arc::new(Pools { pools, counters, paths }))
    }

    /// Queues `job` to `backing`'s pool, or runs it here if the backing has none.
    pub fn run(&self, backing: usize, job: impl FnOnce() + Send + 'static) {
        match (self.pools.get(backing), self.counters.get(backing)) {
            (Some(Some(pool)), Some(c)) => {
                c.requests.fetch_add(1, Ordering::Relaxed);
                c.queued.fetch_add(1, Ordering::Relaxed);
                let (since, timed) = (Instant::now(), Arc::clone(c));
                pool.queue.lock().push_back(Box::new(move || {
                    job();
                    timed.finished(since);
                }));
                pool.wake.notify_one();
            }
            _ => self.inline(backing, job),
        }
    }

    /// Runs `job` here, counted as a request of `backing`.
    pub fn inline(&self, backing: usize, job: impl FnOnce()) {
        let c = self.counters.get(backing).or(self.counters.first());
        if let Some(c) = c {
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.busy.fetch_add(1, Ordering::Relaxed);
        }
        let since = Instant::now();
        job();
        if let Some(c) = c {
            c.finished(since);
            c.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// No request queued or in progress, in any pool or inline.
    pub fn idle(&self) -> bool {
        self.counters.iter().all(|c| c.queued.load(Ordering::SeqCst) == 0 && c.busy.load(Ordering::SeqCst) == 0)
    }

    /// Waits (up to `limit`) until no request is queued or in progress in any pool; once the
    /// readers have stopped, that is every request read answered. False if the limit passed.
    pub fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.idle() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Whether requests of `backing` are queued to a pool of its own.
    pub fn offloads(&self, backing: usize) -> bool {
        matches!(self.pools.get(backing), Some(Some(_)))
    }

    /// Each backing's path and counters, by index.
    pub fn backings(&self) -> impl Iterator<Item = (usize, &str, &Counters)> {
        self.paths.iter().zip(&self.counters).enumerate().map(|(i, (p, c))| (i, p.as_str(), &**c))
    }

    /// Per-backing figures for `quotafs status`.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.counters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    serde_json::json!({
                        "index": i,
                        "path": self.paths[i],
                        "own_pool": self.offloads(i),
                        "requests": c.requests.load(Ordering::Relaxed),
                        "queued": c.queued.load(Ordering::Relaxed),
                        "in_progress": c.busy.load(Ordering::Relaxed),
                    })
                })
                .collect(),
        )
    }
}

/// Nice value of routed backings' workers: under CPU contention the main tree's requests go
/// first (a Dropbox client's sync can wait; an interactive `ls` cannot).
const ROUTED_NICE: i32 = 5;

fn worker(pool: &Pool, c: &Counters) {
    if let Err(e) = crate::backing::sys::set_thread_nice(ROUTED_NICE) {
        tracing::warn!(error = %e, "cannot lower a routed backing worker's priority");
    }
    loop {
        let job = {
            let mut q = pool.queue.lock();
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                pool.wake.wait(&mut q);
            }
        };
        // Busy before no longer queued: `wait_idle` never sees the job in neither.
        c.busy.fetch_add(1, Ordering::SeqCst);
        c.queued.fetch_sub(1, Ordering::SeqCst);
        job();
        c.busy.fetch_sub(1, Ordering::Relaxed);
    }
}
