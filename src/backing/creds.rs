//! Acting with a tenant's credentials, per thread.
//!
//! The daemon runs as root. Before a backing call that creates, changes or removes something on
//! behalf of a tenant, the worker thread switches its *file-system* uid and gid to the caller's
//! (`setfsuid`/`setfsgid`, which are per thread in Linux), so that the kernel itself assigns
//! ownership (setgid directories included), enforces permissions and sticky bits, and clears
//! setuid/setgid bits on writes, exactly as on ext4. Switching the fsuid away from 0 also drops
//! the thread's file capabilities (CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, ...): the thread is
//! no more powerful than the tenant. The guard switches back when dropped.
//!
//! Supplementary groups: the daemon clears its own supplementary groups at start, so a thread
//! acting as a tenant has none by default. When a call is refused with EACCES/EPERM, the
//! caller's groups are read from `/proc/<pid>/status`, installed on the thread with the raw
//! `setgroups` system call (glibc's wrapper would change every thread), and the call is tried
//! once more. The common path thus costs no `/proc` read.

use std::cell::Cell;

use super::Errno;
use super::sys::SysResult;

/// The identity of the process that made a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    pub const ROOT: Caller = Caller { uid: 0, gid: 0, pid: 0 };
}

fn set_fsuid(uid: u32) {
    // SAFETY: setfsuid changes only this thread's fs uid and touches no memory. It cannot report
    // failure; as root every value is accepted.
    unsafe { libc::setfsuid(uid) };
}

fn set_fsgid(gid: u32) {
    // SAFETY: as for `set_fsuid`.
    unsafe { libc::setfsgid(gid) };
}

/// Sets this thread's supplementary groups only (raw syscall, not glibc's process-wide one).
fn set_thread_groups(groups: &[u32]) -> SysResult<()> {
    // SAFETY: `groups` is a readable array of `len` gid_t values.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 { Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM))) } else { Ok(()) }
}

/// Called once at daemon start, before any worker thread exists: drop the daemon's own
/// supplementary groups (they would otherwise lend root's groups to every tenant) and clear
/// the process umask (the kernel already applied the caller's umask, or we apply it per call).
pub fn init_process() -> SysResult<()> {
    // SAFETY: process-wide setgroups(0, NULL) before threads exist; umask cannot fail.
    let r = unsafe { libc::setgroups(0, std::ptr::null()) };
    if r < 0 {
        return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM)));
    }
    // SAFETY: umask only changes the process mask.
    unsafe { libc::umask(0) };
    Ok(())
}

thread_local! {
    static FS_UNSHARED: Cell<bool> = const { Cell::new(false) };
}

/// Sets this thread's umask, giving the thread its own fs_struct first so that the umask is
/// per thread (`unshare(CLONE_FS)`, once per thread).
pub fn set_thread_umask(mask: u32) -> SysResult<()> {
    if !FS_UNSHARED.get() {
        // SAFETY: unshare(CLONE_FS) only detaches this thread's cwd/root/umask from the
        // process; we never rely on the cwd.
        let r = unsafe { libc::unshare(libc::CLONE_FS) };
        if r < 0 {
            return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM)));
        }
        FS_UNSHARED.set(true);
    }
    // SAFETY: umask cannot fail; after the unshare it affects this thread only.
    unsafe { libc::umask(mask & 0o777) };
    Ok(())
}

/// Switches this thread to the caller's fs uid/gid until dropped. A no-op for root.
#[must_use]
pub struct AsCaller {
    active: bool,
}

impl AsCaller {
    pub fn new(caller: &Caller) -> AsCaller {
        if caller.uid == 0 && caller.gid == 0 {
            return AsCaller { active: false };
        }
        set_fsgid(caller.gid);
        set_fsuid(caller.uid);
        AsCaller { active: true }
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if self.active {
            set_fsuid(0);
            set_fsgid(0);
        }
    }
}

fn proc_groups(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Groups:"))?;
    Some(line["Groups:".len()..].split_whitespace().filter_map(|g| g.parse().ok()).collect())
}

/// Runs `op` with the caller's fs credentials; if it is refused for lack of permission, runs
/// it once more with the caller's supplementary groups as well.
pub fn as_caller<T>(caller: &Caller, mut op: impl FnMut() -> SysResult<T>) -> SysResult<T> {
    let _guard = AsCaller::new(caller);
    let first = op();
    match first {
        Err(Errno(libc::EACCES | libc::EPERM)) if caller.uid != 0 && caller.pid != 0 => {
            let Some(groups) = proc_groups(caller.pid) else { return first };
            if groups.is_empty() || groups == [caller.gid] {
                return first;
            }
            set_thread_groups(&groups)?;
            let second = op();
            set_thread_groups(&[])?;
            second
        }
        other => other,
    }
}
