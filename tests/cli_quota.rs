//! `quota get` shows the grace that is set and where limits come from; `quota set --help`
//! describes every flag; `quota dump` / `restore` carry every limit, grace and project name
//! across a state dir, all or nothing, with and without a running daemon.

mod common;

use std::process::{Command, Output};

use common::{BIN, Fixture, run, run_ok};

#[test]
fn get_shows_grace_and_source_dump_restores_everything() {
    let mut f = Fixture::new("cli-quota");
    let st = f.state.to_str().unwrap().to_string();
    let quotafs = |args: &[&str]| -> Output {
        let mut c = Command::new(BIN);
        c.args(["--state-dir", &st]).args(args);
        run(&mut c)
    };
    let ok = |args: &[&str]| run_ok(Command::new(BIN).args(["--state-dir", &st]).args(args));
    f.home("site", 1000, 1000);
    f.home("scratch", 1000, 1000);
    f.sh_ok(1000, 1000, "head -c 100000 /dev/zero > site/f");
    ok(&["project", "assign", f.m("site").to_str().unwrap(), "--id", "42", "--name", "site"]);
    ok(&["project", "assign", f.m("scratch").to_str().unwrap(), "--id", "43", "--name", "scratch"]);

    // The grace that is set, as 1d23h; limits from the default marked as such.
    ok(&["quota", "set", "--user", "1000", "--bytes-soft", "1M", "--bytes-hard", "2M", "--grace", "169200s"]);
    ok(&["quota", "set", "--default-user", "--bytes-hard", "50M", "--inodes-hard", "1000"]);
    ok(&["quota", "set", "--project", "site", "--bytes-hard", "1G", "--grace", "2d"]);
    let get = ok(&["quota", "get", "--user", "1000"]);
    assert!(get.contains("grace:  1d23h") && !get.contains("604800"), "{get}");
    assert!(get.contains("limits: its own"), "{get}");
    let get = ok(&["quota", "get", "--user", "1001"]);
    assert!(get.contains("from the default user limits") && get.contains("hard 1000"), "{get}");
    assert!(get.contains("7d (built-in default)"), "{get}");
    let j: serde_json::Value = serde_json::from_str(&ok(&["quota", "get", "--json", "--user", "1001"])).unwrap();
    assert_eq!(
        (j["source"].as_str(), j["bytes_hard"].as_u64(), j["grace_default"].as_bool()),
        (Some("default"), Some(50 << 20), Some(true))
    );
    let j: serde_json::Value = serde_json::from_str(&ok(&["quota", "get", "--json", "--project", "site"])).unwrap();
    assert_eq!(
        (j["source"].as_str(), j["grace_secs"].as_u64(), j["id"].as_u64()),
        (Some("own"), Some(172_800), Some(42))
    );

    // --help describes the four limit flags.
    let help = ok(&["quota", "set", "--help"]);
    for flag in ["--bytes-soft", "--bytes-hard", "--inodes-soft", "--inodes-hard"] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag)).unwrap();
        let described = line.split_once('>').map(|(_, d)| d.trim()).unwrap_or_default();
        assert!(described.len() > 10, "{flag} has no description: {line:?}\n{help}");
    }

    // Dump with the daemon running: one line per subject, names included.
    let dump = ok(&["quota", "dump"]);
    let lines: Vec<&str> = dump.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "quotafs-limits 1", "{dump}");
    assert!(lines.contains(&"default-user bytes-hard=52428800 inodes-hard=1000"), "{dump}");
    assert!(lines.iter().any(|l| l.starts_with("user 1000 bytes-soft=1048576 bytes-hard=2097152 grace=47h")), "{dump}");
    assert!(lines.contains(&"project 42 name=site bytes-hard=1073741824 grace=2d"), "{dump}");
    assert!(lines.contains(&"project 43 name=scratch"), "{dump}");
    let file = f.scratch.dir.join("limits.dump");
    ok(&["quota", "dump", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), dump);

    // A bad line: exit 2, the line named, nothing changed (the good lines before it neither).
    let bad =
        dump.replace("project 43 name=scratch", "user 1002 bytes-hard=5M\nproject 43 name=scratch bytes-soft=lots");
    let bad_file = f.scratch.dir.join("bad.dump");
    std::fs::write(&bad_file, &bad).unwrap();
    let out = quotafs(&["quota", "restore", bad_file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let n = bad.lines().position(|l| l.contains("lots")).unwrap() + 1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("line {n}:"))
            && err.contains("\"lots\" is not a size")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(ok(&["quota", "dump"]), dump, "a refused restore changes nothing");

    // Restore through the daemon: the edited limits are in force at once, dropped ones gone.
    let edited = dump
        .replace("bytes-soft=1048576 bytes-hard=2097152", "bytes-soft=200K bytes-hard=300K")
        .replace("project 43 name=scratch", "project 43 name=tmp inodes-hard=5")
        .lines()
        .filter(|l| !l.starts_with("default-user"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    std::fs::write(&file, &edited).unwrap();
    ok(&["quota", "restore", file.to_str().unwrap()]);
    let out = f.sh_as(1000, 1000, "head -c 400000 /dev/zero > site/g");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"), "300K in force: {out:?}");
    let get = ok(&["quota", "get", "--user", "1001"]);
    assert!(get.contains("limits: none"), "the default was not in the dump: {get}");
    let j: serde_json::Value = serde_json::from_str(&ok(&["quota", "get", "--json", "--project", "tmp"])).unwrap();
    assert_eq!((j["id"].as_u64(), j["inodes_hard"].as_u64()), (Some(43), Some(5)));
    let restored = ok(&["quota", "dump"]);

    // Without a daemon: the state dir's store is replaced; the next mount enforces it.
    assert!(f.unmount().success());
    assert_eq!(ok(&["quota", "dump"]), restored, "dump reads the store with no daemon");
    std::fs::write(&file, dump.replace("bytes-hard=2097152", "bytes-hard=10M")).unwrap();
    ok(&["quota", "restore", file.to_str().unwrap()]);
    f.start(&[]);
    f.sh_ok(1000, 1000, "head -c 400000 /dev/zero > site/h");
    let j: serde_json::Value = serde_json::from_str(&ok(&["quota", "get", "--json", "--project", "scratch"])).unwrap();
    assert_eq!(j["id"].as_u64(), Some(43), "the name came back");
    assert!(ok(&["quota", "dump"]).contains("default-user bytes-hard=52428800"));
    // A state dir rebuilt from nothing but the dump: the first mount counts the backing
    // (projects are tags on the inodes), the names and limits come from the dump.
    let before = ok(&["quota", "dump"]);
    ok(&["quota", "dump", file.to_str().unwrap()]);
    assert!(f.unmount().success());
    std::fs::rename(&f.state, f.scratch.dir.join("state.lost")).unwrap();
    ok(&["quota", "restore", file.to_str().unwrap()]);
    f.start(&[]);
    assert_eq!(ok(&["quota", "dump"]), before);
    let j: serde_json::Value = serde_json::from_str(&ok(&["quota", "get", "--json", "--project", "site"])).unwrap();
    assert!(j["inodes_used"].as_u64().unwrap() >= 3, "site counted again under its name: {j}");
    common::assert_exact(&f.state, f.backing(), "state dir rebuilt from a dump");
    // Not a dump at all.
    std::fs::write(&file, "user 5 bytes-hard=1G\n").unwrap();
    let out = quotafs(&["quota", "restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1:"));
}
