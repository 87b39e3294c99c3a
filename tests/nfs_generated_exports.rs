//! `quotafs nfs exports --projects --users`: the generated EXPORT blocks keep their ids when
//! other projects come and go, ganesha accepts them, and a tenant mounting its project's export
//! over NFS (libnfs, v3 and v4) reads and writes there and meets the project's limit.

mod common;

use std::process::Command;

use common::nfs::{Client, Ganesha, Netns};
use common::{BIN, Fixture, assert_exact, run, run_ok};

fn quotafs(f: &Fixture, args: &[&str]) -> String {
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args));
    assert!(out.status.success(), "quotafs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assign(f: &Fixture, dir: &str, id: u32, name: Option<&str>) {
    let mut c = Command::new(BIN);
    c.arg("--state-dir").arg(&f.state).args(["project", "assign", "--id", &id.to_string()]).arg(f.m(dir));
    if let Some(n) = name {
        c.args(["--name", n]);
    }
    run_ok(&mut c);
}

/// The EXPORT block (with its comment line) whose Pseudo is `pseudo`.
fn block<'a>(config: &'a str, pseudo: &str) -> &'a str {
    let at = config.find(&format!("Pseudo = \"{pseudo}\";")).unwrap_or_else(|| panic!("no {pseudo} in:\n{config}"));
    let start = config[..at].rfind("\n# ").unwrap();
    let end = at + config[at..].find("\n}\n").unwrap() + 3;
    &config[start..end]
}

#[test]
fn generated_project_exports_are_stable_accepted_by_ganesha_and_enforce_the_project_limit() {
    let f = Fixture::new("nfs-generated");
    f.home("alice", 1001, 1001);
    f.root("mkdir -p site lab && chown 1002:1002 site && chown 1003:1003 lab");
    assign(&f, "site", 42, Some("site"));
    assign(&f, "lab", 7, None);
    quotafs(&f, &["quota", "set", "--project", "site", "--bytes-hard", "512K"]);

    let first = quotafs(&f, &["nfs", "exports", "--projects", "--users"]);
    let mnt = f.mnt.display().to_string();
    let site = block(&first, "/projects/site");
    assert!(site.contains("Export_Id = 43;") && site.contains(&format!("Path = \"{mnt}/site\";")), "{site}");
    let lab = block(&first, "/projects/7");
    assert!(lab.contains("Export_Id = 8;") && lab.contains(&format!("Path = \"{mnt}/lab\";")), "{lab}");
    let root = block(&first, "/quotafs");
    assert!(root.contains("Export_Id = 1;") && root.contains(&format!("Path = \"{mnt}\";")), "{root}");
    // alice's home; uids 1002 and 1003 own top-level directories too (site, lab), so they are
    // homes as well: whoever owns a top-level directory has one.
    let alice_pseudo = match common_user_name(1001) {
        Some(n) => format!("/users/{n}"),
        None => "/users/1001".to_string(),
    };
    let alice = block(&first, &alice_pseudo);
    assert!(alice.contains("Export_Id = 33769;") && alice.contains(&format!("Path = \"{mnt}/alice\";")), "{alice}");

    // Another project comes, one goes: site's block is the same text.
    f.root("mkdir other && chown 1004:1004 other");
    assign(&f, "other", 5, Some("other"));
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "clear"]).arg(f.m("lab")));
    let second = quotafs(&f, &["nfs", "exports", "--projects"]);
    assert_eq!(block(&second, "/projects/site"), site, "site's export changed:\n{second}");
    assert!(block(&second, "/projects/other").contains("Export_Id = 6;"));
    assert!(!second.contains("/projects/7"), "a cleared project keeps an export:\n{second}");
    assert!(!second.contains("/users/"), "--users not asked:\n{second}");

    // ganesha runs with the generated blocks, homes included (site is both a project's root
    // and uid 1002's home: one directory, two exports); uid 1002 mounts its project's export.
    let third = quotafs(&f, &["nfs", "exports", "--projects", "--users"]);
    assert_eq!(block(&third, "/projects/site"), site);
    let ns = Netns::new();
    let g = Ganesha::start_with_exports(&ns, &third, &f.scratch.dir.join("ganesha"));
    let mut v3 = Client::connect_to(&ns, "/projects/site", 3, 1002, 1002);
    assert_eq!(v3.ok("put /hello 10000"), "10000");
    assert_eq!(std::fs::metadata(f.m("site/hello")).unwrap().len(), 10_000, "written into the project's tree");
    std::fs::write(f.m("site/local"), "written on the server").unwrap();
    assert_eq!(v3.ok("cat /local"), "written on the server");

    // At the project's limit: EDQUOT through the export (NFS4ERR_DQUOT by name over v4).
    let mut v4 = Client::connect_to(&ns, "/projects/site", 4, 1002, 1002);
    let over = v4.cmd("put /big 3000000");
    assert!(over.contains("NFS4ERR_DQUOT"), "project limit over NFSv4 on the project's export: {over}");
    assert!(std::fs::metadata(f.m("site/big")).unwrap().len() <= 512 << 10);
    let over3 = v3.cmd("put /big3 3000000");
    assert!(over3.starts_with("err"), "project limit over NFSv3 on the project's export: {over3}");
    // A user's home export: alice writes into her home through it.
    let mut home = Client::connect_to(&ns, &alice_pseudo, 3, 1001, 1001);
    assert_eq!(home.ok("put /notes 1000"), "1000");
    assert_eq!(std::fs::metadata(f.m("alice/notes")).unwrap().len(), 1000);
    drop((v3, v4, home, g));
    assert_exact(&f.state, f.backing(), "after writes through a generated project export");
}

fn common_user_name(uid: u32) -> Option<String> {
    let out = run(Command::new("getent").args(["passwd", &uid.to_string()]));
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or("").to_string())
}
