//! What the operations run against that outlives a serving process: the backing stores, the
//! ledger and the quota enforcer that account for them, the router and the options
//! (`Backend`). A new process builds the same `Backend` from the config and the disk, as a
//! mount does: it opens the backings, recovers the ledger (docs/design.md §9.3), loads the
//! limits from its store and routes over the same backings.

use std::sync::Arc;

use crate::backing::{Backing, BackingIndex, Errno};
use crate::ledger::Ledger;
use crate::passthrough::Options;
use crate::passthrough::router::Router;
use crate::quota::enforce::Enforcer;

/// The long-lived context of the operations (see the module docs): nothing in it describes
/// what the kernel holds.
pub struct Backend {
    /// The backing stores, by index (backing 0 holds the mount root).
    pub backings: Arc<Vec<Backing>>,
    /// Records, epochs, snapshots: rebuilt by recovery from its log and store.
    pub ledger: Arc<Ledger>,
    /// Limits in force, grace timers, refusals (loaded from the ledger's store).
    pub quota: Arc<Enforcer>,
    /// Where operations on names run (routed subtrees); from the config's routes. Its marks
    /// live on the node table's entries (`ServingState::nodes`), not here.
    pub router: Router,
    /// The validated settings of this layer.
    pub opts: Options,
}

impl Backend {
    /// Backing `index`; ESTALE for an index no backing has (a node id from another config).
    pub fn backing(&self, index: BackingIndex) -> Result<&Backing, Errno> {
        self.backings.get(index.as_usize()).ok_or(Errno(libc::ESTALE))
    }
}
