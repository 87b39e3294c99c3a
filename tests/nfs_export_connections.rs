//! `df` on an NFS client shows the quota of the export it mounted: with export connections
//! (`--exports-dir`, `--export-projects`, `--export-users`) and the EXPORT blocks `quotafs nfs
//! exports` prints for them, ganesha answers FSSTAT (libnfs, v3 and v4) on a project's export
//! with the project's limits and usage and on a home's export with its owner's, as
//! `quotafs report --json` shows them, for the tree's tenant and any other caller; a limit
//! changed live shows at the next FSSTAT; EDQUOT reaches the client through the export; a
//! handle held across a restart of ganesha and quotafs still reads its file; SIGTERM leaves no
//! mount.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::nfs::{Client, Ganesha, Netns};
use common::{BIN, Fixture, assert_exact, mounts_under, report, run};

fn quotafs(f: &Fixture, args: &[&str]) -> String {
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args));
    assert!(out.status.success(), "quotafs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_mounts(dir: &Path, n: usize, f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while mounts_under(dir).len() < n {
        assert!(Instant::now() < deadline, "export connections not mounted:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// FSSTAT through `c` must be `limit_bytes` / `limit_inodes` with the usage `report --json`
/// shows for (kind, id).
fn assert_df(c: &mut Client, f: &Fixture, subject: (&str, u32), limit_bytes: u64, limit_inodes: u64, who: &str) {
    let df: Vec<u64> = c.ok("df /").split(' ').map(|x| x.parse().unwrap()).collect();
    let (frsize, blocks, bfree, bavail, files, ffree) = (df[0], df[1], df[2], df[3], df[4], df[5]);
    let (bytes, inodes) = report(&f.state)[&(subject.0.to_string(), subject.1)];
    assert_eq!(frsize * blocks, limit_bytes, "{who}: size over NFS: {df:?}");
    let free = blocks - bytes.div_ceil(frsize);
    assert_eq!((bfree, bavail), (free, free), "{who}: free blocks over NFS ({bytes} bytes used): {df:?}");
    assert_eq!((files, ffree), (limit_inodes, limit_inodes - inodes), "{who}: files over NFS: {df:?}");
}

/// The EXPORT block (with its comment line) whose Pseudo is `pseudo`.
fn block<'a>(config: &'a str, pseudo: &str) -> &'a str {
    let at = config.find(&format!("Pseudo = \"{pseudo}\";")).unwrap_or_else(|| panic!("no {pseudo} in:\n{config}"));
    let start = config[..at].rfind("\n# ").unwrap();
    let end = at + config[at..].find("\n}\n").unwrap() + 3;
    &config[start..end]
}

#[test]
fn df_over_nfs_shows_the_exports_quota_and_handles_survive_a_restart() {
    let mut f = Fixture::new("nfs-export-conns");
    f.home("alice", 1001, 1001);
    f.root("mkdir site && chown 1002:1002 site");
    quotafs(&f, &["project", "assign", "--id", "42", "--name", "site", &f.m("site").display().to_string()]);
    quotafs(&f, &["quota", "set", "--project", "site", "--bytes-hard", "512K", "--inodes-hard", "100"]);
    quotafs(&f, &["quota", "set", "--user", "1001", "--bytes-hard", "2M", "--inodes-hard", "50"]);
    f.sh_ok(1002, 1002, "head -c 100000 /dev/zero > site/seed && echo hello > site/h");
    f.sh_ok(1001, 1001, "head -c 300000 /dev/zero > alice/seed");
    let exports = f.scratch.dir.join("exports");
    let dir = exports.display().to_string();
    let args = ["--exports-dir", &dir, "--export-projects", "--export-users"];
    assert!(f.unmount().success());
    f.start(&args);
    wait_mounts(&exports, 2, &f);

    let config = quotafs(&f, &["nfs", "exports", "--projects", "--users"]);
    let site_block = block(&config, "/projects/site");
    assert!(
        site_block.contains("Export_Id = 43;") && site_block.contains(&format!("Path = \"{dir}/projects/site\";")),
        "{site_block}"
    );
    let home_pseudo = config
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("Pseudo = \"/users/").map(|r| format!("/users/{}", r.trim_end_matches("\";")))
        })
        .unwrap_or_else(|| panic!("no home export:\n{config}"));
    assert!(block(&config, &home_pseudo).contains(&format!("Path = \"{dir}/users/")), "{config}");

    let devs = |f: &Fixture| -> Vec<u64> {
        mounts_under(&exports)
            .iter()
            .map(|m| std::fs::metadata(m).unwrap().dev())
            .chain([f.mnt.metadata().unwrap().dev()])
            .collect()
    };
    let before = devs(&f);

    let ns = Netns::new();
    let mut g = Ganesha::start_with_exports(&ns, &config, &f.scratch.dir.join("ganesha"));
    // The project's figures for its tenant and for another caller, over v3 and v4.
    let mut site = Client::connect_to(&ns, "/projects/site", 3, 1002, 1002);
    assert_df(&mut site, &f, ("project", 42), 512 << 10, 100, "project export, v3, its tenant");
    let mut other = Client::connect_to(&ns, "/projects/site", 4, 1003, 1003);
    assert_df(&mut other, &f, ("project", 42), 512 << 10, 100, "project export, v4, another uid");
    // The home's: its owner's limits.
    let mut home = Client::connect_to(&ns, &home_pseudo, 3, 1001, 1001);
    assert_df(&mut home, &f, ("user", 1001), 2 << 20, 50, "home export, v3, its owner");
    // The mount root's export still shows the volume (one export over many tenants).
    // A limit changed live shows at the next FSSTAT.
    quotafs(&f, &["quota", "set", "--project", "site", "--bytes-hard", "1M", "--inodes-hard", "100"]);
    assert_df(&mut site, &f, ("project", 42), 1 << 20, 100, "project export after a live change");
    quotafs(&f, &["quota", "set", "--user", "1001", "--bytes-hard", "3M", "--inodes-hard", "60"]);
    assert_df(&mut home, &f, ("user", 1001), 3 << 20, 60, "home export after a live change");
    // EDQUOT through the export at the project's limit; usage stops at it.
    let over = site.cmd("put /big 3000000");
    assert!(over.starts_with("err"), "3 MB into a 1 MiB project through its export: {over}");
    assert!(report(&f.state)[&("project".into(), 42)].0 <= 1 << 20);
    assert_df(&mut site, &f, ("project", 42), 1 << 20, 100, "project export at its limit");

    // A handle held across a restart of ganesha and quotafs (the documented order).
    site.ok("open 0 /h");
    home.ok("open 1 /seed");
    g.stop();
    assert!(f.unmount().success(), "quotafs did not exit cleanly:\n{}", f.log_text());
    assert_eq!(mounts_under(&f.scratch.dir), Vec::<std::path::PathBuf>::new(), "a connection outlived the daemon");
    // Device numbers are the lowest free anonymous ones: the same after a restart unless
    // another mount (another engineer's test on a shared machine) took one meanwhile; then the
    // documented precondition does not hold and the restart is done again.
    let mut attempts = 0;
    loop {
        f.start(&args);
        wait_mounts(&exports, 2, &f);
        if devs(&f) == before {
            break;
        }
        attempts += 1;
        assert!(attempts < 5, "the connections keep coming back with other device numbers: {:?}, {before:?}", devs(&f));
        assert!(f.unmount().success(), "quotafs did not exit cleanly:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    g.restart(&ns);
    assert_eq!(site.ok("read 0 5"), "hello", "a held handle went stale across the restart");
    assert_eq!(home.cmd("fstat 1").split(' ').nth(3), Some("300000"), "the home's held handle");
    assert_df(&mut site, &f, ("project", 42), 1 << 20, 100, "project export after the restart");
    drop((site, other, home, g));

    f.signal("TERM");
    assert!(f.wait_exit().success(), "SIGTERM:\n{}", f.log_text());
    assert_eq!(mounts_under(&f.scratch.dir), Vec::<std::path::PathBuf>::new(), "mounts left after SIGTERM");
    f.start(&[]);
    assert_exact(&f.state, f.backing(), "after work through the export connections");
}
