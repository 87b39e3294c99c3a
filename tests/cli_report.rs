//! `quotafs report` as an operator reads and parses it: flags that say over-hard, names
//! through NSS and `#ID` for ids without one, one header word per column, `-H` and `-p`,
//! every documented JSON key, and an unknown `--user` as an error.

mod common;

use std::process::Command;

use common::{BIN, Fixture, run, run_ok};

const MIB: u64 = 1 << 20;

#[test]
fn report_flags_names_and_parsable_columns() {
    let f = Fixture::new("cli-report");
    let st = f.state.to_str().unwrap().to_string();
    let quotafs = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["--state-dir", &st]).args(args);
        run(&mut c)
    };
    let ok = |args: &[&str]| run_ok(Command::new(BIN).args(["--state-dir", &st]).args(args));
    // uid 0 is named in /etc/passwd on every system; 4000123 is named nowhere.
    let unnamed = 4_000_123u32;
    assert!(!run(Command::new("getent").args(["passwd", &unnamed.to_string()])).status.success());
    f.home("a", 0, 0);
    f.home("b", unnamed, unnamed);
    f.sh_ok(0, 0, "head -c 6291456 /dev/urandom > a/big");
    f.sh_ok(unnamed, unnamed, "head -c 2097152 /dev/urandom > b/f");
    // Limits set below usage: root 6 MiB against a 2 MiB hard limit; the other over soft only.
    ok(&["quota", "set", "--user", "0", "--bytes-hard", "2M"]);
    ok(&["quota", "set", "--user", &unnamed.to_string(), "--bytes-soft", "1M", "--bytes-hard", "10M"]);

    let table = ok(&["report"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["KIND", "ID", "NAME", "FLAGS", "USED", "SOFT", "HARD", "GRACE", "INODES", "ISOFT", "IHARD", "IGRACE"],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    for r in &rows {
        assert_eq!(r.len(), header.len(), "one field per header word: {r:?}\n{table}");
    }
    let row = |kind: &str, id: u32| {
        rows.iter().find(|r| r[0] == kind && r[1] == id.to_string()).unwrap_or_else(|| panic!("{kind} {id}: {table}"))
    };
    let root = row("user", 0);
    assert_eq!((root[2], root[3]), ("root", "!-"), "root is over its hard limit: {table}");
    let other = row("user", unnamed);
    assert_eq!(other[2], format!("#{unnamed}"), "an id without a name: {table}");
    assert_eq!(other[3], "+-", "over soft, under hard: {table}");
    assert!(other[7].ends_with('h') || other[7].ends_with('d'), "grace left as 6d23h: {table}");

    // -H -p: no header, tab-separated, exact numbers that match the JSON.
    let json: Vec<serde_json::Value> = serde_json::from_str(&ok(&["report", "--json"])).unwrap();
    let raw = ok(&["report", "-H", "-p"]);
    assert!(!raw.contains("KIND"));
    for line in raw.lines() {
        let r: Vec<&str> = line.split('\t').collect();
        assert_eq!(r.len(), 12, "{line:?}");
        let j = json.iter().find(|j| j["kind"] == r[0] && j["id"].as_u64().unwrap().to_string() == r[1]).unwrap();
        assert_eq!(r[4], j["bytes_used"].as_u64().unwrap().to_string(), "{line:?}");
        if r[0] == "user" && r[1] == "0" {
            assert_eq!(r[6], (2 * MIB).to_string());
        }
        if r[0] == "user" && r[1] == unnamed.to_string() {
            let left: u64 = r[7].parse().unwrap_or_else(|_| panic!("grace left in seconds: {line:?}"));
            assert!(left > 6 * 86_400 && left <= 7 * 86_400, "{line:?}");
        }
    }
    // --json: the 13 keys quotafs(8) documents, no more, no fewer.
    let mut keys: Vec<&str> = json[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/quotafs.8")).unwrap();
    for k in &keys {
        assert!(man.contains(&format!("\\fB{k}\\fR")), "report --json key {k} undocumented");
    }
    assert_eq!(keys.len(), 13, "{keys:?}");

    // --user by name (through NSS) and by id; an unknown name is an error, not an empty table.
    let one: Vec<serde_json::Value> = serde_json::from_str(&ok(&["report", "--json", "--user", "root"])).unwrap();
    assert_eq!((one.len(), one[0]["id"].as_u64()), (1, Some(0)));
    let out = quotafs(&["report", "--user", "no-such-user-xyz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-xyz"));
    let out = quotafs(&["report", "--project", "no-such-project"]);
    assert_eq!(out.status.code(), Some(2));
    // A uid with no usage and no limits of its own: its (empty) row, not nothing.
    let quiet = ok(&["report", "-H", "--user", "4000124"]);
    assert_eq!(quiet.lines().count(), 1, "{quiet}");
    assert!(quiet.starts_with("user\t4000124\t#4000124\t--\t0\t"), "{quiet:?}");
}
