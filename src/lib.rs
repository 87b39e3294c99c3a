//! quotafs: a FUSE file system over ext4 backing stores that keeps exact, crash-safe
//! per-user and per-project disk quotas. See docs/design.md for the layers and invariants.
//!
//! Request path: `fuse` (the kernel protocol, the one errno boundary) → `passthrough` (the
//! operations, on descriptors; each usage-changing one reserves against `quota` limits and
//! settles its charge with the `ledger`) → `backing` (the only `unsafe`: system calls), with
//! `inode` holding the node and open-file tables and the stripe locks. `ids` and `tag` are the
//! identifiers and the inode tag every layer reads; `scan` walks a backing, `check` holds
//! rescans against the ledger, `admin` serves the control and tenant sockets; `rquota` is the
//! NFS clients' quota service (a process of its own). No module imports one on its layer or
//! above (docs/design.md §1).

pub mod admin;
pub mod backing;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exports;
pub mod failpoint;
pub mod fuse;
pub mod ids;
pub mod inode;
pub mod ledger;
pub mod logging;
pub mod passthrough;
pub mod quota;
pub mod route;
pub mod rquota;
pub mod scan;
pub mod supervise;
pub mod tag;
pub mod watch;
pub mod wire;
