//! `LedgerError`: why the ledger could not be opened, recovered, read or checkpointed. Each
//! variant's Display is the whole message an operator sees, naming what to do; callers decide
//! on the variant (`is_damaged`: a rescan rebuilds the ledger), never on the text.

use std::path::PathBuf;

use super::wal::LogError;

#[derive(Debug)]
pub enum LedgerError {
    /// The checkpoint store (`ledger.redb`) cannot be created, opened, read or written, or holds
    /// what this quotafs does not read (another format, a bad key). The backing is unaffected.
    Store { path: PathBuf, what: String, detail: String },
    /// An activity log cannot be read or is damaged before its last valid record.
    Log(LogError),
    /// A backing's journal directory cannot be made, listed or read, or holds an entry quotafs
    /// did not make.
    Journal(String),
    /// Reading or writing a backing or the state dir failed (stat, open, syncfs, a tag).
    Io(String),
    /// A scan (first mount, a new backing) could not read some entries, or could not run.
    Scan(String),
    /// The ledger refuses usage changes and checkpoints after a failed write: what its table
    /// says is not known to be durable. The message says what failed.
    Poisoned(String),
    /// A request the store refuses as it stands (a project name already given to another).
    Refused(String),
    /// A checkpoint put off to its next turn: an operation stayed in flight past the bounded
    /// wait (a backing that does not answer). Nothing is lost; the epoch just goes on.
    Deferred(String),
}

impl LedgerError {
    /// Whether the ledger's own files (store, activity logs, journal records) are damaged or
    /// unreadable: `quotafs check --repair` rebuilds them by a full rescan.
    pub fn is_damaged(&self) -> bool {
        matches!(self, LedgerError::Store { .. } | LedgerError::Log(_) | LedgerError::Journal(_))
    }

    /// The store could not be used (opened, read or written).
    pub fn is_store(&self) -> bool {
        matches!(self, LedgerError::Store { .. })
    }
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Store { path, what, detail } => write!(
                f,
                "ledger store {}: {what}: {detail}. The files on the backing are not affected; with the daemon \
                 stopped, run `quotafs check --repair` (with --config or --backing) to rebuild the ledger by a \
                 full rescan (the damaged store is kept aside)",
                path.display()
            ),
            LedgerError::Log(e) => e.fmt(f),
            LedgerError::Journal(m)
            | LedgerError::Io(m)
            | LedgerError::Scan(m)
            | LedgerError::Poisoned(m)
            | LedgerError::Refused(m)
            | LedgerError::Deferred(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LedgerError {}

impl From<LogError> for LedgerError {
    fn from(e: LogError) -> LedgerError {
        LedgerError::Log(e)
    }
}

/// For callers that only print the message (the CLI's `CliError`, the daemon's start errors).
impl From<LedgerError> for String {
    fn from(e: LedgerError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_message_names_the_repair() {
        let e = LedgerError::Store { path: "/s/ledger.redb".into(), what: "read".into(), detail: "bad page".into() };
        assert!(e.is_damaged() && e.is_store());
        assert_eq!(
            e.to_string(),
            "ledger store /s/ledger.redb: read: bad page. The files on the backing are not affected; with the \
             daemon stopped, run `quotafs check --repair` (with --config or --backing) to rebuild the ledger by \
             a full rescan (the damaged store is kept aside)"
        );
        let log = LedgerError::from(LogError::BadHeader { path: "/s/1.log".into() });
        assert!(log.is_damaged() && !log.is_store());
        assert!(!LedgerError::Poisoned("p".into()).is_damaged());
        assert!(!LedgerError::Refused("r".into()).is_damaged());
    }
}
