//! Export connections (docs/design.md §12.3): more FUSE connections of the same daemon, each
//! rooted at one exported tree (a project's top directory or a user's home), so that an NFS
//! server sees each tree as a file system of its own and answers FSSTAT with its quota.
//!
//! A connection's `View` maps its kernel's node ids to the daemon's: node 1 (`FUSE_ROOT_ID`)
//! is the tree's top, every other id is the daemon's self-describing id (backing and inode
//! number), the same on every connection and across restarts, so an NFS handle names the same
//! file whichever process serves it. Nothing outside the tree is handed to an export's kernel:
//! `..` of the top is the top, and a node id the kernel names without a lookup (an NFS handle,
//! `LOOKUP(node, ".")`) is served only if it lies in the tree.
//!
//! The `Fabric` keeps the connections' caches coherent: each connection's kernel caches pages,
//! attributes and entries, and sees only the changes made through itself. A change through one
//! connection drops the others' cached copies of what it touched, before the change's reply:
//! on the main connection always (the kernel answers ENOENT for what it does not hold), on an
//! export connection only for nodes its kernel holds (looked up through it, or its top).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock, RwLock, mpsc};
use std::time::Duration;

use super::FuseFront;
use super::session::Notifier;
use crate::backing::Errno;
use crate::inode::ROOT_ID;
use crate::passthrough::Entry;
use crate::wire::FileAttr;

/// Which files an export connection may serve when its kernel names them by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A project's tree: every inode in it carries the project (a file cannot change project
    /// by a rename or a link: EXDEV).
    Project(u32),
    /// A user's home: directories by their place (walked up to the top); other files only if
    /// the home's owner owns them (a non-directory has no way up).
    Home(u32),
}

/// What one connection shows of the mount.
#[derive(Clone, Debug)]
pub struct View {
    /// The connection's index in the `Fabric`: 0 is the main mount.
    pub conn: usize,
    /// The daemon's node id of the connection's root (`ROOT_ID` for the main mount).
    pub root: u64,
    /// `None` for the main mount.
    pub scope: Option<Scope>,
}

impl View {
    pub fn main() -> View {
        View { conn: 0, root: ROOT_ID, scope: None }
    }

    /// The daemon's node id of the kernel's `node`.
    pub fn inward(&self, node: u64) -> u64 {
        if node == ROOT_ID { self.root } else { node }
    }

    /// The kernel's node id of the daemon's `node`.
    pub fn outward(&self, node: u64) -> u64 {
        if node == self.root { ROOT_ID } else { node }
    }
}

/// What a change touched, in the daemon's node ids.
#[derive(Clone, Debug)]
pub enum Touched {
    /// Data in `[offset, offset + len)` (len 0: to the end) and the attributes of `node`.
    Data { node: u64, offset: i64, len: i64 },
    /// The attributes of `node`.
    Attr(u64),
    /// Entry `name` of directory `parent` (and the directory's attributes).
    Entry { parent: u64, name: Box<[u8]> },
}

/// One notification to send: connection, then what.
type Job = (Vec<(usize, Touched)>, Option<mpsc::SyncSender<()>>);

/// The connections of one daemon (see the module docs).
pub struct Fabric {
    /// Each connection's notifier, set once it is mounted; index 0 is the main mount.
    notifiers: Vec<OnceLock<Notifier>>,
    /// Each connection's root node (the daemon's id).
    roots: Vec<u64>,
    /// Root node -> the export connections rooted there (a project's top directory may also
    /// be a home).
    rooted: HashMap<u64, Vec<usize>>,
    /// Node -> (export connection, lookups its kernel holds). The main connection is not
    /// tracked.
    held: RwLock<HashMap<u64, Vec<(usize, u64)>>>,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// (connection, node) -> writes through that connection being served now: their pages
    /// stay locked in that connection's kernel until their replies.
    writing: Mutex<HashMap<(usize, u64), u32>>,
}

/// A write being served (`Fabric::write_served`); its entry goes when this is dropped, after
/// the reply.
pub struct Writing<'a> {
    fabric: &'a Fabric,
    key: (usize, u64),
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.fabric.writing.lock()
            && let Some(n) = w.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                w.remove(&self.key);
            }
        }
    }
}

/// How long a change's reply waits for the other connections' caches to be dropped. Dropping
/// pages waits for the page locks of I/O in flight on that connection: a read served by a pool
/// this request may hold, or a write to the same pages through that connection, which itself
/// waits here until its own reply is sent (two connections writing one file at once). Past
/// the bound the reply goes out and the pages are dropped as soon as that I/O ends.
const WAIT: Duration = Duration::from_millis(200);

impl Fabric {
    /// A fabric of the main connection and export connections with roots `roots` (the daemon's
    /// node ids, in connection order from 1). Starts the thread that sends notifications.
    pub fn new(roots: &[u64]) -> Result<Arc<Fabric>, String> {
        let (tx, rx) = mpsc::channel::<Job>();
        let mut all = vec![ROOT_ID];
        all.extend_from_slice(roots);
        let mut rooted: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, r) in roots.iter().enumerate() {
            rooted.entry(*r).or_default().push(i + 1);
        }
        let fabric = Arc::new(Fabric {
            notifiers: all.iter().map(|_| OnceLock::new()).collect(),
            roots: all,
            rooted,
            held: RwLock::default(),
            jobs: Mutex::new(tx),
            writing: Mutex::default(),
        });
        let weak = Arc::downgrade(&fabric);
        // Never a FUSE worker: dropping pages waits on reads in flight on that connection.
        std::thread::Builder::new()
            .name("coherence".into())
            .spawn(move || {
                while let Ok((sends, done)) = rx.recv() {
                    let Some(f) = weak.upgrade() else { return };
                    for (conn, t) in &sends {
                        f.send(*conn, t);
                    }
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                }
            })
            .map_err(|e| format!("cannot start the coherence thread: {e}"))?;
        Ok(fabric)
    }

    /// Connection `conn` is mounted and takes notifications through `n`.
    pub fn set_notifier(&self, conn: usize, n: Notifier) {
        if let Some(slot) = self.notifiers.get(conn) {
            let _ = slot.set(n);
        }
    }

    fn send(&self, conn: usize, t: &Touched) {
        let Some(n) = self.notifiers.get(conn).and_then(OnceLock::get) else { return };
        let kernel = |node: u64| if node == self.roots[conn] { ROOT_ID } else { node };
        let r = match t {
            Touched::Data { node, offset, len } => n.inval_inode(kernel(*node), *offset, *len),
            Touched::Attr(node) => n.inval_inode(kernel(*node), -1, 0),
            Touched::Entry { parent, name } => n.inval_entry(kernel(*parent), name),
        };
        tracing::trace!(conn, ?t, ok = r.is_ok(), "cache of another connection dropped");
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => tracing::debug!(conn, error = %e, "cannot drop another connection's cached copy"),
        }
    }

    /// Whether export connection `conn`'s kernel holds `node` (looked up through it: it lies in
    /// the connection's tree).
    fn holds(&self, conn: usize, node: u64) -> bool {
        node == self.roots[conn]
            || self.held.read().is_ok_and(|h| h.get(&node).is_some_and(|v| v.iter().any(|(c, _)| *c == conn)))
    }

    /// Export connection `conn`'s kernel got one more lookup of `node`.
    fn handed(&self, conn: usize, node: u64) {
        if conn == 0 || node == self.roots[conn] {
            return;
        }
        if let Ok(mut h) = self.held.write() {
            let v = h.entry(node).or_default();
            match v.iter_mut().find(|(c, _)| *c == conn) {
                Some((_, n)) => *n += 1,
                None => v.push((conn, 1)),
            }
        }
    }

    /// Export connection `conn`'s kernel forgot `n` lookups of `node`.
    fn forgot(&self, conn: usize, node: u64, n: u64) {
        if conn == 0 {
            return;
        }
        if let Ok(mut h) = self.held.write()
            && let Some(v) = h.get_mut(&node)
        {
            v.retain_mut(|(c, count)| {
                if *c == conn {
                    *count = count.saturating_sub(n);
                }
                *c != conn || *count > 0
            });
            if v.is_empty() {
                h.remove(&node);
            }
        }
    }

    /// A write of `[offset, offset + len)` of `node` through `from` succeeded: as `changed`,
    /// except that it does not wait for a connection with a write of that node being served
    /// (each would wait for the other's page locks); those pages are dropped once that write
    /// ends. Keep the returned value until the write's reply is sent.
    pub fn write_served(&self, from: usize, node: u64, offset: i64, len: i64) -> Option<Writing<'_>> {
        let sends = self.sends(from, &[Touched::Data { node, offset, len }]);
        if sends.is_empty() {
            return None;
        }
        let key = (from, node);
        let others_writing = {
            let Ok(mut w) = self.writing.lock() else { return None };
            *w.entry(key).or_insert(0) += 1;
            w.keys().any(|(c, n)| *n == node && *c != from)
        };
        self.notify(from, sends, !others_writing);
        Some(Writing { fabric: self, key })
    }

    /// Drops the other connections' cached copies of what a change through `from` touched,
    /// and returns once that is done (or after `WAIT`).
    pub fn changed(&self, from: usize, touched: &[Touched]) {
        let sends = self.sends(from, touched);
        self.notify(from, sends, true);
    }

    /// The notifications a change through `from` needs: connection and what.
    fn sends(&self, from: usize, touched: &[Touched]) -> Vec<(usize, Touched)> {
        let mut sends: Vec<(usize, Touched)> = Vec::new();
        let Ok(held) = self.held.read() else { return sends };
        for t in touched {
            let node = match t {
                Touched::Data { node, .. } | Touched::Attr(node) => *node,
                Touched::Entry { parent, .. } => *parent,
            };
            let holders = held.get(&node).into_iter().flatten().map(|(c, _)| *c);
            let rooted = self.rooted.get(&node).into_iter().flatten().copied();
            let mut conns: Vec<usize> =
                std::iter::once(0).chain(holders).chain(rooted).filter(|c| *c != from).collect();
            conns.dedup();
            sends.extend(conns.into_iter().map(|c| (c, t.clone())));
        }
        drop(held);
        sends
    }

    fn notify(&self, from: usize, sends: Vec<(usize, Touched)>, wait: bool) {
        tracing::trace!(from, sends = sends.len(), "changed");
        if sends.is_empty() {
            return;
        }
        if !wait {
            if let Ok(j) = self.jobs.lock() {
                let _ = j.send((sends, None));
            }
            return;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let queued = self.jobs.lock().map(|j| j.send((sends, Some(tx))).is_ok()).unwrap_or(false);
        if queued && rx.recv_timeout(WAIT).is_err() {
            tracing::warn!(
                conn = from,
                "other connections' caches not dropped in time; they may serve stale data briefly"
            );
        }
    }

    /// Drops every export connection's cached copies of the nodes it holds on backing
    /// `index` (written behind the mount's back: `watch_routes`), without waiting.
    pub fn drop_backing(&self, index: crate::ids::BackingIndex) {
        let sends: Vec<(usize, Touched)> = match self.held.read() {
            Ok(held) => held
                .iter()
                .filter(|(node, _)| crate::inode::backing_of(**node) == index)
                .flat_map(|(node, conns)| {
                    conns.iter().map(|(c, _)| (*c, Touched::Data { node: *node, offset: 0, len: 0 }))
                })
                .collect(),
            Err(_) => return,
        };
        if let Ok(j) = self.jobs.lock() {
            let _ = j.send((sends, None));
        }
    }

    /// Drops connection `conn`'s own cached pages of `node` (a refused write-back), without
    /// waiting.
    pub fn drop_own(&self, conn: usize, node: u64, offset: i64, len: i64) {
        if let Ok(j) = self.jobs.lock() {
            let _ = j.send((vec![(conn, Touched::Data { node, offset, len })], None));
        }
    }
}

impl FuseFront {
    /// LOOKUP as this connection's view allows: on an export connection `..` of the top is the
    /// top, and a node named by number (`.`) must lie in the tree.
    pub(super) fn lookup(&self, node: u64, name: &OsStr) -> Result<Entry, Errno> {
        let Some(scope) = self.view.scope else { return self.ops.lookup(node, name) };
        match name.as_bytes() {
            b".." if node == self.view.root => self.ops.lookup(node, OsStr::new(".")),
            b"." => {
                let e = self.ops.lookup(node, name)?;
                if self.admits(scope, e.attr.ino)? {
                    Ok(e)
                } else {
                    self.ops.forget(e.attr.ino, 1);
                    tracing::warn!(
                        node,
                        export = self.view.root,
                        "refusing a handle for a node outside the export's tree"
                    );
                    Err(Errno(libc::ESTALE))
                }
            }
            _ => self.ops.lookup(node, name),
        }
    }

    fn admits(&self, scope: Scope, node: u64) -> Result<bool, Errno> {
        if node == self.view.root || self.fabric.as_ref().is_some_and(|f| f.holds(self.view.conn, node)) {
            return Ok(true);
        }
        self.ops.in_tree(node, self.view.root, &|st: &libc::stat, project: u32| match scope {
            Scope::Project(p) => project == p,
            Scope::Home(uid) => st.st_uid == uid,
        })
    }

    /// `attr` as this connection's kernel names it; an entry reply also counts the lookup.
    pub(super) fn outward(&self, attr: &FileAttr, entry: bool) -> FileAttr {
        if entry {
            self.handed(attr.ino);
        }
        let mut a = *attr;
        a.ino = self.view.outward(a.ino);
        a
    }

    /// This connection's kernel got one more lookup of `node` (the daemon's id).
    pub(super) fn handed(&self, node: u64) {
        if let Some(f) = &self.fabric {
            f.handed(self.view.conn, node);
        }
    }

    /// FORGET of the kernel's `node`.
    pub(super) fn forget_node(&self, node: u64, n: u64) {
        let node = self.view.inward(node);
        self.ops.forget(node, n);
        if let Some(f) = &self.fabric {
            f.forgot(self.view.conn, node, n);
        }
    }

    /// A change through this connection touched `what`: the other connections drop their
    /// cached copies before the reply.
    pub(super) fn touched(&self, what: &[Touched]) {
        if let Some(f) = &self.fabric {
            f.changed(self.view.conn, what);
        }
    }
}
