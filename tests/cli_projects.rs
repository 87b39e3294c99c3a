//! `project assign` over a tree that holds another project is refused (exit 2, the projects
//! named, nothing moved) unless `--absorb`; a project name names one project only.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run, run_ok};

fn project(f: &Fixture, id: u32) -> (u64, u64) {
    report(&f.state).get(&("project".to_string(), id)).copied().unwrap_or_default()
}

#[test]
fn nested_assignment_refused_unless_absorbed_and_names_unique() {
    let f = Fixture::new("cli-projects");
    let st = f.state.to_str().unwrap().to_string();
    f.home("site", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir -p site/inner/deep && for i in 1 2 3; do echo $i > site/f$i; echo $i > site/inner/g$i; echo $i > site/inner/deep/h$i; done");
    let quotafs = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["--state-dir", &st]).args(args);
        run(&mut c)
    };
    let inner = f.m("site/inner").display().to_string();
    let site = f.m("site").display().to_string();
    let out = quotafs(&["project", "assign", &inner, "--id", "42", "--name", "inner"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p42 = project(&f, 42);
    assert_eq!(p42.1, 8, "inner, deep and six files");

    // Project 6 over the tree that holds 42: refused, exit 2, 42 untouched, nothing in 6.
    let out = quotafs(&["project", "assign", &site, "--id", "6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "nested assignment must be refused: {err}");
    assert!(err.contains("project 42 (8 inodes)") && err.contains("--absorb"), "{err}");
    assert_eq!((project(&f, 42), project(&f, 6)), (p42, (0, 0)), "nothing moved");
    // Renumbering the tree of 42 itself is refused the same way.
    let out = quotafs(&["project", "assign", &inner, "--id", "7"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(project(&f, 42), p42);

    // A name already taken by another project: refused before anything moves.
    std::fs::create_dir(f.m("other")).unwrap();
    let other = f.m("other").display().to_string();
    let out = quotafs(&["project", "assign", &other, "--id", "43", "--name", "inner"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a duplicate name must be refused: {err}");
    assert!(err.contains("taken by project 42"), "{err}");
    assert_eq!(project(&f, 43), (0, 0));
    // Names that would not parse as one word, or as an id: refused.
    for bad in ["two words", "123", ""] {
        let out = quotafs(&["project", "assign", &other, "--id", "43", "--name", bad]);
        assert_eq!(out.status.code(), Some(2), "name {bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // So a name picks exactly one project.
    let list = run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "list", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.iter().filter(|p| p["name"] == "inner").count(), 1, "{list:?}");
    let out = quotafs(&["report", "--json", "--project", "inner"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rows.len(), rows[0]["id"].as_u64()), (1, Some(42)));

    // Clearing the outer tree would end 42 too: refused; `clear` of 42's own tree is fine.
    let out = quotafs(&["project", "clear", &site]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // Explicitly absorbed: all of 42 moves into 6, exactly.
    let out = quotafs(&["project", "assign", &site, "--id", "6", "--absorb"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(project(&f, 42), (0, 0));
    assert_eq!(project(&f, 6).1, 12, "site, its three files and all of inner");
    assert_exact(&f.state, f.backing(), "after absorbing 42 into 6");
    let out = quotafs(&["project", "clear", &site]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(project(&f, 6), (0, 0));
    assert_exact(&f.state, f.backing(), "after clear");
}
