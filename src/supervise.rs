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
//!   files opened before a death (or a restart) are reopened by the next process on their next
//!   use.
//! * `quotafs restart` (a `restart` request on `<state dir>/supervisor.sock`, root only) or
//!   SIGHUP replaces the serving process with the binary now installed at the path the
//!   supervisor was started from: that binary's `mount --check-takeover` (same arguments) must
//!   accept the state dir first, else the old process keeps serving and the request is refused
//!   with its message; then the old process is sent SIGUSR1 (it stops reading, answers what it
//!   read, takes a final checkpoint and exits 0 without unmounting) and the new one adopts.
//!   The supervisor itself keeps running the binary it started as: what it passes a serving
//!   process (the `QUOTAFS_SUPERVISED_*` variables, SIGUSR1) must stay the same across versions.
//!
//! Not recovered by the next process: the data of files unlinked while open (ESTALE to their
//! holders; recovery settles their charge); docs/design.md §18 says why and what would.

use std::collections::VecDeque;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::MountConfig;
use crate::daemon::{RunError, SUPERVISED_FDS, SUPERVISED_INIT, SUPERVISED_MOUNTPOINT, SUPERVISED_OPENS};

/// The supervisor's socket in the state dir (0600: root only). One JSON request per connection
/// (`admin::Request::Restart`), one JSON reply line.
pub const SOCKET: &str = "supervisor.sock";

/// How long a restart waits for the old process to hand over, then for the new one to answer.
const HANDOVER_LIMIT: Duration = Duration::from_secs(120);
const TAKEOVER_LIMIT: Duration = Duration::from_secs(600);

/// What the supervisor's threads share.
struct Shared {
    /// The serving process of the moment (0: none).
    child_pid: AtomicI32,
    stopping: AtomicBool,
    /// Set while a restart waits for the serving process to hand over: the main loop sends the
    /// new process's pid (or why there is none) through it.
    handover: Mutex<Option<mpsc::Sender<Result<u32, String>>>>,
    /// One restart at a time.
    restarting: Mutex<()>,
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    state_dir: PathBuf,
    /// `QUOTAFS_SUPERVISED_FDS` and `_MOUNTPOINT` as given to every serving process (and to
    /// the takeover check, which then takes the mount point as handed over, not as mounted).
    fds: String,
    mountpoint: PathBuf,
}

pub fn run(cfg: &MountConfig) -> Result<(), RunError> {
    if cfg.transport == crate::config::Transport::Uring {
        return Err(RunError::Refused(
            "--supervise serves over /dev/fuse (io_uring requests in flight are not resent to a new process); \
             use --transport auto or classic with it"
                .into(),
        ));
    }
    // The path as started: after an upgrade replaces the binary, /proc/self/exe names the
    // deleted file, and a restart runs what is installed at this path now.
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

    let shared = Arc::new(Shared {
        child_pid: AtomicI32::new(0),
        stopping: AtomicBool::new(false),
        handover: Mutex::new(None),
        restarting: Mutex::new(()),
        exe,
        args,
        state_dir: cfg.state_dir.clone(),
        fds: fds.clone(),
        mountpoint: cfg.mountpoint.clone(),
    });
    let listener = match bind_socket(&cfg.state_dir) {
        Ok(l) => l,
        Err(e) => {
            let _ = crate::fuse::detach(&cfg.mountpoint);
            return Err(RunError::Failed(e));
        }
    };
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("supervisor-socket".into())
            .spawn(move || serve_socket(&shared, listener))
            .map_err(|e| RunError::Failed(format!("cannot start the supervisor's socket thread: {e}")))?;
    }

    // SIGINT/SIGTERM go to the serving process of the moment; SIGHUP restarts it.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| RunError::Failed(format!("cannot install signal handlers: {e}")))?;
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == signal_hook::consts::SIGHUP {
                        let shared = Arc::clone(&shared);
                        let _ =
                            std::thread::Builder::new().name("restart".into()).spawn(move || match restart(&shared) {
                                Ok(m) => tracing::info!("SIGHUP: {m}"),
                                Err(Refusal(m)) => tracing::error!("SIGHUP: restart refused: {m}"),
                            });
                        continue;
                    }
                    shared.stopping.store(true, Ordering::SeqCst);
                    crate::daemon::sd_notify("STOPPING=1");
                    let pid = shared.child_pid.load(Ordering::SeqCst);
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
    // systemd's main process is this one (NotifyAccess=main): readiness is told from here,
    // once the mount answers (the first serving process has answered INIT and the root's
    // getattr); a serving process is not given the notification socket.
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let at = cfg.mountpoint.clone();
        let _ = std::thread::Builder::new().name("ready".into()).spawn(move || match std::fs::metadata(&at) {
            Ok(_) => crate::daemon::sd_notify("READY=1\nSTATUS=serving (supervised)"),
            Err(e) => tracing::warn!(error = %e, "the mount does not answer; not reporting readiness"),
        });
    }

    let mut deaths: VecDeque<Instant> = VecDeque::new();
    let mut taking_over: Option<mpsc::Sender<Result<u32, String>>> = None;
    loop {
        let spawned = Command::new(&shared.exe)
            .args(&shared.args)
            .env(SUPERVISED_FDS, &fds)
            .env(SUPERVISED_INIT, &init_file)
            .env(SUPERVISED_MOUNTPOINT, &cfg.mountpoint)
            .env(SUPERVISED_OPENS, &opens_fd)
            .env_remove("NOTIFY_SOCKET")
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let message = format!("cannot start the serving process {}: {e}", shared.exe.display());
                if let Some(tx) = taking_over.take() {
                    let _ = tx.send(Err(message.clone()));
                }
                // Nothing serves the mount now: answer EIO rather than leave callers hanging.
                tracing::error!("{message}; answering every request EIO until the mount is unmounted");
                return refuse(devs, message);
            }
        };
        shared.child_pid.store(child.id() as i32, Ordering::SeqCst);
        if let Some(tx) = taking_over.take() {
            let _ = tx.send(Ok(child.id()));
        }
        let status = child.wait().map_err(|e| RunError::Failed(format!("waiting for the serving process: {e}")))?;
        shared.child_pid.store(0, Ordering::SeqCst);
        let handing_over = shared.handover.lock().take();
        if let Some(tx) = handing_over {
            if status.success() && !shared.stopping.load(Ordering::SeqCst) {
                tracing::info!("the serving process handed over; starting the one now installed");
                taking_over = Some(tx);
                continue;
            }
            let _ = tx.send(Err(format!("the serving process ended ({status}) instead of handing over")));
        }
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
        if shared.stopping.load(Ordering::SeqCst) {
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
            return refuse(devs, "the serving process kept dying".into());
        }
        tracing::error!(%status, deaths = deaths.len(), "the serving process died; starting another (the mount stays)");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Answers every request EIO until the mount is unmounted.
fn refuse(mut devs: Vec<std::fs::File>, why: String) -> Result<(), RunError> {
    // Every descriptor stays open: one released would end the requests queued to it with
    // ECONNABORTED; the resend moves them to where `refuse_all` reads.
    let first = devs.remove(0);
    let _kept = devs;
    match crate::fuse::refuse_all(first) {
        Ok(()) => Err(RunError::Failed(format!("{why}; the mount answered EIO until unmounted"))),
        Err(e) => Err(RunError::Failed(format!("{why}, then: {e}"))),
    }
}

/// Why a restart did not happen (the old serving process, if any, serves on).
pub struct Refusal(pub String);

/// Replaces the serving process (see the module docs). Ok: what was done.
fn restart(shared: &Shared) -> Result<String, Refusal> {
    let Some(_one) = shared.restarting.try_lock() else {
        return Err(Refusal("a restart is already in progress".into()));
    };
    let old = shared.child_pid.load(Ordering::SeqCst);
    if old <= 0 || shared.stopping.load(Ordering::SeqCst) {
        return Err(Refusal("no serving process is running (starting, stopping or crash-looping)".into()));
    }
    // Only a process that serves hands over (before that, SIGUSR1 may find no handler).
    let serving = matches!(
        crate::admin::call(&shared.state_dir, &crate::admin::Request::Status),
        Ok(Some(crate::admin::Response::Status { status })) if status["pid"].as_u64() == Some(old as u64)
    );
    if !serving {
        return Err(Refusal(format!(
            "the serving process (pid {old}) is still starting (recovering the ledger); try again once \
             `quotafs status` answers"
        )));
    }
    let check = Command::new(&shared.exe)
        .args(&shared.args)
        .arg("--check-takeover")
        .env(SUPERVISED_FDS, &shared.fds)
        .env(SUPERVISED_MOUNTPOINT, &shared.mountpoint)
        .env_remove(SUPERVISED_INIT)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Refusal(format!("cannot run {} --check-takeover: {e}", shared.exe.display())))?;
    if !check.status.success() {
        let said = String::from_utf8_lossy(&check.stderr);
        let said = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(Refusal(format!(
            "{} cannot take over this mount ({}): {said}; the running process (pid {old}) keeps serving",
            shared.exe.display(),
            check.status
        )));
    }
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    *shared.handover.lock() = Some(tx);
    tracing::info!(pid = old, exe = %shared.exe.display(), "restart: the takeover check passed; handing over");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGUSR1) {
        shared.handover.lock().take();
        return Err(Refusal(format!("cannot signal the serving process (pid {old}): {e}")));
    }
    let new = match rx.recv_timeout(HANDOVER_LIMIT) {
        Ok(Ok(pid)) => pid,
        Ok(Err(why)) => return Err(Refusal(why)),
        // The handover stays pending: a process that still hands over is followed by the new one
        // (an exit 0 without a pending handover would end the supervisor, and the mount).
        Err(_) => {
            return Err(Refusal(format!(
                "the serving process (pid {old}) has not handed over within {} s; it may still be answering \
                 what it read, and the new one starts once it has (see the log)",
                HANDOVER_LIMIT.as_secs()
            )));
        }
    };
    // Taken over once the new process answers on its control socket.
    let deadline = Instant::now() + TAKEOVER_LIMIT;
    loop {
        if let Ok(Some(crate::admin::Response::Status { status })) =
            crate::admin::call(&shared.state_dir, &crate::admin::Request::Status)
            && status["pid"].as_u64() == Some(u64::from(new))
        {
            break;
        }
        if shared.child_pid.load(Ordering::SeqCst) != new as i32 {
            return Err(Refusal(format!("the new serving process (pid {new}) ended before it served; see the log")));
        }
        if Instant::now() >= deadline {
            return Ok(format!(
                "pid {new} started from {} and is still starting (see `quotafs status`)",
                shared.exe.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let message = format!(
        "pid {new} ({}) took over from pid {old} in {} ms; the mount stayed",
        shared.exe.display(),
        started.elapsed().as_millis()
    );
    tracing::info!("restart: {message}");
    Ok(message)
}

/// Binds `supervisor.sock` (0600) in the state dir: bound in a 0700 directory, then renamed
/// into place (no moment with another mode).
fn bind_socket(state_dir: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = state_dir.join(".supervisor.new");
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| format!("cannot create {}: {e}", private.display()))?;
    let tmp = private.join(SOCKET);
    let bound = UnixListener::bind(&tmp).map_err(|e| format!("cannot bind {}: {e}", tmp.display())).and_then(|l| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, state_dir.join(SOCKET))
            .map_err(|e| format!("cannot move {} into {}: {e}", tmp.display(), state_dir.display()))?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// One connection at a time: a restart request, its answer. Root only: the socket is 0600 in
/// a state dir only root writes.
fn serve_socket(shared: &Shared, listener: UnixListener) {
    use std::io::{BufRead, Read, Write};
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        let read = std::io::BufReader::new((&conn).take(4096)).read_line(&mut line);
        let reply = match (read, serde_json::from_str::<crate::admin::Request>(line.trim())) {
            (Err(e), _) => crate::admin::Response::Error { message: format!("cannot read the request: {e}") },
            (_, Ok(crate::admin::Request::Restart)) => match restart(shared) {
                Ok(message) => crate::admin::Response::Done { message },
                Err(Refusal(message)) => crate::admin::Response::Refused { message },
            },
            (_, _) => crate::admin::Response::Error {
                message: "the supervisor answers `restart` only; other requests go to control.sock".into(),
            },
        };
        if let Ok(mut text) = serde_json::to_string(&reply) {
            text.push('\n');
            let _ = conn.write_all(text.as_bytes());
        }
    }
}

/// `mount --check-takeover`: whether this binary reads what the running mount of `cfg` left
/// in its state dir, changing nothing: the saved INIT agreement, each activity log's format,
/// the store's format (on a copy). Ok: a line saying so; Err: why not.
pub fn check_takeover(cfg: &MountConfig) -> Result<String, String> {
    let dir = &cfg.state_dir;
    let init = dir.join("fuse-init");
    let text = std::fs::read_to_string(&init).map_err(|e| {
        format!(
            "cannot read {} ({e}): no supervised mount of this state dir has answered INIT; nothing to take over",
            init.display()
        )
    })?;
    crate::wire::encode::InitOut::parse(&text).ok_or_else(|| {
        format!("{} holds an INIT agreement this quotafs does not read: {:?}", init.display(), text.trim())
    })?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut logs = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(crate::ledger::wal::epoch_of).is_some() {
            crate::ledger::wal::check_format(&entry.path())?;
            logs += 1;
        }
    }
    let epoch = crate::ledger::store::Store::check_readable(dir).map_err(|e| match e {
        crate::ledger::LedgerError::Store { path, what, detail } if what == "unknown format" => format!(
            "ledger store {}: {detail} (a newer quotafs wrote it; install a quotafs that reads it)",
            path.display()
        ),
        e => format!("cannot read the ledger store: {e}"),
    })?;
    Ok(format!(
        "this quotafs can take over: INIT agreement, {logs} activity log(s) and the store (snapshot epoch {}) read",
        epoch.map_or("none".to_string(), |e| e.to_string())
    ))
}

fn exit_error(status: ExitStatus, what: &str) -> RunError {
    match status.code() {
        Some(2) => RunError::Refused(format!("{what} (exit status 2; its message is above)")),
        _ => RunError::Failed(format!("{what} ({status})")),
    }
}
