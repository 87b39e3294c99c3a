//! Running a mount: state dir and its lock, the layers, the FUSE session, signals.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fuser::{MountOption, Session, SessionACL};

use crate::backing::{creds, cstring, sys};
use crate::config::MountConfig;
use crate::fuse::{FrontOptions, FuseFront};
use crate::ledger::Ledger;
use crate::passthrough::{Options, Passthrough};

/// Checkpoints every `interval`, or sooner when the activity log passes 64 MiB.
fn spawn_checkpointer(ledger: Arc<Ledger>, stop: Arc<AtomicBool>, interval: Duration) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= interval || ledger.log_len() > 64 << 20 {
                    if let Err(e) = ledger.checkpoint() {
                        tracing::error!(error = %e, "checkpoint failed");
                    }
                    last = Instant::now();
                }
            }
        })
        .expect("spawn the checkpoint thread")
}

/// Creates the state dir (0711: tenants may reach `tenant.sock` in it, nothing else is
/// readable) if needed and takes its lock, so two daemons never share one
/// ledger. The returned file holds the lock for the daemon's lifetime.
pub fn lock_state_dir(dir: &Path) -> Result<std::fs::File, String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| format!("cannot create state dir {}: {e}", dir.display()))?;
    // Its sockets are replaced by rename: nobody but root may add or rename entries in it.
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot stat state dir {}: {e}", dir.display()))?;
    if !md.is_dir() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "state dir {} must be a directory owned by root and writable by root only \
             (found uid {}, mode {:o}); fix it with `chown root: {0}; chmod 0711 {0}`",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        ));
    }
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if !sys::try_lock_exclusive(file.as_fd()).map_err(|e| format!("cannot lock {}: {e}", path.display()))? {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(format!(
            "another quotafs daemon (pid {}) is using state dir {}; stop it first or use another --state-dir",
            holder.trim(),
            dir.display()
        ));
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file)
}

/// Mounts and serves until the file system is unmounted (outside `umount`, or SIGINT/SIGTERM,
/// which lazily unmount it). Returns Ok on a clean end.
pub fn run(cfg: &MountConfig) -> Result<(), String> {
    let _lock = lock_state_dir(&cfg.state_dir)?;
    let nofile = sys::raise_nofile_limit();
    if (nofile as usize) < cfg.fd_cache + 1024 {
        tracing::warn!(
            nofile,
            fd_cache = cfg.fd_cache,
            "open-file limit is low for the fd cache; open files may fail with EMFILE"
        );
    }
    creds::init_process().map_err(|e| format!("cannot drop supplementary groups: {e}"))?;

    let (backings, routes) = crate::backing::open_all(&cfg.backing, &cfg.routes)?;
    for (p, b) in &routes.routes {
        tracing::info!(pattern = %p.text, backing = %backings[*b as usize].path.display(), index = b, "route");
    }
    let backings = Arc::new(backings);
    // Recovery (or the first-mount scan) runs to completion before anything is mounted: the
    // mount never serves a request against a ledger that is not exact.
    let ledger =
        Arc::new(Ledger::open(&cfg.state_dir, Arc::clone(&backings), cfg.exempt_uids.iter().copied().collect())?);
    // Routed backings written behind our back: recount now (what changed while we were down),
    // then watch them (below).
    if cfg.watch_routes {
        for b in backings.iter().skip(1) {
            let changed = ledger.rebase_backing(b.index.0, cfg.threads)?;
            tracing::info!(backing = %b.path.display(), subjects = changed.len(), "routed backing recounted");
        }
    }
    let ops = Arc::new(Passthrough::new(
        Arc::clone(&backings),
        Arc::clone(&ledger),
        Options { passthrough: cfg.passthrough, fd_cache: cfg.fd_cache, routes },
    )?);
    // Each routed backing gets a pool of its own (route_threads; fewer threads cap the CPU a
    // storm on it can take in the daemon).
    let pools = crate::fuse::pool::Pools::new(
        backings.iter().map(|b| b.path.display().to_string()).collect(),
        cfg.route_threads,
        cfg.shared_pool,
    );
    crate::admin::serve::start(
        &cfg.state_dir,
        crate::admin::server::Server {
            mountpoint: cfg.mountpoint.clone(),
            ledger: Arc::clone(&ledger),
            ops: Arc::clone(&ops),
            threads: cfg.threads,
            pools: Arc::clone(&pools),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    if cfg.watch_routes {
        for b in backings.iter().skip(1) {
            watchers.push(crate::watch::spawn(Arc::clone(&ledger), b.index.0, cfg.threads, Arc::clone(&stop))?);
        }
    }
    let front = FuseFront::new(
        ops,
        FrontOptions { entry_ttl: cfg.entry_ttl, attr_ttl: cfg.attr_ttl, max_write: cfg.max_write, acl: cfg.acl },
        pools,
    );

    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![
        MountOption::FSName(cfg.backing.display().to_string()),
        MountOption::Subtype("quotafs".into()),
        MountOption::DefaultPermissions,
    ];
    fuse_cfg.acl = SessionACL::All;
    fuse_cfg.n_threads = Some(cfg.threads);
    fuse_cfg.clone_fd = true;

    let mut session = Session::new(front, &cfg.mountpoint, &fuse_cfg)
        .map_err(|e| format!("cannot mount on {}: {e}", cfg.mountpoint.display()))?;
    tracing::info!(
        backing = %cfg.backing.display(),
        mountpoint = %cfg.mountpoint.display(),
        threads = cfg.threads,
        "mounted"
    );

    let mp = cstring(&cfg.mountpoint)?;
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let handle = signals.handle();
    let requested = Arc::new(AtomicBool::new(false));
    let requested_by_signal = Arc::clone(&requested);
    let watcher = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "unmounting on signal");
                requested_by_signal.store(true, Ordering::SeqCst);
                // A busy mount is detached lazily: open files keep working until closed, and
                // the session ends after that.
                if let Err(e) = unmounter.unmount() {
                    tracing::info!(error = %e, "mount busy; detaching it lazily");
                    if let Err(e) = sys::umount_detach(&mp) {
                        tracing::error!(error = %e, "unmount failed");
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    let checkpointer = spawn_checkpointer(Arc::clone(&ledger), Arc::clone(&stop), cfg.checkpoint_interval);

    let result = session.run();
    handle.close();
    let _ = watcher.join();
    stop.store(true, Ordering::SeqCst);
    let _ = checkpointer.join();
    for w in watchers {
        let _ = w.join();
    }
    // A last checkpoint: the next mount then has nothing to replay.
    match ledger.checkpoint() {
        Ok(epoch) => tracing::info!(epoch, "final checkpoint"),
        Err(e) => tracing::error!(error = %e, "final checkpoint failed; the next mount recovers from the log"),
    }
    match result {
        Ok(()) => {}
        // After an unmount the kernel tears the connection down; worker threads blocked in a
        // read may see ECONNABORTED instead of ENODEV (fuser only treats ENODEV as the end).
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            if requested.load(Ordering::SeqCst) {
                tracing::info!("connection closed after unmount");
            } else {
                tracing::warn!("FUSE connection aborted (e.g. through /sys/fs/fuse/connections/*/abort)");
            }
        }
        Err(e) => return Err(format!("FUSE session failed: {e}")),
    }
    crate::admin::serve::remove(&cfg.state_dir);
    tracing::info!("unmounted; exiting");
    Ok(())
}
