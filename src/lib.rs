//! quotafs: a FUSE file system over ext4 backing stores that keeps exact, crash-safe
//! per-user and per-project disk quotas. See docs/design.md for the layers and invariants.
//!
//! Request path: `fuse` (the kernel protocol, the one errno boundary) → `passthrough` (the
//! operations, on descriptors) → `backing` (the only `unsafe`: system calls), with `inode`
//! holding the state the operations share.

pub mod admin;
pub mod backing;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod fuse;
pub mod inode;
pub mod ledger;
pub mod logging;
pub mod passthrough;
pub mod quota;
