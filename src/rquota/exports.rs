//! How quotafs names NFS exports: the pseudo paths and export ids `quotafs nfs exports`
//! generates, and the reverse map `quotafs rquotad` uses to tell which project a client's
//! mount path names.
//!
//! ```text
//! export                 Pseudo                        Export_Id (ganesha: 16 bits)
//! the mount root         /quotafs                      1
//! project P              /projects/<name, else P>      1 + P          P in 1..=32766
//! user home of uid U     /users/<name, else U>         32768 + U      U in 1..=32767
//! ```
//!
//! The ranges are disjoint and each id depends only on its own subject, so an export keeps its
//! id (and NFS clients their handles, which embed it) when other projects or users come and go.
//! Project names are never only digits, so `/projects/42` and `/projects/site` cannot both
//! name one project ambiguously.

/// The mount root's pseudo path.
pub const ROOT_PSEUDO: &str = "/quotafs";
pub const ROOT_EXPORT_ID: u16 = 1;
pub const PROJECTS_DIR: &str = "/projects";
pub const USERS_DIR: &str = "/users";
/// The largest project id with an export id of its own.
pub const MAX_PROJECT: u32 = 32_766;
/// The largest uid with an export id of its own.
pub const MAX_UID: u32 = 32_767;

/// The export id of project `id`, if it has one.
pub fn project_export_id(id: u32) -> Option<u16> {
    (1..=MAX_PROJECT).contains(&id).then(|| (1 + id) as u16)
}

/// The export id of the home of uid `uid`, if it has one.
pub fn user_export_id(uid: u32) -> Option<u16> {
    (1..=MAX_UID).contains(&uid).then(|| (32_768 + uid) as u16)
}

/// The last component of a project's pseudo path: its name, else its id.
pub fn project_leaf(id: u32, name: Option<&str>) -> String {
    name.map_or_else(|| id.to_string(), str::to_string)
}

/// The last component of a user home's pseudo path: the user's name, else the uid.
pub fn user_leaf(uid: u32, name: Option<&str>) -> String {
    name.map_or_else(|| uid.to_string(), str::to_string)
}

/// Which project export a client's mount path lies in: the component after `/projects/`
/// (`/projects/site`, `/projects/site/sub`, `//projects/site/`), as written by the generator.
pub fn project_leaf_of(path: &str) -> Option<&str> {
    let mut parts = path.split('/').filter(|c| !c.is_empty());
    (parts.next()? == PROJECTS_DIR.trim_start_matches('/')).then_some(())?;
    parts.next()
}

/// Whether `s` may be written between double quotes in a ganesha config as it is: printable
/// ASCII without quote, backslash or the characters ganesha's parser treats specially.
pub fn config_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@,=: ".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_ids_are_disjoint_and_depend_only_on_their_subject() {
        assert_eq!(project_export_id(1), Some(2));
        assert_eq!(project_export_id(MAX_PROJECT), Some(32_767));
        assert_eq!(project_export_id(0), None);
        assert_eq!(project_export_id(MAX_PROJECT + 1), None);
        assert_eq!(user_export_id(1), Some(32_769));
        assert_eq!(user_export_id(MAX_UID), Some(65_535));
        assert_eq!(user_export_id(0), None);
        assert_eq!(user_export_id(40_000), None);
        let projects: std::collections::BTreeSet<u16> = (1..=MAX_PROJECT).filter_map(project_export_id).collect();
        assert!(!projects.contains(&ROOT_EXPORT_ID));
        assert!((1..=MAX_UID).filter_map(user_export_id).all(|e| !projects.contains(&e) && e != ROOT_EXPORT_ID));
    }

    #[test]
    fn client_paths_map_back_to_the_project_the_generator_named() {
        assert_eq!(project_leaf_of("/projects/site"), Some("site"));
        assert_eq!(project_leaf_of("//projects/site/sub/"), Some("site"));
        assert_eq!(project_leaf_of("/projects"), None);
        assert_eq!(project_leaf_of("/users/site"), None);
        assert_eq!(project_leaf_of("/q/projects/site"), None);
        assert_eq!(project_leaf(42, Some("site")), "site", "a named project is reached by its name only");
        assert_eq!(project_leaf(7, None), "7");
    }

    #[test]
    fn config_safe_refuses_what_could_end_a_quoted_string() {
        assert!(config_safe("/home/alice-2/web.site"));
        for bad in ["", "a\"b", "a\\b", "a\nb", "a;b", "a}b", "a#b", "a%b", "é"] {
            assert!(!config_safe(bad), "{bad:?}");
        }
    }
}
