//! `quota` on NFS clients: `quotafs rquotad` answers the rquota RPC service (program 100011,
//! versions 1 and 2, over UDP and TCP, registered with rpcbind) from the live ledger. Run in a
//! network namespace of the test's own, with its own rpcbind; queried by a small XDR client
//! (tests/nfs/rquota_client.py) as NFS clients' quota(1) would.

mod common;

use std::process::Command;

use common::nfs::{Netns, Rquotad};
use common::{BIN, Fixture, run_ok};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nfs/rquota_client.py");

fn client(ns: &Netns, args: &[&str]) -> String {
    let mut c = ns.command("python3");
    c.arg(CLIENT).args(args);
    run_ok(&mut c).trim().to_string()
}

fn get(ns: &Netns, vers: u32, proto: &str, port: u16, cred: u32, kind: &str, id: u32) -> serde_json::Value {
    let out =
        client(ns, &["get", &vers.to_string(), proto, &port.to_string(), &cred.to_string(), kind, &id.to_string()]);
    serde_json::from_str(&out).unwrap()
}

fn report_row(f: &Fixture, kind: &str, id: u32) -> serde_json::Value {
    let out = run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["report", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter().find(|r| r["kind"] == kind && r["id"] == id).unwrap_or_else(|| panic!("no {kind} {id} in {out}"))
}

/// The protocol's figures, back in bytes and inodes, as a client computes them.
fn bytes(q: &serde_json::Value, field: &str) -> u64 {
    q[field].as_u64().unwrap() * q["bsize"].as_u64().unwrap()
}

#[test]
fn nfs_clients_quota_matches_the_ledger() {
    let f = Fixture::new("rquota");
    f.home("alice", 1001, 1001);
    let quota =
        |args: &[&str]| run_ok(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["quota", "set"]).args(args));
    quota(&["--user", "1001", "--bytes-soft", "4M", "--bytes-hard", "20M", "--inodes-hard", "1000"]);
    f.sh_ok(1001, 1001, "dd if=/dev/zero of=alice/a bs=1M count=5 status=none && touch alice/b");
    f.root("mkdir site && chown 1002:1002 site");
    run_ok(
        Command::new(BIN)
            .arg("--state-dir")
            .arg(&f.state)
            .args(["project", "assign"])
            .arg(f.m("site"))
            .args(["--id", "42"]),
    );
    quota(&["--project", "42", "--bytes-hard", "50M"]);
    f.sh_ok(1002, 1002, "dd if=/dev/zero of=site/x bs=1M count=3 status=none");

    let ns = Netns::new();
    let d = Rquotad::start(&ns, &f.state);
    let alice = report_row(&f, "user", 1001);
    for vers in [1, 2] {
        for proto in ["udp", "tcp"] {
            let registered: u16 = client(&ns, &["getport", &vers.to_string(), proto]).parse().unwrap();
            assert_eq!(registered, d.port, "rpcbind gives clients v{vers}/{proto}");
            let q = get(&ns, vers, proto, d.port, 1001, "user", 1001);
            assert_eq!(q["status"], "ok", "v{vers}/{proto}: {q}");
            assert_eq!(bytes(&q, "bhard"), 20 << 20);
            assert_eq!(bytes(&q, "bsoft"), 4 << 20);
            let used = alice["bytes_used"].as_u64().unwrap();
            assert_eq!(bytes(&q, "curblocks"), used.div_ceil(1024) * 1024, "v{vers}/{proto}: {q} vs {alice}");
            assert_eq!(q["curfiles"], alice["inodes_used"]);
            assert_eq!(q["fhard"], 1000);
            // Over the soft limit: the grace period runs (7 days by default).
            let left = q["btimeleft"].as_u64().unwrap();
            assert!(left > 0 && left <= 7 * 86_400, "{q}");
        }
    }
    // Only one's own figures, unless root on a trusted host (loopback here).
    assert_eq!(get(&ns, 2, "udp", d.port, 1001, "user", 1002)["status"], "eperm");
    assert_eq!(get(&ns, 2, "udp", d.port, 1001, "project", 42)["status"], "eperm");
    assert_eq!(get(&ns, 2, "udp", d.port, 1001, "group", 1001)["status"], "noquota", "no group quotas");
    let site = get(&ns, 2, "tcp", d.port, 0, "project", 42);
    assert_eq!(site["status"], "ok");
    assert_eq!(bytes(&site, "bhard"), 50 << 20);
    let site_row = report_row(&f, "project", 42);
    assert_eq!(bytes(&site, "curblocks"), site_row["bytes_used"].as_u64().unwrap().div_ceil(1024) * 1024);

    // A limit changed live shows at once.
    quota(&["--user", "1001", "--bytes-hard", "30M"]);
    assert_eq!(bytes(&get(&ns, 1, "udp", d.port, 1001, "user", 1001), "bhard"), 30 << 20);

    // Garbage, truncated calls, a foreign program, an absurd TCP record: answered with an RPC
    // error or dropped, and the service keeps answering.
    // A valid v2 GETQUOTA with AUTH_NONE: path "", user 1001.
    let good =
        "000012340000000000000002000186ab0000000200000001000000000000000000000000000000000000000000000000000003e9";
    for raw in ["", "ff", &good[..40], "deadbeef".repeat(300).as_str()] {
        let _ = client(&ns, &["raw", "udp", &d.port.to_string(), raw]);
    }
    let anonymous = client(&ns, &["raw", "udp", &d.port.to_string(), good]);
    assert!(anonymous.ends_with("0000000000000003"), "no credential: SUCCESS, Q_EPERM: {anonymous}");
    let truncated = client(&ns, &["raw", "udp", &d.port.to_string(), &good[..good.len() - 8]]);
    assert!(truncated.ends_with("00000004"), "GARBAGE_ARGS for a truncated call: {truncated}");
    let other_prog = good.replacen("000186ab", "000186a3", 1);
    let answer = client(&ns, &["raw", "udp", &d.port.to_string(), &other_prog]);
    assert!(answer.ends_with("00000001"), "PROG_UNAVAIL for another program: {answer}");
    let huge_record = format!("7fffffff{}", "00".repeat(64));
    let _ = client(&ns, &["raw", "tcp", &d.port.to_string(), &huge_record]);
    assert_eq!(get(&ns, 2, "tcp", d.port, 1001, "user", 1001)["status"], "ok", "still serving after garbage");
}
