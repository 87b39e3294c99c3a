//! The control socket: `control.sock` in the state dir, mode 0600 (root only), one JSON
//! request line → one JSON response line. The CLI uses it to reach a running daemon; with no
//! daemon the CLI works on the store directly.

mod error;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod restore;
pub mod serve;
pub mod server;
pub mod status;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::AdminError;

pub const SOCKET: &str = "control.sock";
/// World-accessible: answers any local user with their own figures only (`quota show`).
pub const TENANT_SOCKET: &str = "tenant.sock";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Report,
    Status,
    /// Replace the serving process (`quotafs restart`): answered by the supervisor of a
    /// `--supervise` mount on its own socket (`supervise::SOCKET`), not by the daemon.
    Restart,
    Check {
        repair: bool,
    },
    Checkpoint,
    ProjectAssign {
        node: u64,
        id: u32,
        name: Option<String>,
        /// Move inodes of other projects found in the tree too (else the request is refused).
        #[serde(default)]
        absorb: bool,
    },
    /// Merges `change` into the limits of `key` (a `LimitKey::key()`).
    QuotaSet {
        key: u64,
        change: crate::quota::limits::Limits,
    },
    QuotaClear {
        key: u64,
    },
    QuotaGet {
        key: u64,
    },
    /// Every limit and project name (`Done` carries a `restore::LimitsDump` as JSON).
    Dump,
    /// Replaces every limit and project name with the dump's, all or nothing.
    Restore {
        dump: restore::LimitsDump,
    },
    /// On the tenant socket: the caller's own figures (the uid comes from SO_PEERCRED).
    Show,
    /// One subject's row (`kind` "user" or "project"), with its usage (0 if none) and the
    /// limits in force for it, own or default: what `quotafs rquotad` answers from.
    Quota {
        kind: String,
        id: u32,
    },
    /// Every project (or only project `id`) with its name and where its top directory is on
    /// the mount (`Done` carries a JSON list of `ProjectRoot`): what `quotafs nfs exports`
    /// and `quotafs rquotad` name exports by.
    Projects {
        #[serde(default)]
        id: Option<u32>,
    },
}

/// A project and its top directory, as `Request::Projects` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRoot {
    pub id: u32,
    pub name: Option<String>,
    /// Relative to the mount root ("" for the root itself); `None` when no directory carries
    /// the project's tag at the recorded root any more (cleared, re-assigned, removed) or its
    /// path is not UTF-8: the project has no export then.
    pub path: Option<String>,
}

/// One row of `quotafs report`: usage, the limits in force (own or default; null: none), and
/// when a running grace period ends (RFC 3339, null: none running).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub kind: String,
    pub id: u32,
    pub name: Option<String>,
    pub bytes_used: u64,
    pub inodes_used: u64,
    pub bytes_soft: Option<u64>,
    pub bytes_hard: Option<u64>,
    pub inodes_soft: Option<u64>,
    pub inodes_hard: Option<u64>,
    pub grace_expires: Option<String>,
    /// Also for inodes, when its grace period differs from the bytes'.
    pub inodes_grace_expires: Option<String>,
    /// The same two instants as Unix seconds (for "grace left").
    #[serde(default)]
    pub grace_expires_unix: Option<u64>,
    #[serde(default)]
    pub inodes_grace_expires_unix: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriftRow {
    pub kind: String,
    pub id: u32,
    pub expected_bytes: u64,
    pub expected_inodes: u64,
    pub found_bytes: u64,
    pub found_inodes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckReport {
    pub inodes: u64,
    pub seconds: f64,
    pub drift: Vec<DriftRow>,
    pub repaired: bool,
    pub errors: u64,
    /// Routed paths that also exist on the main backing (shadowed there).
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Files unlinked but still open, which the scan cannot see: counted at their charge in
    /// the ledger (what their last close takes off).
    #[serde(default)]
    pub open_unlinked: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Report {
        rows: Vec<Row>,
    },
    Status {
        status: serde_json::Value,
    },
    Check {
        report: CheckReport,
    },
    Done {
        message: String,
    },
    Error {
        message: String,
    },
    /// The request was understood and refused as it stands (the operator must change it:
    /// exit status 2); nothing was changed.
    Refused {
        message: String,
    },
}

/// Why a request to a running daemon got no answer. (No daemon listening is not an error:
/// `call` answers `Ok(None)` and the caller works on the store, or says so.)
#[derive(Debug)]
pub enum CallError {
    /// The socket is there but refused this process (the control socket is root's only).
    Connect { path: PathBuf, error: std::io::Error },
    /// The request could not be written or the reply not read whole (`what`: "write to" or
    /// "read from"): the daemon stopped, or its socket was replaced, midway.
    Io { path: PathBuf, what: &'static str, error: std::io::Error },
    /// The request could not be encoded, or the reply is not one this quotafs reads (a daemon
    /// of another version).
    Json { what: &'static str, error: serde_json::Error },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect { path, error } => {
                write!(f, "cannot reach the daemon at {}: {error}", path.display())?;
                if error.kind() == std::io::ErrorKind::PermissionDenied {
                    f.write_str(" (the control socket is root's: run this as root)")?;
                }
                Ok(())
            }
            CallError::Io { path, what, error } => write!(f, "{what} {}: {error}", path.display()),
            CallError::Json { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for CallError {}

/// For the CLI, which prints the message (exit status 1).
impl From<CallError> for String {
    fn from(e: CallError) -> String {
        e.to_string()
    }
}

/// Sends one request to the daemon. `Ok(None)`: no daemon is listening.
pub fn call(state_dir: &Path, req: &Request) -> Result<Option<Response>, CallError> {
    call_at(&socket_path(state_dir), req)
}

/// Like `call`, on any socket path.
pub fn call_at(path: &Path, req: &Request) -> Result<Option<Response>, CallError> {
    let path = path.to_path_buf();
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(error) => return Err(CallError::Connect { path, error }),
    };
    stream.set_read_timeout(Some(Duration::from_secs(3600))).ok();
    let mut line =
        serde_json::to_string(req).map_err(|error| CallError::Json { what: "cannot encode the request", error })?;
    line.push('\n');
    if let Err(error) = stream.write_all(line.as_bytes()) {
        return Err(CallError::Io { path, what: "write to", error });
    }
    let mut reply = String::new();
    if let Err(error) = BufReader::new(stream).read_line(&mut reply) {
        return Err(CallError::Io { path, what: "read from", error });
    }
    serde_json::from_str(&reply).map(Some).map_err(|error| CallError::Json { what: "bad reply from the daemon", error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_is_no_error_and_a_refused_socket_says_to_run_as_root() {
        let dir = std::env::temp_dir().join(format!("quotafs-call-{}", std::process::id()));
        assert!(matches!(call(&dir, &Request::Status), Ok(None)));
        let e = CallError::Connect {
            path: "/var/lib/quotafs/control.sock".into(),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(e.to_string().ends_with("(the control socket is root's: run this as root)"), "{e}");
    }
}
