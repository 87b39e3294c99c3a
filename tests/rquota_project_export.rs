//! `quota` on an NFS client that mounted a project's generated export (`/projects/<name or
//! id>`): rquotad answers that project's figures to the tenant asking through the export's
//! path, and nothing else it did not answer before: another project, a named project by its
//! id, a path outside /projects, or a call without a credential stay Q_EPERM; a user query
//! under /projects is still the caller's own figures.

mod common;

use std::process::Command;

use common::nfs::{Netns, Rquotad};
use common::{BIN, Fixture, run_ok};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nfs/rquota_client.py");

fn get(ns: &Netns, port: u16, cred: u32, kind: &str, id: u32, path: &str) -> serde_json::Value {
    let mut c = ns.command("python3");
    c.arg(CLIENT).args(["get", "2", "udp", &port.to_string(), &cred.to_string(), kind, &id.to_string(), path]);
    serde_json::from_str(run_ok(&mut c).trim()).unwrap()
}

fn report_row(f: &Fixture, kind: &str, id: u32) -> serde_json::Value {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["report", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter().find(|r| r["kind"] == kind && r["id"] == id).unwrap_or_else(|| panic!("no {kind} {id} in {out}"))
}

fn quotafs(f: &Fixture, args: &[&str]) {
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args));
}

/// A v2 GETQUOTA of `path`, type project, id `id`, with AUTH_NONE, as hex.
fn anonymous_project_call(path: &str, id: u32) -> String {
    let mut words = vec![0x4242u32, 0, 2, 100_011, 2, 1, 0, 0, 0, 0];
    let mut msg: Vec<u8> = words.drain(..).flat_map(u32::to_be_bytes).collect();
    msg.extend((path.len() as u32).to_be_bytes());
    msg.extend(path.as_bytes());
    msg.resize(msg.len().div_ceil(4) * 4, 0);
    msg.extend(2u32.to_be_bytes());
    msg.extend(id.to_be_bytes());
    msg.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_tenant_sees_the_quota_of_the_project_export_it_mounted_and_nothing_more() {
    let f = Fixture::new("rquota-project-export");
    f.root("mkdir site lab && chown 1002:1002 site && chown 1003:1003 lab");
    quotafs(&f, &["project", "assign", "--id", "42", "--name", "site", f.m("site").to_str().unwrap()]);
    quotafs(&f, &["project", "assign", "--id", "7", f.m("lab").to_str().unwrap()]);
    quotafs(&f, &["quota", "set", "--project", "42", "--bytes-hard", "50M", "--inodes-hard", "900"]);
    quotafs(&f, &["quota", "set", "--project", "7", "--bytes-hard", "30M"]);
    quotafs(&f, &["quota", "set", "--user", "1002", "--bytes-hard", "20M"]);
    f.sh_ok(1002, 1002, "dd if=/dev/zero of=site/x bs=1M count=3 status=none && mkdir site/sub");

    let ns = Netns::new();
    let d = Rquotad::start(&ns, &f.state);
    let site = report_row(&f, "project", 42);
    let bytes = |q: &serde_json::Value, k: &str| q[k].as_u64().unwrap() * q["bsize"].as_u64().unwrap();

    // The project's owner and any other tenant, through the export's path or below it.
    for (uid, path) in [(1002, "/projects/site"), (1003, "/projects/site"), (1002, "/projects/site/sub")] {
        let q = get(&ns, d.port, uid, "project", 42, path);
        assert_eq!(q["status"], "ok", "uid {uid} on {path}: {q}");
        assert_eq!(bytes(&q, "bhard"), 50 << 20);
        assert_eq!(q["fhard"], 900);
        assert_eq!(bytes(&q, "curblocks"), site["bytes_used"].as_u64().unwrap().div_ceil(1024) * 1024);
        assert_eq!(q["curfiles"], site["inodes_used"]);
    }
    // An unnamed project's export is /projects/<id>.
    let lab = get(&ns, d.port, 1003, "project", 7, "/projects/7");
    assert_eq!(lab["status"], "ok", "{lab}");
    assert_eq!(bytes(&lab, "bhard"), 30 << 20);

    // Not the export's project, not an export the generator makes, not a project path at all.
    for (id, path) in [(7, "/projects/site"), (42, "/projects/42"), (42, "/projects/other"), (42, "/q"), (42, "/")] {
        assert_eq!(get(&ns, d.port, 1002, "project", id, path)["status"], "eperm", "project {id} on {path}");
    }
    let anon = run_ok(ns.command("python3").arg(CLIENT).args([
        "raw",
        "udp",
        &d.port.to_string(),
        &anonymous_project_call("/projects/site", 42),
    ]));
    assert!(anon.trim().ends_with("0000000000000003"), "no credential: Q_EPERM: {anon}");

    // A user query under a project's export: the caller's own figures, and only its own.
    let own = get(&ns, d.port, 1002, "user", 1002, "/projects/site");
    assert_eq!(own["status"], "ok", "{own}");
    assert_eq!(bytes(&own, "bhard"), 20 << 20);
    assert_eq!(get(&ns, d.port, 1002, "user", 1003, "/projects/site")["status"], "eperm");

    // Root on a trusted host (loopback) still sees any project, whatever the path.
    assert_eq!(get(&ns, d.port, 0, "project", 7, "/")["status"], "ok");

    // A project cleared from its tree no longer has an export for tenants to ask through.
    run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "clear"]).arg(f.m("lab")));
    assert_eq!(get(&ns, d.port, 1003, "project", 7, "/projects/7")["status"], "eperm");
}
