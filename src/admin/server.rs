//! The daemon's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::names::Names;
use super::{CheckReport, DriftRow, Request, Response, Row};
use crate::check::{self, scan};
use crate::ledger::Ledger;
use crate::passthrough::Passthrough;
use crate::quota::limits::{LimitKey, Limits, rfc3339};
use crate::quota::{Subject, Usage};

/// Rows for `report`: every subject with usage or limits of its own, sorted by kind and id.
pub fn rows(
    usage: &std::collections::BTreeMap<Subject, Usage>,
    names: &Names,
    limits: &std::collections::HashMap<LimitKey, Limits>,
    grace: &crate::quota::enforce::GraceMap,
) -> Vec<Row> {
    let mut subjects: std::collections::BTreeSet<Subject> = usage.keys().copied().collect();
    subjects.extend(limits.keys().filter_map(|k| if let LimitKey::Subject(s) = k { Some(*s) } else { None }));
    subjects.into_iter().map(|s| row(s, usage.get(&s).copied().unwrap_or_default(), names, limits, grace)).collect()
}

/// The row of subject `s`: its usage `u` and the limits in force for it (its own, else the
/// default of its kind), and when a running grace period ends.
pub fn row(
    s: Subject,
    u: Usage,
    names: &Names,
    limits: &std::collections::HashMap<LimitKey, Limits>,
    grace: &crate::quota::enforce::GraceMap,
) -> Row {
    let default = match s {
        Subject::User(_) => LimitKey::DefaultUser,
        Subject::Project(_) => LimitKey::DefaultProject,
    };
    let l = limits.get(&LimitKey::Subject(s)).or_else(|| limits.get(&default)).copied().unwrap_or_default();
    let ends = |inodes: bool| grace.get(&(s, inodes)).map(|since| since + l.grace_secs());
    let expires = |inodes: bool| ends(inodes).map(rfc3339);
    Row {
        kind: s.kind().to_string(),
        id: s.id(),
        name: names.name(s),
        bytes_used: u.bytes,
        inodes_used: u.inodes,
        bytes_soft: l.bytes_soft,
        bytes_hard: l.bytes_hard,
        inodes_soft: l.inodes_soft,
        inodes_hard: l.inodes_hard,
        grace_expires: expires(false),
        inodes_grace_expires: expires(true),
        grace_expires_unix: ends(false),
        inodes_grace_expires_unix: ends(true),
    }
}

pub fn check_report(result: &scan::ScanResult, ledger: &std::collections::BTreeMap<Subject, Usage>) -> CheckReport {
    let drift = check::compare(&result.usage, ledger)
        .into_iter()
        .map(|d| DriftRow {
            kind: d.subject.kind().into(),
            id: d.subject.id(),
            expected_bytes: d.expected.bytes,
            expected_inodes: d.expected.inodes,
            found_bytes: d.found.bytes,
            found_inodes: d.found.inodes,
        })
        .collect();
    CheckReport {
        inodes: result.inodes,
        seconds: result.duration.as_secs_f64(),
        drift,
        repaired: false,
        errors: result.errors,
        conflicts: Vec::new(),
        open_unlinked: 0,
    }
}

pub struct Server {
    pub mountpoint: PathBuf,
    pub ledger: Arc<Ledger>,
    pub ops: Arc<Passthrough>,
    pub threads: usize,
    /// Per-backing request counters and queues.
    pub pools: Arc<crate::fuse::pool::Pools>,
}

impl Server {
    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Report => {
                let names = Names::load(self.ledger.project_names());
                let e = self.ledger.enforcer();
                Response::Report {
                    rows: rows(&self.ledger.table().snapshot(), &names, &e.all_limits(), &e.grace_snapshot()),
                }
            }
            Request::QuotaSet { key, change } => {
                let Some(key) = LimitKey::from_key(key) else {
                    return Response::Error { message: "bad limit key".into() };
                };
                let current = self.ledger.enforcer().get(key).unwrap_or_default();
                match current.merged(&change).and_then(|m| self.ledger.set_limits(key, Some(m)).map(|()| m)) {
                    Ok(m) => Response::Done { message: serde_json::to_string(&m).unwrap_or_default() },
                    Err(e) => Response::Error { message: e },
                }
            }
            Request::QuotaGet { key } => match LimitKey::from_key(key) {
                Some(key) => Response::Done {
                    message: serde_json::to_string(&self.ledger.enforcer().get(key).unwrap_or_default())
                        .unwrap_or_default(),
                },
                None => Response::Error { message: "bad limit key".into() },
            },
            Request::QuotaClear { key } => {
                let Some(key) = LimitKey::from_key(key) else {
                    return Response::Error { message: "bad limit key".into() };
                };
                match self.ledger.set_limits(key, None) {
                    Ok(()) => Response::Done { message: "cleared".into() },
                    Err(e) => Response::Error { message: e },
                }
            }
            Request::Status => {
                let mut status = self.ledger.status_json(&self.ops);
                status["backings"] = self.pools.status_json();
                status["mountpoint"] = serde_json::json!(self.mountpoint.display().to_string());
                status["pid"] = serde_json::json!(std::process::id());
                Response::Status { status }
            }
            Request::Check { repair } => {
                // Everything written so far on disk with its final allocation, charged.
                for b in self.ops.backings() {
                    let _ = crate::backing::sys::syncfs(b.root_fd());
                }
                self.ledger.reconcile();
                // Usage changes wait while the backings are counted, so the two agree exactly.
                let result = self.ledger.paused(|| {
                    let scanned = scan::scan_split(self.ops.backings(), scan::Mode::Count, self.threads);
                    scanned.map(|(mut r, mut per_backing)| {
                        // Files unlinked but still open have no name for the scan to find; the
                        // ledger charges them until their last close, so both sides count them.
                        let pinned = self.ledger.pinned_charges();
                        check::count_pinned(&mut r.usage, Some(&mut per_backing), &pinned);
                        let mut report = check_report(&r, &self.ledger.table().snapshot());
                        report.open_unlinked = pinned.len() as u64;
                        report.conflicts = crate::route::conflicts(self.ops.backings(), self.ops.routes());
                        if repair && !report.drift.is_empty() && r.errors == 0 {
                            self.ledger.table().replace_all(r.usage.clone(), per_backing);
                            report.repaired = true;
                        }
                        report
                    })
                });
                match result {
                    Ok(report) => {
                        if report.repaired
                            && let Err(e) = self.ledger.checkpoint()
                        {
                            return Response::Error {
                                message: format!("repaired in memory, but the checkpoint failed: {e}"),
                            };
                        }
                        Response::Check { report }
                    }
                    Err(e) => Response::Error { message: e },
                }
            }
            Request::Checkpoint => match self.ledger.checkpoint() {
                Ok(epoch) => Response::Done { message: format!("checkpoint committed; epoch {epoch} begins") },
                Err(e) => Response::Error { message: e },
            },
            Request::Show => Response::Error { message: "`show` is answered on the tenant socket".into() },
            Request::Quota { kind, id } => {
                let s = match kind.as_str() {
                    "user" => Subject::User(id),
                    "project" => Subject::Project(id),
                    _ => return Response::Error { message: format!("unknown subject kind {kind:?}: user or project") },
                };
                Response::Report { rows: vec![self.row(s)] }
            }
            Request::Projects { id } => {
                Response::Done { message: serde_json::to_string(&self.project_roots(id)).unwrap_or_default() }
            }
            Request::Dump => Response::Done {
                message: serde_json::to_string(&super::restore::dump(&self.ledger)).unwrap_or_default(),
            },
            Request::Restore { dump } => match super::restore::restore(&self.ledger, &dump) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Error { message },
            },
            Request::ProjectAssign { node, id, name, absorb } => {
                use crate::passthrough::AssignError;
                match self.ops.assign_named(node, id, name.as_deref(), absorb, self.threads) {
                    Ok(message) => Response::Done { message },
                    Err(AssignError::Refused(message)) => Response::Refused { message },
                    Err(AssignError::Failed(message)) => Response::Error { message },
                }
            }
        }
    }

    fn serve(&self, stream: UnixStream) {
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => self.handle(req),
            Err(e) => Response::Error { message: format!("bad request: {e}") },
        };
        let mut out =
            serde_json::to_string(&resp).unwrap_or_else(|e| format!("{{\"result\":\"error\",\"message\":\"{e}\"}}"));
        out.push('\n');
        let _ = (&stream).write_all(out.as_bytes());
    }
}

impl Server {
    /// Subject `s`'s row from the live ledger (usage 0 if it has none).
    fn row(&self, s: Subject) -> Row {
        let names = Names::load(self.ledger.project_names());
        let e = self.ledger.enforcer();
        row(s, self.ledger.table().get(s), &names, &e.all_limits(), &e.grace_snapshot())
    }

    /// Every project with a name or a recorded top directory, and that directory's path
    /// relative to the mount (found from its handle: renames since the assignment show).
    /// Only project `only`, if given.
    fn project_roots(&self, only: Option<u32>) -> Vec<super::ProjectRoot> {
        let names = self.ledger.project_names();
        let roots = self.ledger.store().project_roots().unwrap_or_default();
        let ids: std::collections::BTreeSet<u32> =
            names.keys().chain(roots.keys()).copied().filter(|id| only.is_none_or(|o| o == *id)).collect();
        ids.into_iter()
            .map(|id| super::ProjectRoot {
                id,
                name: names.get(&id).cloned(),
                path: roots.get(&id).and_then(|r| self.path_of(id, *r)),
            })
            .collect()
    }

    /// The path below its backing's root of directory `root` (backing, ino, generation), if
    /// it is still tagged project `id` (a tree cleared or re-assigned since is no longer its).
    fn path_of(&self, id: u32, root: (u8, u64, u32)) -> Option<String> {
        let b = self.ops.backings().get(root.0 as usize)?;
        let handle = crate::backing::Handle::ext4(root.1 as u32, root.2);
        let fd = b.open_handle(&handle, libc::O_RDONLY | libc::O_DIRECTORY).ok()?;
        if crate::ledger::tag::read_fd(std::os::fd::AsFd::as_fd(&fd)).ok()??.project != id {
            return None;
        }
        let at = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok()?;
        let base = std::fs::canonicalize(&b.path).ok()?;
        let rel = at.strip_prefix(&base).ok()?;
        // The name must still lead to the same directory (an unlinked one reads as
        // "<path> (deleted)"; a rename may race).
        let md = std::fs::symlink_metadata(base.join(rel)).ok()?;
        if !md.is_dir() || std::os::unix::fs::MetadataExt::ino(&md) != root.1 {
            return None;
        }
        rel.to_str().map(str::to_string)
    }

    /// `quota show` for the local user `uid`: their own user row, and the rows of projects
    /// whose top directory they own. Nothing about anybody else.
    fn show(&self, uid: u32) -> Response {
        let names = Names::load(self.ledger.project_names());
        let e = self.ledger.enforcer();
        let all = rows(&self.ledger.table().snapshot(), &names, &e.all_limits(), &e.grace_snapshot());
        let roots = self.ledger.store().project_roots().unwrap_or_default();
        let owned = |id: u32| roots.get(&id).is_some_and(|r| self.ops.owner_of(*r) == Some(uid));
        let mut mine: Vec<Row> = all
            .into_iter()
            .filter(|r| (r.kind == "user" && r.id == uid) || (r.kind == "project" && owned(r.id)))
            .collect();
        if !mine.iter().any(|r| r.kind == "user") {
            mine.insert(0, self.row(Subject::User(uid)));
        }
        Response::Report { rows: mine }
    }

    fn serve_tenant(&self, stream: UnixStream) {
        let uid = match crate::backing::sys::peer_uid(std::os::fd::AsFd::as_fd(&stream)) {
            Ok(uid) => uid,
            Err(_) => return,
        };
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            return;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Show) => self.show(uid),
            Ok(_) => Response::Error { message: "the tenant socket only answers `show`".into() },
            Err(e) => Response::Error { message: format!("bad request: {e}") },
        };
        let mut out = serde_json::to_string(&resp).unwrap_or_default();
        out.push('\n');
        let _ = (&stream).write_all(out.as_bytes());
    }
}

fn listen(path: &Path, mode: u32) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(l)
}

/// Accepts connections on `listener` for the daemon's lifetime, one thread per connection.
fn accept(
    name: &str,
    listener: UnixListener,
    server: Arc<Server>,
    handle: fn(&Server, UnixStream),
) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = Arc::clone(&server);
                std::thread::spawn(move || handle(&server, stream));
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Binds the sockets and serves them for the daemon's lifetime: `control.sock` (0600, root
/// only, every request) and `tenant.sock` (0666, `show` only, for the peer's own uid; the
/// state dir is 0711 so tenants can reach it). Returns the control socket's path.
pub fn start(state_dir: &Path, server: Server) -> Result<PathBuf, String> {
    let path = super::socket_path(state_dir);
    let control = listen(&path, 0o600)?;
    let tenants = listen(&state_dir.join(super::TENANT_SOCKET), 0o666)?;
    let server = Arc::new(server);
    accept("tenant", tenants, Arc::clone(&server), Server::serve_tenant)?;
    accept("control", control, server, Server::serve)?;
    Ok(path)
}
