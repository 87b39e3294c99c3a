//! Names of subjects: user names through NSS (`getpwuid_r`/`getpwnam_r`, so files, LDAP and
//! SSSD alike), project names from the ledger's store (unique: one name names one project).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::quota::Subject;

/// Project names (from the store) and user-name lookups through NSS. A lookup that fails
/// (no such entry, or NSS unreachable) gives no name; the caller shows the id.
#[derive(Default)]
pub struct Names {
    projects: BTreeMap<u32, String>,
}

impl Names {
    pub fn load(projects: BTreeMap<u32, String>) -> Names {
        Names { projects }
    }

    /// The subject's name, if it has one.
    pub fn name(&self, s: Subject) -> Option<String> {
        match s {
            Subject::User(id) => user_name(id),
            Subject::Project(id) => self.projects.get(&id).cloned(),
        }
    }
}

/// How long a user-name lookup is reused: a listing names every user, and any local user can
/// ask for `quota show` (whose rows are named before they are filtered), so without reuse each
/// request would cost one NSS (possibly LDAP) lookup per user.
const NAME_TTL: Duration = Duration::from_secs(60);

/// uid → (its name or none, when it was looked up).
type NameCache = Mutex<HashMap<u32, (Option<String>, Instant)>>;

static USER_NAMES: OnceLock<NameCache> = OnceLock::new();

/// The user name of `uid` through NSS (an answer, name or none, is reused for `NAME_TTL`).
pub fn user_name(uid: u32) -> Option<String> {
    let cache = USER_NAMES.get_or_init(Mutex::default);
    if let Some((name, at)) = cache.lock().get(&uid)
        && at.elapsed() < NAME_TTL
    {
        return name.clone();
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    cache.lock().insert(uid, (name.clone(), Instant::now()));
    name
}

/// The uid of user `name` through NSS.
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

/// How a listing shows a subject's name: the name, or `#ID` when it has none (as repquota).
pub fn display(name: Option<&str>, id: u32) -> String {
    name.map_or_else(|| format!("#{id}"), str::to_string)
}

/// Checks a project name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not all digits (a
/// number names a project by id). Such names need no quoting in listings or dumps.
pub fn check_project_name(name: &str) -> Result<(), BadProjectName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok { Ok(()) } else { Err(BadProjectName(name.to_string())) }
}

/// A project name `check_project_name` refuses (bad input); Display says what a name may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadProjectName(pub String);

impl std::fmt::Display for BadProjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a project name: use 1 to 64 of the characters A-Z a-z 0-9 . _ -, not only digits",
            self.0
        )
    }
}

impl std::error::Error for BadProjectName {}
