//! The state dir: its lock (one daemon per ledger), and its ledger id, which the backings it
//! serves carry so that no second ledger counts them (`backing::OWNER_XATTR`).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::backing::sys;

/// The pid a running (or starting, or stopping) daemon wrote into state dir `dir`'s lock, if
/// one holds it now. Creates nothing.
pub fn state_dir_holder(dir: &Path) -> Option<String> {
    let path = dir.join("lock");
    let file = std::fs::File::open(&path).ok()?;
    match sys::try_lock_exclusive(file.as_fd()) {
        Ok(false) => Some(std::fs::read_to_string(&path).unwrap_or_default().trim().to_string()),
        _ => None, // free (our lock goes with `file`), or unknowable
    }
}

/// Creates the state dir (0711: tenants may reach `tenant.sock` in it, nothing else is
/// readable) if needed and takes its lock, so two daemons never share one ledger. The
/// returned file holds the lock for the daemon's lifetime.
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
    // A progress file a killed daemon left: `status` reads it while the lock is held.
    let _ = std::fs::remove_file(dir.join(crate::admin::status::STARTING_FILE));
    Ok(file)
}

/// The file in the state dir holding its ledger's id (see `backing::OWNER_XATTR`).
const LEDGER_ID: &str = "ledger-id";

/// The state dir's ledger id, if it has one (read only: nothing is created).
pub(super) fn read_ledger_id(dir: &Path) -> Result<Option<String>, String> {
    let path = dir.join(LEDGER_ID);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() && !text.trim().contains(' ') => Ok(Some(text.trim().to_string())),
        Ok(_) => Err(format!("{} is malformed; remove it and mount again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Gives the (locked) state dir the ledger id `id`, durably.
pub(super) fn write_ledger_id(dir: &Path, id: &str) -> Result<(), String> {
    let path = dir.join(LEDGER_ID);
    let tmp = dir.join(format!("{LEDGER_ID}.new"));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // IMPORTANT: the rename is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// 128 random bits, in hex.
pub(super) fn new_ledger_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Refuses a backing that another ledger (another state dir) owns. A state dir with no id yet
/// at the very path the backing names (its id file lost, or the dir made anew there) may take
/// the backing's id: no other ledger can use that path meanwhile.
pub(super) fn check_owner(b: &crate::backing::Backing, state_dir: &str, id: Option<&str>) -> Result<(), String> {
    let ours = |o: &crate::backing::Owner| Some(o.id.as_str()) == id || (id.is_none() && o.state_dir == state_dir);
    if let Some((outer, owner)) = b.enclosing_owner()?
        && !ours(&owner)
    {
        return Err(format!(
            "backing {} is inside {}, a backing of the ledger in state dir {}: its files would be counted by \
             both ledgers. Serve that tree from that daemon, or pick a backing outside it",
            b.path.display(),
            outer.display(),
            owner.state_dir
        ));
    }
    let Some(owner) = b.owner()? else { return Ok(()) };
    if ours(&owner) {
        return Ok(());
    }
    let attr = crate::backing::OWNER_XATTR.to_string_lossy();
    Err(format!(
        "backing {} belongs to the ledger in state dir {} (attribute {attr}), not to {state_dir}: writes \
         through a second ledger would not be charged in the first. Mount it with --state-dir {}. To move it \
         to {state_dir} on purpose: stop the daemon of {}, run `setfattr -x {attr} DIR` on this backing and on \
         each routed backing, then mount with --state-dir {state_dir} (the first mount counts the tree)",
        b.path.display(),
        owner.state_dir,
        owner.state_dir,
        owner.state_dir,
    ))
}
