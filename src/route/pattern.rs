//! Route patterns and the per-directory match state (docs/design.md §14). Pure logic, no I/O:
//! parsing, overlap checks, and the state the router carries down the tree.
//!
//! A pattern is a path from the mount root, `/`-separated; `*` matches any one component,
//! anything else matches itself. The last component must be a literal name: it is the routed
//! directory (`/home/*/Dropbox`). The routed subtree lives on its backing at the same relative
//! path (`home/a/Dropbox/...`); the directories above it exist there too (same owners, modes
//! and project), invisible through the mount.

use std::ffi::{CStr, CString};

use crate::ids::BackingIndex;

/// One component of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comp {
    Any,
    Name(CString),
}

impl Comp {
    fn matches(&self, name: &CStr) -> bool {
        match self {
            Comp::Any => true,
            Comp::Name(n) => n.as_c_str() == name,
        }
    }
    fn compatible(&self, other: &Comp) -> bool {
        match (self, other) {
            (Comp::Name(a), Comp::Name(b)) => a == b,
            _ => true,
        }
    }
}

/// A route pattern quotafs refuses (bad input): the pattern and why, naming what to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "route pattern {:?}: {}", self.pattern, self.why)
    }
}

impl std::error::Error for PatternError {}

/// A parsed route pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
    pub comps: Vec<Comp>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let refuse = |why: &'static str| PatternError { pattern: text.to_string(), why };
        let bad = |why: &'static str| Err(refuse(why));
        if text.trim().is_empty() {
            return bad("empty; write a path from the mount root such as \"/home/*/Dropbox\"");
        }
        if !text.starts_with('/') {
            return bad("must start with '/' (a path from the mount root)");
        }
        let mut comps = Vec::new();
        for c in text.trim_end_matches('/').split('/').skip(1) {
            match c {
                "" => return bad("has an empty component ('//')"),
                "." | ".." => return bad("may not contain '.' or '..'"),
                "*" => comps.push(Comp::Any),
                c if c.contains('*') || c.contains('?') || c.contains('[') => {
                    return bad("'*' must be a whole component; other glob characters are not supported");
                }
                c => comps.push(Comp::Name(CString::new(c).map_err(|_| refuse("contains a NUL byte"))?)),
            }
        }
        match comps.last() {
            None => bad("routes nothing (the root itself cannot be routed)"),
            Some(Comp::Any) => bad("the last component must be a name (the routed directory), not '*'"),
            Some(_) => Ok(Pattern { text: text.to_string(), comps }),
        }
    }

    /// Whether some path could match both patterns, or one's routed directory could lie
    /// inside (or above) the other's.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let n = self.comps.len().min(other.comps.len());
        self.comps[..n].iter().zip(&other.comps[..n]).all(|(a, b)| a.compatible(b))
    }
}

/// The routes of a mount: patterns and the backing each leads to. A route's index here (its
/// position) is what `RouteState::partial` counts in.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    pub routes: Vec<(Pattern, BackingIndex)>,
}

impl Routes {
    /// The routes of `config` (pattern, backing directory) over the opened `backings`
    /// (`backing::open_all`): each pattern leads to the backing opened from its directory.
    pub fn over(config: &[(Pattern, std::path::PathBuf)], backings: &[crate::backing::Backing]) -> Routes {
        Routes {
            routes: config
                .iter()
                .map(|(p, dir)| {
                    let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                    let idx = backings.iter().find(|b| b.path == dir).map_or(BackingIndex::MAIN, |b| b.index);
                    (p.clone(), idx)
                })
                .collect(),
        }
    }

    /// What `backing::open_all` needs of `config`: each route's name in messages and its
    /// backing directory.
    pub fn routed_dirs(config: &[(Pattern, std::path::PathBuf)]) -> Vec<crate::backing::RoutedDir<'_>> {
        config.iter().map(|(p, dir)| (p.text.as_str(), dir.as_path())).collect()
    }
}

/// Where a directory of backing 0 stands against the patterns: its path from the mount root and
/// the patterns whose first `depth` components its path matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub path: Vec<CString>,
    /// (route index, components matched); only routes not yet complete.
    pub partial: Vec<(usize, usize)>,
}

/// What a name in a directory is, routing-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// An ordinary entry of the directory's own backing. `Some` if it is a directory on the way
    /// to a routed one (its state); `None` if no route passes through it.
    Local(Option<RouteState>),
    /// A routed directory, living on backing `backing` at `path` (the same relative path as
    /// through the mount).
    Routed { backing: BackingIndex, path: Vec<CString> },
}

impl Routes {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The state of the mount root, or None when there are no routes.
    pub fn root(&self) -> Option<RouteState> {
        (!self.routes.is_empty())
            .then(|| RouteState { path: Vec::new(), partial: (0..self.routes.len()).map(|i| (i, 0)).collect() })
    }

    /// What `name` in a directory with state `dir` is.
    pub fn step(&self, dir: &RouteState, name: &CStr) -> Step {
        let mut path = dir.path.clone();
        path.push(name.to_owned());
        let mut next = Vec::new();
        for &(r, depth) in &dir.partial {
            let (pattern, backing) = &self.routes[r];
            if !pattern.comps[depth].matches(name) {
                continue;
            }
            if depth + 1 == pattern.comps.len() {
                return Step::Routed { backing: *backing, path };
            }
            next.push((r, depth + 1));
        }
        Step::Local((!next.is_empty()).then_some(RouteState { path, partial: next }))
    }

    /// Routed directory names that can appear in a directory with state `dir`, with their
    /// backing (their last pattern component is a literal name).
    pub fn routed_names(&self, dir: &RouteState) -> Vec<(CString, BackingIndex)> {
        let mut out = Vec::new();
        for &(r, depth) in &dir.partial {
            let (pattern, backing) = &self.routes[r];
            if depth + 1 == pattern.comps.len()
                && let Comp::Name(n) = &pattern.comps[depth]
                && !out.iter().any(|(m, _)| m == n)
            {
                out.push((n.clone(), *backing));
            }
        }
        out
    }

    /// Whether moving a directory from state `from` to state `to` keeps every route through it
    /// the same (same routes, same depth): then its routed parts can move with it.
    pub fn same_shape(from: &RouteState, to: &RouteState) -> bool {
        from.partial == to.partial
    }
}

/// The relative path of `path`'s components (`a/b/c`).
pub fn join(path: &[CString]) -> CString {
    let mut v = Vec::new();
    for (i, c) in path.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c.as_bytes());
    }
    CString::new(v).expect("components have no NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(pats: &[&str]) -> Routes {
        Routes {
            routes: pats
                .iter()
                .enumerate()
                .map(|(i, p)| (Pattern::parse(p).unwrap(), BackingIndex(i as u8 + 1)))
                .collect(),
        }
    }

    #[test]
    fn parse_refuses_bad_patterns_with_reasons() {
        for (p, why) in [
            ("", "empty"),
            ("home/*/Dropbox", "start with '/'"),
            ("/home//Dropbox", "empty component"),
            ("/home/../Dropbox", "'..'"),
            ("/home/*", "last component"),
            ("/", "root itself"),
            ("/home/a*/Dropbox", "whole component"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.why.contains(why), "{p}: {e}");
        }
        assert_eq!(Pattern::parse("/home/*/Dropbox/").unwrap().comps.len(), 3);
    }

    #[test]
    fn overlap_detects_shared_and_nested_matches() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("/home/*/Dropbox").overlaps(&p("/home/a/Dropbox")));
        assert!(p("/home/*/Dropbox").overlaps(&p("/home/*/Dropbox/x")));
        assert!(p("/home/a").overlaps(&p("/home/*/Dropbox")));
        assert!(!p("/home/*/Dropbox").overlaps(&p("/srv/*/Dropbox")));
        assert!(!p("/home/*/Dropbox").overlaps(&p("/home/*/Mail")));
    }

    #[test]
    fn steps_follow_patterns_down_to_the_routed_directory() {
        let r = routes(&["/home/*/Dropbox", "/srv/cache"]);
        let root = r.root().unwrap();
        let c = |s: &str| CString::new(s).unwrap();
        assert_eq!(r.step(&root, &c("etc")), Step::Local(None));
        let Step::Local(Some(home)) = r.step(&root, &c("home")) else { panic!() };
        let Step::Local(Some(a)) = r.step(&home, &c("a")) else { panic!() };
        assert_eq!(a.path, vec![c("home"), c("a")]);
        assert_eq!(
            r.step(&a, &c("Dropbox")),
            Step::Routed { backing: BackingIndex(1), path: vec![c("home"), c("a"), c("Dropbox")] }
        );
        assert_eq!(r.step(&a, &c("Mail")), Step::Local(None));
        assert_eq!(r.routed_names(&a), vec![(c("Dropbox"), BackingIndex(1))]);
        assert!(r.routed_names(&home).is_empty());
        let Step::Local(Some(b)) = r.step(&home, &c("b")) else { panic!() };
        assert!(Routes::same_shape(&a, &b));
        assert!(!Routes::same_shape(&a, &home));
        assert!(matches!(r.step(&root, &c("srv")), Step::Local(Some(_))));
        assert!(Routes::default().root().is_none());
    }
}
