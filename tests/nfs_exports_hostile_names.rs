//! `quotafs nfs exports` writes paths that tenants name: a tenant who owns the directory above
//! a project's root renames it to text that would end the quoted Path and add an EXPORT block
//! of its own (the server's `/`, read-write, no root squash). The generator leaves that project
//! out and says so; nothing of the name reaches the config outside a comment. And `--users`
//! refuses a mount root that tenants can write to (they would choose the homes).

mod common;

use std::process::Command;

use common::{BIN, Fixture, run, run_ok};

#[test]
fn a_tenant_named_path_cannot_add_config_to_the_generated_exports() {
    let f = Fixture::new("nfs-hostile-names");
    f.home("alice", 1001, 1001);
    f.sh_ok(1001, 1001, "mkdir -p alice/a/b/c/web alice/ok");
    for (dir, id) in [("alice/a/b/c/web", "9"), ("alice/ok", "10")] {
        run_ok(
            Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "assign", "--id", id]).arg(f.m(dir)),
        );
    }
    // alice owns the directories above project 9's root, so she may rename them as she likes:
    // three names that, joined by the path's slashes, would read as a block exporting `/`.
    f.sh_ok(
        1001,
        1001,
        r#"c1="$(printf 'x";\n}\nEXPORT {\n    Export_Id = 99;\n    Path = "')"
           c2="$(printf '";\n    Pseudo = "')"
           c3="$(printf 'evil";\n    Access_Type = RW;\n    Squash = No_Root_Squash;\n    FSAL { Name = VFS; }\n}\nEXPORT {\n    Export_Id = 98;\n    Path = "y')"
           mv alice/a/b/c "alice/a/b/$c3" && mv alice/a/b "alice/a/$c2" && mv alice/a "alice/$c1""#,
    );
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["nfs", "exports", "--projects"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let live: Vec<&str> = config.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(live.iter().filter(|l| **l == "EXPORT {").count(), 2, "the root and project 10 only:\n{config}");
    assert!(!live.iter().any(|l| l.contains("/evil") || *l == "Path = \"/\";"), "injected:\n{config}");
    assert!(config.contains("Pseudo = \"/projects/10\";"), "{config}");
    assert!(stderr.contains("project 9") && stderr.contains("rename it"), "project 9 named as left out: {stderr}");

    // A mount root tenants can write to: --users refuses, naming why.
    f.root("chmod 1777 .");
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["nfs", "exports", "--users"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by others than root"));
    assert!(out.stdout.is_empty(), "nothing printed when refused");
}
