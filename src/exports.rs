//! The export connections a daemon mounts (docs/design.md §12.3): which trees, and where.
//!
//! With `exports_dir` set, each project with a top directory (`export_projects`) and each
//! user home (`export_users`) gets a FUSE connection of its own, mounted at
//! `<exports_dir>/projects/<name, else id>` or `<exports_dir>/users/<name, else uid>` (the
//! leaves of the pseudo paths `quotafs nfs exports` prints), in the order projects by id, then
//! homes by uid: the same order at each start, so each mount gets the same anonymous device
//! number when nothing else takes one meanwhile (NFS handles embed it).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::ExportsConfig;
use crate::fuse::export::Scope;
use crate::inode;
use crate::ledger::Ledger;
use crate::passthrough::Passthrough;
use crate::rquota::exports as names;

/// One exported tree and its connection's mount point.
#[derive(Clone, Debug, Serialize)]
pub struct ExportTree {
    /// "project" or "user".
    pub kind: &'static str,
    /// The project id or the uid.
    pub id: u32,
    /// ganesha's Export_Id for it (`rquota::exports`).
    pub export_id: u16,
    /// The pseudo path `quotafs nfs exports` gives it.
    pub pseudo: String,
    /// Where its connection is mounted.
    pub mountpoint: PathBuf,
    /// The tree's top, the daemon's node id.
    #[serde(skip)]
    pub node: u64,
    #[serde(skip)]
    pub scope: Scope,
}

/// The trees to export now, and the ones left out with why (logged).
pub fn plan(cfg: &ExportsConfig, ops: &Passthrough, ledger: &Ledger) -> (Vec<ExportTree>, Vec<String>) {
    let mut trees = Vec::new();
    let mut skipped = Vec::new();
    if cfg.projects {
        projects(cfg, ops, ledger, &mut trees, &mut skipped);
    }
    if cfg.users {
        users(cfg, ops, &mut trees, &mut skipped);
    }
    (trees, skipped)
}

fn projects(
    cfg: &ExportsConfig,
    ops: &Passthrough,
    ledger: &Ledger,
    trees: &mut Vec<ExportTree>,
    skipped: &mut Vec<String>,
) {
    let names_of = ledger.project_names();
    let roots = match ledger.store().project_roots() {
        Ok(r) => r,
        Err(e) => {
            skipped.push(format!("projects: cannot read the project roots: {e}"));
            return;
        }
    };
    for (id, root) in roots {
        let name = names_of.get(&id).map(String::as_str);
        let Some(export_id) = names::project_export_id(id) else {
            skipped.push(format!("project {id}: no stable Export_Id for project ids above {}", names::MAX_PROJECT));
            continue;
        };
        let Some(b) = ops.backings().get(root.backing.as_usize()) else { continue };
        let handle = crate::backing::Handle::ext4(root.ino as u32, root.generation);
        let tagged = b
            .open_handle(&handle, libc::O_RDONLY | libc::O_DIRECTORY)
            .ok()
            .and_then(|fd| crate::tag::read_fd(std::os::fd::AsFd::as_fd(&fd)).ok().flatten())
            .is_some_and(|t| t.project == id);
        if !tagged {
            skipped.push(format!("project {id}: its top directory is gone or no longer tagged with it"));
            continue;
        }
        let Ok(node) = inode::node_id(b, root.ino) else { continue };
        let leaf = names::project_leaf(id, name);
        add(cfg, ops, trees, skipped, ("project", id, export_id), names::PROJECTS_DIR, leaf, node, Scope::Project(id));
    }
}

/// Homes as `quotafs nfs exports --users` finds them: top-level directories of the main
/// backing owned by a uid other than root (a uid owning several: the one named as the user).
fn users(cfg: &ExportsConfig, ops: &Passthrough, trees: &mut Vec<ExportTree>, skipped: &mut Vec<String>) {
    let Some(b) = ops.backings().first() else { return };
    let Ok(root) = std::fs::symlink_metadata(&b.path) else { return };
    if root.uid() != 0 || root.mode() & 0o002 != 0 || (root.mode() & 0o020 != 0 && root.gid() != 0) {
        skipped.push(format!(
            "users: the mount root is writable by others than root (a tenant could add or swap top-level \
             directories that become exports); make {} root's and not group- or world-writable",
            b.path.display()
        ));
        return;
    }
    let mut homes: std::collections::BTreeMap<u32, Vec<(String, u64)>> = Default::default();
    for entry in std::fs::read_dir(&b.path).into_iter().flatten().flatten() {
        let Ok(md) = entry.metadata() else { continue };
        if !md.is_dir() || md.uid() == 0 {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            homes.entry(md.uid()).or_default().push((name, md.ino()));
        }
    }
    for (uid, mut dirs) in homes {
        let user = crate::admin::names::user_name(uid);
        let home = if dirs.len() == 1 { dirs.pop() } else { dirs.into_iter().find(|(n, _)| Some(n) == user.as_ref()) };
        let Some((_, ino)) = home else {
            skipped.push(format!("user {uid}: owns several top-level directories, none named as the user"));
            continue;
        };
        let Some(export_id) = names::user_export_id(uid) else {
            skipped.push(format!("user {uid}: no stable Export_Id for uids above {}", names::MAX_UID));
            continue;
        };
        let Ok(node) = inode::node_id(b, ino) else { continue };
        let leaf = names::user_leaf(uid, user.as_deref());
        add(cfg, ops, trees, skipped, ("user", uid, export_id), names::USERS_DIR, leaf, node, Scope::Home(uid));
    }
}

#[expect(clippy::too_many_arguments, reason = "one call per kind of tree, each argument named at the call")]
fn add(
    cfg: &ExportsConfig,
    ops: &Passthrough,
    trees: &mut Vec<ExportTree>,
    skipped: &mut Vec<String>,
    (kind, id, export_id): (&'static str, u32, u16),
    dir: &str,
    leaf: String,
    node: u64,
    scope: Scope,
) {
    let pseudo = format!("{dir}/{leaf}");
    if !names::config_safe(&pseudo) || leaf.starts_with('.') {
        skipped.push(format!("{kind} {id}: its name {leaf:?} cannot be a ganesha path as it is; rename it"));
        return;
    }
    // The tree's top resolves and stays in the table (its kernel never forgets node 1).
    if let Err(e) = ops.lookup(node, std::ffi::OsStr::new(".")) {
        skipped.push(format!("{kind} {id}: its top directory cannot be opened: {e}"));
        return;
    }
    let mountpoint = cfg.dir.join(dir.trim_start_matches('/')).join(&leaf);
    trees.push(ExportTree { kind, id, export_id, pseudo, mountpoint, node, scope });
}

/// Creates `dir` (root's, 0711) if needed and refuses one others may write to: the export
/// connections' mount points are made in it.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|e| format!("cannot create exports_dir {}: {e}", dir.display()))?;
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("exports_dir {}: {e}", dir.display()))?;
    if !md.is_dir() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(format!(
            "exports_dir {} must be a directory owned by root and writable by root only (found uid {}, mode {:o}); \
             fix it with `chown root: {0}; chmod 0711 {0}`",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Makes `tree`'s mount point (and its parent) if needed; refuses one already mounted on.
pub fn mount_point(tree: &ExportTree) -> Result<(), String> {
    if let Some((fstype, source)) = crate::config::mount_at(&tree.mountpoint) {
        return Err(format!(
            "{} is already mounted ({fstype} from {source}): another daemon's export, or one a killed daemon \
             left; unmount it with `umount -l {}`",
            tree.mountpoint.display(),
            tree.mountpoint.display()
        ));
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&tree.mountpoint).map_err(|e| {
        format!("cannot make the mount point {} of export {}: {e}", tree.mountpoint.display(), tree.pseudo)
    })
}
