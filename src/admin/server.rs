//! The daemon's answers to control and tenant requests (`serve.rs` runs the sockets).

use std::path::PathBuf;
use std::sync::Arc;

pub use super::names::Names;
use super::{CheckReport, DriftRow, Request, Response, Row};
use crate::check;
use crate::ids::InodeRef;
use crate::ledger::Ledger;
use crate::passthrough::Passthrough;
use crate::quota::limits::{LimitKey, Limits, rfc3339};
use crate::quota::{Subject, Usage};
use crate::scan;

/// The names of `check`'s scan among the running walks (`scan::running`), online and offline.
pub const CHECK_TASK: &str = "check";
pub const CHECK_REPAIR_TASK: &str = "check --repair";
/// How long a check waits for the operations in flight before it gives up (and new operations
/// wait behind it meanwhile).
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// What `show` needs about projects, for the tenant socket.
    pub projects: ProjectCache,
    /// Checkpoint counts and durations (the metrics).
    pub checkpoints: Arc<super::metrics::Checkpoints>,
    /// How FUSE requests travel ("uring", "classic"), once the kernel's INIT is answered.
    pub transport: Arc<std::sync::OnceLock<&'static str>>,
    /// The export connections' trees and mount points (docs/design.md §12.3), as `status`
    /// lists them: a JSON list.
    pub exports: serde_json::Value,
}

/// Each project's name and the uid owning its top directory, as `show` needs them: built by
/// one stat per project root, so kept for at most a second (whatever the request rate, the
/// stats cost one pass a second), and dropped by `project assign`. A chown of a project's top
/// directory shows in `quota show` within a second.
#[derive(Default)]
pub struct ProjectCache(parking_lot::Mutex<Option<(std::time::Instant, Arc<ProjectInfo>)>>);

#[derive(Default)]
pub struct ProjectInfo {
    /// Project id → uid owning its top directory.
    owners: std::collections::HashMap<u32, u32>,
    names: std::collections::BTreeMap<u32, String>,
}

impl ProjectCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(1);

    fn get(&self, build: impl FnOnce() -> ProjectInfo) -> Arc<ProjectInfo> {
        let mut slot = self.0.lock();
        if let Some((at, info)) = &*slot
            && at.elapsed() < Self::TTL
        {
            return Arc::clone(info);
        }
        let info = Arc::new(build());
        *slot = Some((std::time::Instant::now(), Arc::clone(&info)));
        info
    }

    fn clear(&self) {
        *self.0.lock() = None;
    }
}

impl Server {
    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Report => {
                let names = Names::load(self.ledger.project_names());
                let e = self.ops.quota();
                Response::Report {
                    rows: rows(&self.ledger.table().snapshot(), &names, &e.all_limits(), &e.grace_snapshot()),
                }
            }
            Request::QuotaSet { key, change } => {
                let Some(key) = LimitKey::from_key(key) else {
                    return Response::Error { message: "bad limit key".into() };
                };
                let current = self.ops.quota().get(key).unwrap_or_default();
                let set = current.merged(&change).map_err(|e| e.to_string()).and_then(|m| {
                    self.ledger.set_limits(self.ops.quota(), key, Some(m)).map(|()| m).map_err(String::from)
                });
                match set {
                    Ok(m) => Response::Done { message: serde_json::to_string(&m).unwrap_or_default() },
                    Err(message) => Response::Error { message },
                }
            }
            Request::QuotaGet { key } => match LimitKey::from_key(key) {
                Some(key) => Response::Done {
                    message: serde_json::to_string(&self.ops.quota().get(key).unwrap_or_default()).unwrap_or_default(),
                },
                None => Response::Error { message: "bad limit key".into() },
            },
            Request::QuotaClear { key } => {
                let Some(key) = LimitKey::from_key(key) else {
                    return Response::Error { message: "bad limit key".into() };
                };
                match self.ledger.set_limits(self.ops.quota(), key, None) {
                    Ok(()) => Response::Done { message: "cleared".into() },
                    Err(e) => Response::Error { message: e.to_string() },
                }
            }
            Request::Status => {
                let running = scan::running();
                if running.iter().any(|w| w.task == CHECK_TASK || w.task == CHECK_REPAIR_TASK) {
                    // The ledger is paused while `check` counts: its figures would wait for the
                    // end. Say what runs instead.
                    return Response::Status {
                        status: serde_json::json!({
                            "in_progress": running,
                            "paused": "usage changes wait while `quotafs check` counts the backings",
                            "mountpoint": self.mountpoint.display().to_string(),
                            "pid": std::process::id(),
                        }),
                    };
                }
                let mut status = super::status::status_json(&self.ledger, &self.ops);
                status["backings"] = self.pools.status_json();
                status["mountpoint"] = serde_json::json!(self.mountpoint.display().to_string());
                status["pid"] = serde_json::json!(std::process::id());
                status["transport"] = serde_json::json!(self.transport.get().copied().unwrap_or("starting"));
                status["exports"] = self.exports.clone();
                Response::Status { status }
            }
            Request::Check { repair } => {
                // Everything written so far on disk with its final allocation, charged.
                for b in self.ops.backings() {
                    let _ = crate::backing::sys::syncfs(b.root_fd());
                }
                self.ledger.reconcile(self.ops.beside());
                // Usage changes wait while the backings are counted, so the two agree exactly.
                // Bounded: one operation stuck in a backing that does not answer must not hold
                // every tenant behind the check (tests/routed_frozen_check.rs).
                let result = self.ledger.paused_within(CHECK_WAIT, "check", |_| {
                    let task = if repair { CHECK_REPAIR_TASK } else { CHECK_TASK };
                    let scanned = scan::scan_split_as(task, self.ops.backings(), scan::Mode::Count, self.threads);
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
                match result.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                    Ok(report) => {
                        if report.repaired
                            && let Err(e) = self.checkpoints.run(&self.ledger, self.ops.beside())
                        {
                            return Response::Error {
                                message: format!("repaired in memory, but the checkpoint failed: {e}"),
                            };
                        }
                        Response::Check { report }
                    }
                    Err(message) => Response::Error { message },
                }
            }
            Request::Checkpoint => match self.checkpoints.run(&self.ledger, self.ops.beside()) {
                Ok(epoch) => Response::Done { message: format!("checkpoint committed; epoch {epoch} begins") },
                Err(e) => Response::Error { message: e.to_string() },
            },
            Request::Restart => Response::Refused {
                message: "`restart` is for the supervisor of a --supervise mount (supervisor.sock)".into(),
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
                message: serde_json::to_string(&super::restore::dump(&self.ledger, self.ops.quota()))
                    .unwrap_or_default(),
            },
            Request::Restore { dump } => match super::restore::restore(&self.ledger, self.ops.quota(), &dump) {
                Ok(message) => Response::Done { message },
                Err(e) => Response::Error { message: e.to_string() },
            },
            Request::ProjectAssign { node, id, name, absorb } => {
                use crate::passthrough::AssignError;
                self.projects.clear();
                match self.ops.assign_named(node, id, name.as_deref(), absorb, self.threads) {
                    Ok(message) => Response::Done { message },
                    Err(AssignError::Refused(message)) => Response::Refused { message },
                    Err(AssignError::Failed(message)) => Response::Error { message },
                }
            }
        }
    }

    /// The reply to one request line on the control socket (the peer is root).
    pub(super) fn control_reply(&self, line: &[u8]) -> Response {
        match serde_json::from_slice::<Request>(line) {
            Ok(req) => self.handle(req),
            Err(e) => Response::Error { message: format!("bad request: {e}") },
        }
    }
}

impl Server {
    /// Subject `s`'s row from the live ledger (usage 0 if it has none).
    fn row(&self, s: Subject) -> Row {
        let names = Names::load(self.ledger.project_names());
        let e = self.ops.quota();
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

    /// The path below its backing's root of directory `root`, if it is still tagged project
    /// `id` (a tree cleared or re-assigned since is no longer its).
    fn path_of(&self, id: u32, root: InodeRef) -> Option<String> {
        let b = self.ops.backings().get(root.backing.as_usize())?;
        let handle = crate::backing::Handle::ext4(root.ino as u32, root.generation);
        let fd = b.open_handle(&handle, libc::O_RDONLY | libc::O_DIRECTORY).ok()?;
        if crate::tag::read_fd(std::os::fd::AsFd::as_fd(&fd)).ok()??.project != id {
            return None;
        }
        let at = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).ok()?;
        let base = std::fs::canonicalize(&b.path).ok()?;
        let rel = at.strip_prefix(&base).ok()?;
        // The name must still lead to the same directory (an unlinked one reads as
        // "<path> (deleted)"; a rename may race).
        let md = std::fs::symlink_metadata(base.join(rel)).ok()?;
        if !md.is_dir() || std::os::unix::fs::MetadataExt::ino(&md) != root.ino {
            return None;
        }
        rel.to_str().map(str::to_string)
    }

    /// `quota show` for the local user `uid`: their own user row, and the rows of projects
    /// whose top directory they own. Nothing about anybody else. Costs lookups of those
    /// subjects only (it runs on the socket thread, at any tenant's request).
    fn show(&self, uid: u32) -> Response {
        let projects = self.projects.get(|| {
            let roots = self.ledger.store().project_roots().unwrap_or_default();
            ProjectInfo {
                owners: roots.iter().filter_map(|(id, r)| Some((*id, self.ops.owner_of(*r)?))).collect(),
                names: self.ledger.project_names(),
            }
        });
        let mut subjects = vec![Subject::User(uid)];
        subjects
            .extend(projects.owners.iter().filter(|(_, owner)| **owner == uid).map(|(id, _)| Subject::Project(*id)));
        let table = self.ledger.table();
        let usage: std::collections::BTreeMap<Subject, Usage> = subjects.iter().map(|s| (*s, table.get(*s))).collect();
        let e = self.ops.quota();
        let limits = subjects
            .iter()
            .map(|s| LimitKey::Subject(*s))
            .chain([LimitKey::DefaultUser, LimitKey::DefaultProject])
            .filter_map(|k| Some((k, e.get(k)?)))
            .collect();
        let names = Names::load(
            subjects
                .iter()
                .filter_map(|s| match s {
                    Subject::Project(id) => Some((*id, projects.names.get(id)?.clone())),
                    Subject::User(_) => None,
                })
                .collect(),
        );
        Response::Report { rows: rows(&usage, &names, &limits, &e.grace_snapshot()) }
    }

    /// The reply to one request line on the tenant socket from local user `uid`.
    pub(super) fn tenant_reply(&self, uid: u32, line: &[u8]) -> Response {
        match serde_json::from_slice::<Request>(line) {
            Ok(Request::Show) => self.show(uid),
            Ok(_) => Response::Error { message: "the tenant socket only answers `show`".into() },
            Err(e) => Response::Error { message: format!("bad request: {e}") },
        }
    }
}
