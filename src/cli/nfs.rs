//! `quotafs nfs exports`: nfs-ganesha EXPORT blocks (FSAL VFS) for the mount root and, on
//! request, one per project and one per user home, named as `rquota::exports` says so that
//! `quotafs rquotad` can tell which project a client's mount path is.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Cli, CliError, NfsExportsArgs, load_file_config, state_dir};
use crate::admin::names::user_name;
use crate::admin::{ProjectRoot, Request, Response, call};
use crate::rquota::exports::{self, config_safe};

/// One export to print.
struct Export {
    id: u16,
    path: String,
    pseudo: String,
    what: String,
}

/// What is printed: the exports, and the subjects left out with why (as comments, and on
/// stderr).
#[derive(Default)]
struct Plan {
    exports: Vec<Export>,
    skipped: Vec<String>,
}

impl Plan {
    fn add(&mut self, e: Export) {
        if !config_safe(&e.path) || !config_safe(&e.pseudo) {
            self.skipped.push(format!(
                "{}: path {:?} or pseudo path {:?} has characters a ganesha config cannot hold as they are \
                 (allowed: A-Z a-z 0-9 / . _ - + @ , = : and space); rename it",
                e.what, e.path, e.pseudo
            ));
        } else if let Some(other) = self.exports.iter().find(|o| o.pseudo == e.pseudo || o.id == e.id) {
            self.skipped.push(format!(
                "{}: its pseudo path {} or Export_Id {} is already {}'s; rename one of them",
                e.what, e.pseudo, e.id, other.what
            ));
        } else {
            self.exports.push(e);
        }
    }
}

/// The export connections a daemon serves: (kind, id) -> mount point (docs/design.md §12.3).
type Connections = std::collections::BTreeMap<(String, u32), String>;

/// Where the daemon serves, as it reports it, and its export connections.
fn served_mountpoint(dir: &Path) -> Result<(Option<PathBuf>, Connections), CliError> {
    match call(dir, &Request::Status).map_err(CliError::failed)? {
        Some(Response::Status { status }) => {
            let connections = status["exports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let key = (e["kind"].as_str()?.to_string(), u32::try_from(e["id"].as_u64()?).ok()?);
                    Some((key, e["mountpoint"].as_str()?.to_string()))
                })
                .collect();
            Ok((status["mountpoint"].as_str().map(PathBuf::from), connections))
        }
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        _ => Ok((None, Connections::new())),
    }
}

fn projects(dir: &Path) -> Result<Vec<ProjectRoot>, CliError> {
    match call(dir, &Request::Projects { id: None }).map_err(CliError::failed)? {
        Some(Response::Done { message }) => serde_json::from_str(&message)
            .map_err(|e| CliError::failed(format!("bad project list from the daemon: {e}"))),
        Some(Response::Error { message }) => Err(CliError::failed(message)),
        other => Err(CliError::failed(format!(
            "the daemon does not list projects (reply {other:?}); is it older than this quotafs? restart it"
        ))),
    }
}

fn join(base: &Path, rel: &str) -> String {
    if rel.is_empty() { base.display().to_string() } else { base.join(rel).display().to_string() }
}

/// A tree's Path: its export connection's mount point where the daemon has one (FSSTAT then
/// answers the tree's quota), else the tree on the mount.
fn tree_path(connections: &Connections, kind: &str, id: u32, base: &Path, rel: &str) -> String {
    connections.get(&(kind.to_string(), id)).cloned().unwrap_or_else(|| join(base, rel))
}

fn add_projects(plan: &mut Plan, list: &[ProjectRoot], ganesha_root: &Path, connections: &Connections) {
    for p in list {
        let what = match &p.name {
            Some(n) => format!("project {} ({n})", p.id),
            None => format!("project {}", p.id),
        };
        let Some(rel) = &p.path else {
            plan.skipped.push(format!(
                "{what}: no top directory (never assigned, cleared, removed, re-assigned, or its path is not UTF-8)"
            ));
            continue;
        };
        let Some(id) = exports::project_export_id(p.id) else {
            plan.skipped.push(format!(
                "{what}: no stable Export_Id for project ids above {}; give the tree a smaller id \
                 (`quotafs project assign --id`) to export it on its own",
                exports::MAX_PROJECT
            ));
            continue;
        };
        let leaf = exports::project_leaf(p.id, p.name.as_deref());
        plan.add(Export {
            id,
            path: tree_path(connections, "project", p.id, ganesha_root, rel),
            pseudo: format!("{}/{leaf}", exports::PROJECTS_DIR),
            what,
        });
    }
}

/// User homes: the top-level directories of the mount owned by a uid other than root. A uid
/// owning several has as home the one named as the user; otherwise none.
fn add_users(
    plan: &mut Plan,
    local_root: &Path,
    ganesha_root: &Path,
    connections: &Connections,
) -> Result<(), CliError> {
    let root = std::fs::symlink_metadata(local_root)
        .map_err(|e| CliError::failed(format!("{}: {e}", local_root.display())))?;
    if root.uid() != 0 || root.mode() & 0o002 != 0 || (root.mode() & 0o020 != 0 && root.gid() != 0) {
        return Err(CliError::usage(format!(
            "the mount root {} is writable by others than root: a tenant could add or swap top-level \
             directories, and --users exports them; make it root's and not group- or world-writable \
             (chown root:root, chmod 755), or export projects instead",
            local_root.display()
        )));
    }
    let mut homes: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let entries =
        std::fs::read_dir(local_root).map_err(|e| CliError::failed(format!("{}: {e}", local_root.display())))?;
    for entry in entries.flatten() {
        let Ok(md) = entry.metadata() else { continue }; // lstat: symlinks are no homes
        if !md.is_dir() || md.uid() == 0 {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => homes.entry(md.uid()).or_default().push(name),
            Err(name) => plan.skipped.push(format!("directory {name:?} of uid {}: its name is not UTF-8", md.uid())),
        }
    }
    for (uid, mut dirs) in homes {
        dirs.sort();
        let name = user_name(uid);
        let what = match &name {
            Some(n) => format!("user {uid} ({n})"),
            None => format!("user {uid}"),
        };
        let home = if dirs.len() == 1 { dirs.pop() } else { name.clone().filter(|n| dirs.contains(n)) };
        let Some(home) = home else {
            plan.skipped.push(format!(
                "{what}: owns several top-level directories ({}), none named as the user; which is the home is unclear",
                dirs.join(", ")
            ));
            continue;
        };
        let Some(id) = exports::user_export_id(uid) else {
            plan.skipped.push(format!("{what}: no stable Export_Id for uids above {}", exports::MAX_UID));
            continue;
        };
        let leaf = exports::user_leaf(uid, name.as_deref());
        plan.add(Export {
            id,
            path: tree_path(connections, "user", uid, ganesha_root, &home),
            pseudo: format!("{}/{leaf}", exports::USERS_DIR),
            what: format!("{what}, home {home}"),
        });
    }
    Ok(())
}

/// `s` made fit for a `#` comment line: a comment ends at the line's end, so a name holding a
/// line break (a directory name is the tenant's choice) would start config text of its own.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn render(plan: &Plan, command: &str) -> String {
    let mut out = format!(
        "# nfs-ganesha exports of a quotafs mount, generated by `{command}`.\n\
         # Export ids: 1 the mount root, 1+ID project ID, 32768+UID the home of UID (quotafs(8),\n\
         # \"NFS export\"). Put these blocks with the NFS_CORE_PARAM of fixtures/ganesha.conf\n\
         # (Enable_RQUOTA = false; run `quotafs rquotad`). A Path under the daemon's exports_dir is\n\
         # an export connection: df through it shows that tree's quota.\n"
    );
    for s in &plan.skipped {
        let _ = writeln!(out, "# not exported: {}", comment(s));
    }
    for e in &plan.exports {
        let _ = write!(
            out,
            "\n# {}\nEXPORT {{\n    Export_Id = {};\n    Path = \"{}\";\n    Pseudo = \"{}\";\n    Access_Type = RW;\n    \
             Squash = No_Root_Squash;\n    SecType = sys;\n    Protocols = 3, 4;\n    Transports = TCP;\n    \
             FSAL {{\n        Name = VFS;\n    }}\n}}\n",
            comment(&e.what),
            e.id,
            e.path,
            e.pseudo
        );
    }
    out
}

pub fn run(cli: &Cli, args: &NfsExportsArgs) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    let (served, connections) = served_mountpoint(&dir)?;
    if served.is_none() && (args.projects || args.users) {
        return Err(CliError::usage(format!(
            "no quotafs daemon is running on state dir {}: project and user exports are found through the \
             mount; start `quotafs mount` first",
            dir.display()
        )));
    }
    let ganesha_root = match (&args.mountpoint, &served) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => load_file_config(cli)?.mountpoint.ok_or_else(|| {
            CliError::usage("no mountpoint: pass --mountpoint, start the daemon, or set `mountpoint` in --config")
        })?,
    };
    let mut plan = Plan::default();
    plan.add(Export {
        id: exports::ROOT_EXPORT_ID,
        path: ganesha_root.display().to_string(),
        pseudo: exports::ROOT_PSEUDO.into(),
        what: "the mount root".into(),
    });
    if args.projects {
        add_projects(&mut plan, &projects(&dir)?, &ganesha_root, &connections);
    }
    if let (true, Some(local)) = (args.users, &served) {
        add_users(&mut plan, local, &ganesha_root, &connections)?;
    }
    let flags: BTreeSet<&str> =
        [(args.projects, " --projects"), (args.users, " --users")].into_iter().filter(|f| f.0).map(|f| f.1).collect();
    print!("{}", render(&plan, &format!("quotafs nfs exports{}", flags.into_iter().collect::<String>())));
    for s in &plan.skipped {
        eprintln!("quotafs: not exported: {}", comment(s));
    }
    Ok(())
}
