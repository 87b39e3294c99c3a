//! Routing (docs/design.md §14): subtrees served from another backing (each user's `Dropbox`
//! on a disk of its own).
//!
//! - `pattern`: the patterns and the per-directory match state; pure logic, no I/O.
//! - `dirs`: the directory I/O routing needs on the backings (routed paths, `..` walks, the
//!   shadowed-path check).
//! - `router`: the `Router`, which answers for a name in a directory where the operation runs
//!   (which backing, which directory, what to make on the way) and which backing serves a
//!   node's requests.

mod dirs;
mod pattern;
mod router;

pub use dirs::conflicts;
pub use pattern::{Comp, Pattern, RouteState, Routes, Step, join};
pub use router::{AfterRename, HiddenDir, Listed, Place, RenameRoute, RoutedDir, Router};
