//! Running a mount: the layers, the FUSE session, signals; the state dir and its lock in
//! `state_dir`.

mod state_dir;

use state_dir::{check_owner, new_ledger_id, read_ledger_id, write_ledger_id};
pub use state_dir::{lock_state_dir, state_dir_holder};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::admin::metrics::Checkpoints;
use crate::backing::{creds, sys};
use crate::config::MountConfig;
use crate::fuse::{FrontOptions, FuseFront};
use crate::inode::Stripes;
use crate::ledger::error::LedgerError;
use crate::ledger::{Beside, Ledger};
use crate::passthrough::{Options, Passthrough};
use crate::quota::enforce::Enforcer;
use crate::route::Routes;

/// Checkpoints every `interval`, or sooner when the epoch's records pile up
/// (`Ledger::wants_checkpoint`).
fn spawn_checkpointer(
    ledger: Arc<Ledger>,
    checkpoints: Arc<Checkpoints>,
    ops: Arc<Passthrough>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= interval || ledger.wants_checkpoint() {
                    match checkpoints.run(&ledger, ops.beside()) {
                        Ok(_) => {}
                        Err(e @ crate::ledger::LedgerError::Deferred(_)) => tracing::warn!(error = %e, "checkpoint"),
                        Err(e) => tracing::error!(error = %e, "checkpoint failed"),
                    }
                    last = Instant::now();
                }
            }
        })
        .map_err(|e| format!("cannot start the checkpoint thread: {e}"))
}

/// Sends `state` to systemd's notification socket (`$NOTIFY_SOCKET`: a path, or `@name` in
/// the abstract namespace), as sd_notify(3) does; nothing without it. Failures are logged,
/// never fatal: the mount serves whether or not systemd hears of it.
pub fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&target)),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, socket = ?target, "cannot notify systemd");
    }
}

/// Why a mount did not start or ended badly.
#[derive(Debug)]
pub enum RunError {
    /// Refused before anything was created or mounted (bad input; exit 2).
    Refused(String),
    /// Failed at start or while serving (exit 1).
    Failed(String),
}

impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError::Failed(message)
    }
}

impl From<LedgerError> for RunError {
    fn from(e: LedgerError) -> RunError {
        RunError::Failed(e.to_string())
    }
}

impl From<crate::backing::BackingError> for RunError {
    fn from(e: crate::backing::BackingError) -> RunError {
        RunError::Failed(e.to_string())
    }
}

impl From<crate::check::rebase::RebaseError> for RunError {
    fn from(e: crate::check::rebase::RebaseError) -> RunError {
        RunError::Failed(e.to_string())
    }
}

impl From<crate::watch::WatchError> for RunError {
    fn from(e: crate::watch::WatchError) -> RunError {
        RunError::Failed(e.to_string())
    }
}

impl From<crate::admin::AdminError> for RunError {
    fn from(e: crate::admin::AdminError) -> RunError {
        RunError::Failed(e.to_string())
    }
}

/// How long a handover waits for the files opened through this process that the open-file
/// table does not carry over (past its slots) to be closed; opens that arrive meanwhile wait for
/// the next process. Files in the table need no wait: the next process reopens them.
const HANDOVER_DRAIN: Duration = Duration::from_secs(1);

/// Mounts and serves until the file system is unmounted (outside `umount`, or SIGINT/SIGTERM,
/// which lazily unmount it). Returns Ok on a clean end.
pub use crate::config::{SUPERVISED_FDS, SUPERVISED_INIT, SUPERVISED_MOUNTPOINT, SUPERVISED_OPENS};

/// Whether this process serves a connection a supervisor holds.
pub fn supervised() -> bool {
    std::env::var_os(SUPERVISED_FDS).is_some()
}

/// The session: a connection handed over by a supervisor, or a new one mounted here.
fn session(
    cfg: &MountConfig,
    transport: Arc<std::sync::OnceLock<&'static str>>,
) -> Result<crate::fuse::Session, String> {
    let Some(fds) = std::env::var_os(SUPERVISED_FDS) else {
        return crate::fuse::Session::mount(&cfg.mountpoint, &cfg.backing.display().to_string(), transport)
            .map_err(|e| format!("cannot mount on {}: {e}", cfg.mountpoint.display()));
    };
    let fds: Vec<i32> = fds
        .to_string_lossy()
        .split(',')
        .map(|n| n.parse::<i32>().map_err(|_| format!("{SUPERVISED_FDS}={fds:?} is not a list of descriptors")))
        .collect::<Result<_, _>>()?;
    let init = std::env::var_os(SUPERVISED_INIT).map(PathBuf::from).unwrap_or_else(|| cfg.state_dir.join("fuse-init"));
    let devs = crate::fuse::inherited(&fds).map_err(|e| format!("the supervisor's FUSE descriptors: {e}"))?;
    crate::fuse::Session::adopt(devs, &cfg.mountpoint, init, transport)
        .map_err(|e| format!("cannot take over the FUSE connection: {e}"))
}

/// Threads reading each export connection (over /dev/fuse).
const EXPORT_THREADS: usize = 2;

/// Unmounts its mounts when dropped (lazily where busy): the export connections on every way
/// out of `run`, an early error included.
struct UnmountOnDrop(Vec<crate::fuse::Unmounter>);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = u.unmount();
        }
    }
}

pub fn run(cfg: &MountConfig) -> Result<(), RunError> {
    // `--transport uring` on a kernel that will not offer it: refused before anything is done.
    if cfg.transport == crate::config::Transport::Uring {
        crate::fuse::uring_offered().map_err(|e| RunError::Refused(format!("--transport uring: {e}")))?;
    }
    // Which ledger each backing belongs to is settled before anything is created: a refused
    // start writes nothing. Each backing stays locked (flock) for the daemon's lifetime.
    // An existing state dir is locked first (another daemon on it is named as such); a new
    // one is created only once the backings are known to be free.
    let early_lock = match cfg.state_dir.join("lock").exists() {
        true => Some(lock_state_dir(&cfg.state_dir)?),
        false => None,
    };
    let state_name = cfg.state_dir.canonicalize().unwrap_or_else(|_| cfg.state_dir.clone()).display().to_string();
    let known_id = read_ledger_id(&cfg.state_dir)?;
    let backings = crate::backing::open_all_checked(&cfg.backing, &Routes::routed_dirs(&cfg.routes), &|b| {
        check_owner(b, &state_name, known_id.as_deref())
    })
    .map_err(RunError::Refused)?;
    let routes = Routes::over(&cfg.routes, &backings);
    let adopted = match &known_id {
        Some(_) => None,
        None => backings.iter().find_map(|b| b.owner().ok().flatten()).map(|o| o.id),
    };
    let _lock = match early_lock {
        Some(lock) => lock,
        None => lock_state_dir(&cfg.state_dir)?,
    };
    let id = match (known_id, adopted) {
        (Some(id), _) => id,
        (None, Some(id)) => {
            write_ledger_id(&cfg.state_dir, &id)?;
            id
        }
        (None, None) => {
            let id = new_ledger_id()?;
            write_ledger_id(&cfg.state_dir, &id)?;
            id
        }
    };
    let state_name = cfg.state_dir.canonicalize().map_or(state_name, |p| p.display().to_string());
    let owner = crate::backing::Owner { id, state_dir: state_name };
    for b in &backings {
        if b.owner()?.as_ref() != Some(&owner) {
            b.claim(&owner)?;
        }
    }
    let nofile = sys::raise_nofile_limit();
    if (nofile as usize) < cfg.fd_cache + 1024 {
        tracing::warn!(
            nofile,
            fd_cache = cfg.fd_cache,
            "open-file limit is low for the fd cache; open files may fail with EMFILE"
        );
    }
    creds::init_process().map_err(|e| format!("cannot drop supplementary groups: {e}"))?;

    for (p, b) in &routes.routes {
        tracing::info!(pattern = %p.text, backing = %backings[b.as_usize()].path.display(), index = b.0, "route");
    }
    let backings = Arc::new(backings);
    // How far the start is, in the state dir for `quotafs status` until the control socket
    // answers; the walks the daemon runs, in the log every 10 s.
    let reporter = crate::admin::status::Reporter::spawn(&cfg.state_dir, sd_notify)?;
    // Recovery (or the first-mount scan) runs to completion before anything is mounted: the
    // mount never serves a request against a ledger that is not exact.
    sd_notify("STATUS=recovering the ledger (the first mount counts the tree)");
    let ledger = Arc::new(Ledger::open(&cfg.state_dir, Arc::clone(&backings))?);
    // The limits and grace timers in force, as the ledger's store holds them; beside the
    // ledger, with the inode table's stripe locks, for whatever settles a charge.
    let quota = Arc::new(Enforcer::new(
        ledger.store().limits()?,
        ledger.store().grace()?,
        cfg.exempt_uids.iter().copied().collect(),
    ));
    let stripes = Arc::new(Stripes::default());
    // Routed backings written behind our back: recount now (what changed while we were down),
    // then watch them (below).
    if cfg.watch_routes {
        let beside = Beside { stripes: &stripes, quota: &quota };
        for b in backings.iter().skip(1) {
            let changed = crate::check::rebase::rebase_backing(&ledger, beside, b.index, cfg.threads)?;
            tracing::info!(backing = %b.path.display(), subjects = changed.len(), "routed backing recounted");
        }
    }
    let ops = Arc::new(Passthrough::new(
        Arc::clone(&backings),
        Arc::clone(&ledger),
        Arc::clone(&quota),
        stripes,
        Options {
            fd_cache: cfg.fd_cache,
            routes,
            opens_per_uid: cfg.opens_per_uid,
            max_data_fds: (nofile as usize).saturating_sub(cfg.fd_cache + crate::inode::handles::RESERVED_FDS).max(16),
        },
    )?);
    // Each routed backing gets a pool of its own (route_threads; fewer threads cap the CPU a
    // storm on it can take in the daemon).
    let pools = crate::fuse::pool::Pools::new(
        backings.iter().map(|b| b.path.display().to_string()).collect(),
        cfg.route_threads,
        cfg.shared_pool,
    )?;
    let checkpoints = Arc::new(Checkpoints::default());
    let stop = Arc::new(AtomicBool::new(false));
    let notify = match &cfg.notify {
        Some(n) => Some(crate::admin::notify::start(n.clone(), &quota, &ledger, cfg.mountpoint.display().to_string())?),
        None => None,
    };
    // Bound before anything is mounted: a port in use refuses the start.
    crate::admin::metrics::start(
        &cfg.metrics,
        Arc::new(crate::admin::metrics::Source {
            ledger: Arc::clone(&ledger),
            quota: Arc::clone(&quota),
            pools: Arc::clone(&pools),
            checkpoints: Arc::clone(&checkpoints),
            max_subjects: cfg.metrics.max_subjects,
            notify,
            cache: Default::default(),
        }),
        Arc::clone(&stop),
    )?;
    // The export connections' trees (docs/design.md §12.3), found before anything is mounted.
    let exports = match &cfg.exports {
        Some(e) => {
            crate::exports::prepare_dir(&e.dir).map_err(RunError::Refused)?;
            let (trees, skipped) = crate::exports::plan(e, &ops, &ledger);
            for reason in &skipped {
                tracing::warn!(%reason, "not exported");
            }
            trees
        }
        None => Vec::new(),
    };
    let fabric = match exports.is_empty() {
        true => None,
        false => Some(crate::fuse::export::Fabric::new(&exports.iter().map(|t| t.node).collect::<Vec<_>>())?),
    };
    // SIGINT/SIGTERM are caught from before the mount exists: one arriving between the mount
    // and the signal thread waits for that thread, which unmounts (before, the default action
    // killed the daemon and left a dead mount; `sd_notify` caught it now and then).
    // SIGUSR1 (from the supervisor, `quotafs restart`) hands a supervised connection over; it
    // is caught before the control socket answers, which is what the supervisor waits for.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGUSR1,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Which transport the session uses, once INIT is answered (for `status`).
    let transport: Arc<std::sync::OnceLock<&'static str>> = Arc::default();
    crate::admin::serve::start(
        &cfg.state_dir,
        crate::admin::server::Server {
            mountpoint: cfg.mountpoint.clone(),
            ledger: Arc::clone(&ledger),
            ops: Arc::clone(&ops),
            threads: cfg.threads,
            pools: Arc::clone(&pools),
            projects: Default::default(),
            checkpoints: Arc::clone(&checkpoints),
            transport: Arc::clone(&transport),
            exports: serde_json::json!(exports),
        },
    )?;
    reporter.serving();
    let mut watchers = Vec::new();
    // Set once the session exists: outside writes to a watched backing invalidate the
    // kernel's cached pages of its nodes.
    let notifier: Arc<std::sync::OnceLock<crate::fuse::Notifier>> = Arc::default();
    if cfg.watch_routes {
        for b in backings.iter().skip(1) {
            let (held, notifier, index) = (Arc::clone(&ops), Arc::clone(&notifier), b.index);
            let fabric = fabric.clone();
            let changed = Box::new(move || {
                if let Some(n) = notifier.get() {
                    crate::fuse::invalidate_backing(n, &held, index);
                }
                if let Some(f) = &fabric {
                    f.drop_backing(index);
                }
            });
            watchers.push(crate::watch::spawn(
                Arc::clone(&ledger),
                Arc::clone(ops.stripes()),
                Arc::clone(ops.quota()),
                index,
                cfg.threads,
                Arc::clone(&stop),
                changed,
            )?);
        }
    }
    let front = FuseFront::new(
        Arc::clone(&ops),
        FrontOptions {
            entry_ttl: cfg.entry_ttl,
            attr_ttl: cfg.attr_ttl,
            max_write: cfg.max_write,
            acl: cfg.acl,
            // A supervised connection is served over /dev/fuse (docs/design.md §18).
            transport: if supervised() { crate::config::Transport::Classic } else { cfg.transport },
        },
        Arc::clone(&pools),
        Arc::clone(&notifier),
    )?;
    let front = match &fabric {
        Some(f) => front.in_fabric(crate::fuse::export::View::main(), Arc::clone(f)),
        None => front,
    };

    let session = session(cfg, transport)?;
    if let Some(fd) = std::env::var_os(SUPERVISED_OPENS) {
        let table = fd
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .ok_or(crate::backing::Errno(libc::EBADF))
            .and_then(sys::inherited_regular)
            .and_then(crate::inode::open_table::OpenTable::adopt)
            .map_err(|e| format!("the supervisor's open-file table ({SUPERVISED_OPENS}={fd:?}): {e}"))?;
        ops.keep_opens_in(table.0, table.1);
    }
    let handover = session.handover();
    let _ = notifier.set(session.notifier());
    // The export connections, after the main mount (its device number stays what it was
    // without them); a failure unmounts every connection made.
    let mut export_sessions = Vec::new();
    for (i, tree) in exports.iter().enumerate() {
        let made = crate::exports::mount_point(tree).and_then(|()| {
            crate::fuse::Session::mount(&tree.mountpoint, &format!("quotafs:{}", tree.pseudo), Arc::default())
                .map_err(|e| format!("cannot mount export {} on {}: {e}", tree.pseudo, tree.mountpoint.display()))
        });
        match made {
            Ok(s) => {
                if let Some(f) = &fabric {
                    f.set_notifier(i + 1, s.notifier());
                }
                export_sessions.push(s);
            }
            Err(e) => {
                for s in &export_sessions {
                    let _ = s.unmounter().unmount();
                }
                let _ = session.unmounter().unmount();
                return Err(RunError::Failed(format!("{e}; nothing is left mounted")));
            }
        }
    }
    if let Some(f) = &fabric {
        f.set_notifier(0, session.notifier());
    }
    tracing::info!(
        backing = %cfg.backing.display(),
        mountpoint = %cfg.mountpoint.display(),
        threads = cfg.threads,
        "mounted"
    );

    let unmounter = session.unmounter();
    let export_unmounters: Vec<_> = export_sessions.iter().map(|s| s.unmounter()).collect();
    let exports_mounted = UnmountOnDrop(export_sessions.iter().map(|s| s.unmounter()).collect());
    let handle = signals.handle();
    let requested = Arc::new(AtomicBool::new(false));
    let requested_by_signal = Arc::clone(&requested);
    let handing_over = handover.clone();
    let open_files = Arc::clone(&ops);
    let busy = Arc::clone(&pools);
    let watcher = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGUSR1 {
                    match &handing_over {
                        Some(h) => {
                            tracing::info!("handing the connection over to the next serving process");
                            h.start(|| open_files.open_files_not_carried(), || busy.idle(), HANDOVER_DRAIN);
                            break;
                        }
                        None => {
                            tracing::warn!("SIGUSR1 ignored: only a supervised mount (--supervise) hands over");
                            continue;
                        }
                    }
                }
                tracing::info!(signal = sig, "unmounting on signal");
                sd_notify("STOPPING=1");
                requested_by_signal.store(true, Ordering::SeqCst);
                for u in &export_unmounters {
                    if let Err(e) = u.unmount() {
                        tracing::error!(error = %e, "unmounting an export connection failed");
                    }
                }
                // A busy mount is detached lazily: open files keep working until closed, and
                // the session ends after that.
                if let Err(e) = unmounter.unmount() {
                    tracing::error!(error = %e, "unmount failed");
                }
                break;
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    let checkpointer = spawn_checkpointer(
        Arc::clone(&ledger),
        Arc::clone(&checkpoints),
        Arc::clone(&ops),
        Arc::clone(&stop),
        cfg.checkpoint_interval,
    )?;
    let evictor = {
        let (ops, stop) = (Arc::clone(&ops), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("evict".into())
            .spawn(move || ops.run_evictions(&stop))
            .map_err(|e| format!("cannot start the eviction thread: {e}"))?
    };

    // READY=1 once the mount answers: the stat below waits for the kernel's INIT and the
    // root's getattr, which the session's threads serve once `run` starts.
    let ready_at = cfg.mountpoint.clone();
    std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || match std::fs::metadata(&ready_at) {
            Ok(_) => {
                sd_notify("READY=1\nSTATUS=serving");
                tracing::info!("serving");
            }
            Err(e) => tracing::warn!(error = %e, "the mount does not answer; not reporting readiness"),
        })
        .map_err(|e| format!("cannot start the readiness thread: {e}"))?;

    let mut export_threads = Vec::new();
    for ((i, tree), s) in exports.iter().enumerate().zip(export_sessions) {
        let (Some(f), pseudo) = (&fabric, tree.pseudo.clone()) else { break };
        let view = crate::fuse::export::View { conn: i + 1, root: tree.node, scope: Some(tree.scope) };
        let front = front.in_fabric(view, Arc::clone(f)).over_dev_fuse();
        export_threads.push(
            std::thread::Builder::new()
                .name(format!("export-{}", i + 1))
                .spawn(move || match s.run(front, EXPORT_THREADS) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                    Err(e) => tracing::error!(export = %pseudo, error = %e, "export connection failed"),
                })
                .map_err(|e| format!("cannot start an export connection's thread: {e}"))?,
        );
    }
    for tree in &exports {
        tracing::info!(export = %tree.pseudo, mountpoint = %tree.mountpoint.display(), "export connection mounted");
    }

    let result = session.run(front, cfg.threads);
    // The main mount is gone (signal, umount, or a handover): the export connections go with it.
    drop(exports_mounted);
    for t in export_threads {
        let _ = t.join();
    }
    let handed_over = handover.as_ref().is_some_and(|h| h.asked());
    if !handed_over {
        sd_notify("STOPPING=1");
    }
    handle.close();
    let _ = watcher.join();
    stop.store(true, Ordering::SeqCst);
    let _ = checkpointer.join();
    let _ = evictor.join();
    for w in watchers {
        let _ = w.join();
    }
    // A last checkpoint: the next mount then has nothing to replay.
    match checkpoints.run(&ledger, ops.beside()) {
        Ok(epoch) => tracing::info!(epoch, "final checkpoint"),
        Err(e) => tracing::error!(error = %e, "final checkpoint failed; the next mount recovers from the log"),
    }
    match result {
        Ok(()) => {}
        // After an unmount the kernel tears the connection down; worker threads blocked in a
        // read may see ECONNABORTED instead of ENODEV.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            if requested.load(Ordering::SeqCst) {
                tracing::info!("connection closed after unmount");
            } else {
                tracing::warn!("FUSE connection aborted (e.g. through /sys/fs/fuse/connections/*/abort)");
            }
        }
        // A refused INIT (a kernel too old for what was asked): exit status 2, like a bad flag.
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Err(RunError::Refused(e.to_string())),
        Err(e) => return Err(RunError::Failed(format!("FUSE session failed: {e}"))),
    }
    crate::admin::serve::remove(&cfg.state_dir);
    if handed_over {
        tracing::info!("handed over (the mount stays, held by the supervisor); exiting");
    } else {
        tracing::info!("unmounted; exiting");
    }
    Ok(())
}
