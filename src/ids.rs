//! Identifiers every layer shares: which backing, and which inode on it. The lowest module:
//! it imports nothing from the crate.

/// Index of a backing store: 0 is the main backing, 1.. the routed ones in config order. Kept
/// in the high bits of every node id, in each activity-log record and in the redb tables that
/// split usage by backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackingIndex(pub u8);

impl BackingIndex {
    /// The main backing (not routed).
    pub const MAIN: BackingIndex = BackingIndex(0);

    pub fn as_usize(self) -> usize {
        usize::from(self.0)
    }

    pub fn is_main(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for BackingIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An inode on a backing, as a file handle names it: ext4 inode number and generation. The
/// ledger's key for every record, charge and pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeRef {
    pub backing: BackingIndex,
    pub ino: u64,
    pub generation: u32,
}
