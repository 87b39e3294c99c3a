//! `quotafs mount --supervise`: a supervisor that holds the FUSE connection, so the mount
//! outlives the process that serves it (docs/design.md §18, issue #19).
//!
//! The supervisor opens /dev/fuse, mounts it, makes one descriptor per reader thread and keeps
//! them all; it then starts the serving process (this binary, same arguments) with those
//! descriptors inherited (`QUOTAFS_SUPERVISED_FDS`). The kernel keeps a connection while any of
//! its descriptors is open, and a request read by a process that dies stays queued to the
//! supervisor's descriptor it came from, so the next serving process takes over: it reads the
//! INIT agreement the first one kept (`QUOTAFS_SUPERVISED_INIT`), asks the kernel to resend
//! what was pending, resolves node ids the kernel still holds from the ids themselves, and
//! recovers the ledger as after kill -9. It serves over /dev/fuse (`classic`).
//!
//! * SIGTERM/SIGINT to the supervisor go to the serving process, which unmounts (as without a
//!   supervisor); its clean exit ends the supervisor. An unmount ends both the same way.
//! * A serving process that dies is replaced; one that dies `restart_limit` times within its
//!   window (default 5 in 60 s) leaves the supervisor answering every request EIO (logged
//!   why) until the mount is unmounted, instead of restarting forever.
//! * A serving process that exits before it ever answered INIT (a refused start: bad config, a
//!   damaged ledger, a kernel without FUSE_HAS_RESEND) ends the supervisor with its exit
//!   status, the mount removed. One killed by a signal before it answered INIT is replaced; the
//!   next one asks the kernel to resend the INIT and answers it.
//! * The supervisor also holds the open-file table (a memfd, `inode::open_table`), so that
//!   files opened before a death are reopened by the next process on their next use.
//!
//! Not recovered by the next process: the data of files unlinked while open (ESTALE to their
//! holders; recovery settles their charge); docs/design.md §18 says why and what would.

use std::collections::VecDeque;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::config::MountConfig;
use crate::daemon::{RunError, SUPERVISED_FDS, SUPERVISED_INIT, SUPERVISED_MOUNTPOINT, SUPERVISED_OPENS};

pub fn run(cfg: &MountConfig) -> Result<(), RunError> {
    if cfg.transport == crate::config::Transport::Uring {
        return Err(RunError::Refused(
            "--supervise serves over /dev/fuse (io_uring requests in flight are not resent to a new process); \
             use --transport auto or classic with it"
                .into(),
        ));
    }
    let exe = std::env::current_exe().map_err(|e| RunError::Failed(format!("cannot find this program's path: {e}")))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let init_file = cfg.state_dir.join("fuse-init");
    if !cfg.state_dir.is_dir() {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| RunError::Failed(format!("cannot create the state dir {}: {e}", cfg.state_dir.display())))?;
    }
    // A new connection: an agreement left by an earlier one does not hold for it.
    let _ = std::fs::remove_file(&init_file);

    let devs = crate::fuse::open_connection(&cfg.mountpoint, &cfg.backing.display().to_string(), cfg.threads)
        .map_err(|e| RunError::Failed(format!("cannot mount on {}: {e}", cfg.mountpoint.display())))?;
    crate::fuse::keep_across_exec(&devs).map_err(|e| RunError::Failed(format!("FUSE descriptors: {e}")))?;
    // The open-file table: one per connection, kept here so that it outlives every serving
    // process (docs/design.md §18).
    let opens = crate::inode::open_table::create()
        .map_err(|e| RunError::Failed(format!("cannot create the open-file table (a memfd): {e}")))?;
    let opens_fd = std::os::fd::AsRawFd::as_raw_fd(&opens).to_string();
    let fds = devs.iter().map(|d| std::os::fd::AsRawFd::as_raw_fd(d).to_string()).collect::<Vec<_>>().join(",");
    tracing::info!(mountpoint = %cfg.mountpoint.display(), readers = devs.len(), "supervising the mount");

    // Signals go to the serving process of the moment.
    let child_pid = Arc::new(AtomicI32::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| RunError::Failed(format!("cannot install signal handlers: {e}")))?;
    {
        let (child_pid, stopping) = (Arc::clone(&child_pid), Arc::clone(&stopping));
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    stopping.store(true, Ordering::SeqCst);
                    let pid = child_pid.load(Ordering::SeqCst);
                    if pid > 0 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::try_from(sig).unwrap_or(nix::sys::signal::Signal::SIGTERM),
                        );
                    }
                }
            })
            .map_err(|e| RunError::Failed(format!("cannot start the signal thread: {e}")))?;
    }

    let mut deaths: VecDeque<Instant> = VecDeque::new();
    loop {
        let mut child = Command::new(&exe)
            .args(&args)
            .env(SUPERVISED_FDS, &fds)
            .env(SUPERVISED_INIT, &init_file)
            .env(SUPERVISED_MOUNTPOINT, &cfg.mountpoint)
            .env(SUPERVISED_OPENS, &opens_fd)
            .spawn()
            .map_err(|e| RunError::Failed(format!("cannot start the serving process {}: {e}", exe.display())))?;
        child_pid.store(child.id() as i32, Ordering::SeqCst);
        let status = child.wait().map_err(|e| RunError::Failed(format!("waiting for the serving process: {e}")))?;
        child_pid.store(0, Ordering::SeqCst);
        if status.success() {
            tracing::info!("the serving process ended cleanly; exiting");
            return Ok(());
        }
        if !init_file.exists() && std::os::unix::process::ExitStatusExt::signal(&status).is_none() {
            // It ended before it ever served: a refused start (bad config, a damaged ledger).
            // Nothing to keep the mount for. (One killed by a signal before it answered INIT is
            // a death like any other: the next process answers the INIT, resent.)
            let _ = crate::fuse::detach(&cfg.mountpoint);
            return Err(exit_error(status, "the serving process did not start"));
        }
        if stopping.load(Ordering::SeqCst) {
            let _ = crate::fuse::detach(&cfg.mountpoint);
            return Err(exit_error(status, "the serving process did not stop cleanly"));
        }
        let now = Instant::now();
        deaths.push_back(now);
        let limit = cfg.restart_limit;
        while deaths.front().is_some_and(|t| now.duration_since(*t) > limit.window) {
            deaths.pop_front();
        }
        if deaths.len() >= limit.deaths {
            tracing::error!(
                deaths = deaths.len(),
                window_secs = limit.window.as_secs(),
                last = %status,
                "the serving process keeps dying; answering every request EIO until the mount is unmounted \
                 (see the log above for why it died; fix that, then umount and mount again)"
            );
            // Every descriptor stays open: one released would end the requests queued to it
            // with ECONNABORTED; the resend moves them to where `refuse_all` reads.
            let mut devs = devs;
            let first = devs.remove(0);
            let _kept = devs;
            return match crate::fuse::refuse_all(first) {
                Ok(()) => Err(RunError::Failed(
                    "the serving process kept dying; the mount answered EIO until unmounted".into(),
                )),
                Err(e) => Err(RunError::Failed(format!("the serving process kept dying, then: {e}"))),
            };
        }
        tracing::error!(%status, deaths = deaths.len(), "the serving process died; starting another (the mount stays)");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exit_error(status: ExitStatus, what: &str) -> RunError {
    match status.code() {
        Some(2) => RunError::Refused(format!("{what} (exit status 2; its message is above)")),
        _ => RunError::Failed(format!("{what} ({status})")),
    }
}
