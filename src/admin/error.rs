//! `AdminError`: why a service of the admin layer (the control and tenant sockets, metrics,
//! notifications, the progress reporter) could not start or write. At start the daemon
//! refuses to mount on any of them; Display is the whole message, naming what failed.

use std::net::SocketAddr;

#[derive(Debug)]
pub enum AdminError {
    /// A thread could not be started (`what`: which one).
    Thread { what: &'static str, error: std::io::Error },
    /// A file, directory or socket could not be made, bound, moved or written (`what` names
    /// the step and the path).
    Io { what: String, error: std::io::Error },
    /// The metrics address is taken or not ours to bind.
    Listen { addr: SocketAddr, error: std::io::Error },
    /// An environment variable quotafs reads holds what it cannot use; the message says what
    /// it expects.
    Env(String),
}

impl AdminError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AdminError {
        let what = what.into();
        move |error| AdminError::Io { what, error }
    }

    pub(crate) fn thread(what: &'static str) -> impl FnOnce(std::io::Error) -> AdminError {
        move |error| AdminError::Thread { what, error }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Thread { what, error } => write!(f, "cannot start the {what} thread: {error}"),
            AdminError::Io { what, error } => write!(f, "{what}: {error}"),
            AdminError::Listen { addr, error } => {
                write!(f, "cannot listen for metrics on {addr}: {error}; pick a free port with --metrics-listen")
            }
            AdminError::Env(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AdminError {}
