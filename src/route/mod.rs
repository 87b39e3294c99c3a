//! Routing (docs/design.md §14): subtrees served from another backing (each user's `Dropbox`
//! on a disk of its own).
//!
//! - `pattern`: the patterns and the per-directory match state; pure logic, no I/O.
//! - `dirs`: the directory I/O routing needs on the backings (routed paths, `..` walks, the
//!   shadowed-path check).
//!
//! The `Router`, which answers for a name in a directory where an operation runs, reads the
//! inode table's route marks and tags, so it sits a layer up, in `passthrough::router`.

pub mod dirs;
mod pattern;

pub use dirs::conflicts;
pub use pattern::{Comp, Pattern, PatternError, RouteState, Routes, Step, join};
