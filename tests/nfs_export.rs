//! NFS export: nfs-ganesha (FSAL VFS) over a quotafs mount, a libnfs client, all over
//! 127.0.0.1 in a network namespace of the test's own. Round trips, handles held across a
//! quotafs restart, EDQUOT at the client, ownership by the NFS caller's uid; and the kernel
//! file-handle path itself (open_by_handle_at on the mount after a restart, forged handles).

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::nfs::{Client, Ganesha, Netns};
use common::{BIN, Fixture, assert_exact, assert_exact_all, report, run, run_ok};

/// The tests of this file run one at a time. ganesha's handles embed the FUSE mount's device
/// number, an anonymous dev (the lowest free one): a mount, unmount or tmpfs of another test in
/// the window of a restart would shift it, as another FUSE or tmpfs mount on a server would
/// (see quotafs(8), "NFS export").
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const HANDLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nfs/handles.py");

fn quota_ok(f: &Fixture, args: &[&str]) {
    let out = run(Command::new(BIN).arg("--state-dir").arg(&f.state).args(["quota", "set"]).args(args));
    assert!(out.status.success(), "quota set {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Restarts quotafs the way the docs say: ganesha stopped first, then quotafs, then ganesha.
fn restart_all(f: &mut Fixture, g: &mut Ganesha, ns: &Netns, between: impl FnOnce(&Fixture)) {
    let dev = std::fs::metadata(&f.mnt).unwrap().dev();
    g.stop();
    assert!(f.unmount().success(), "quotafs did not exit cleanly:\n{}", f.log_text());
    f.start(&[]);
    assert_eq!(std::fs::metadata(&f.mnt).unwrap().dev(), dev, "the mount came back with another device number");
    between(f);
    g.restart(ns);
}

#[test]
fn files_round_trip_over_nfs_v3_and_v4() {
    let _serial = serial();
    let f = Fixture::new("nfs-roundtrip");
    f.home("u", 1000, 1000);
    let ns = Netns::new();
    let _g = Ganesha::start(&ns, &f.mnt, &f.scratch.dir.join("ganesha"));

    let mut v3 = Client::connect(&ns, 3, 1000, 1000);
    // 5 MB through NFSv3, read back on the mount and over NFS.
    assert_eq!(v3.ok("put /u/big 5000000"), "5000000");
    assert_eq!(std::fs::metadata(f.m("u/big")).unwrap().len(), 5_000_000);
    assert!(std::fs::read(f.m("u/big")).unwrap().iter().all(|&b| b == b'x'));
    // Owned by the NFS caller, charged to it.
    let md = std::fs::metadata(f.m("u/big")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    assert_eq!(v3.ok("stat /u/big").split(' ').take(3).collect::<Vec<_>>(), ["1000", "1000", "5000000"]);
    assert_exact(&f.state, f.backing(), "after an NFS write");
    assert!(report(&f.state)[&("user".into(), 1000)].0 >= 5_000_000);

    // Written on the mount, read over NFS; renamed and deleted over NFS.
    std::fs::write(f.m("u/note"), "written locally").unwrap();
    assert_eq!(v3.ok("cat /u/note"), "written locally");
    v3.ok("mkdir /u/d");
    v3.ok("rename /u/note /u/d/moved");
    assert_eq!(std::fs::read_to_string(f.m("u/d/moved")).unwrap(), "written locally");
    assert!(!f.m("u/note").exists());
    v3.ok("unlink /u/d/moved");
    assert!(!f.m("u/d/moved").exists());

    // NFSv4 (libnfs writes it in 2 KiB chunks).
    let mut v4 = Client::connect(&ns, 4, 1000, 1000);
    assert_eq!(v4.ok("put /u/v4file 100000"), "100000");
    assert_eq!(std::fs::metadata(f.m("u/v4file")).unwrap().len(), 100_000);
    assert_eq!(std::fs::metadata(f.m("u/v4file")).unwrap().uid(), 1000);
    assert_eq!(v4.ok("cat /u/d/../v4file").len(), 100_000);

    // The listing tools see the same tree, with the inode numbers the mount shows.
    let ls = run_ok(ns.command("nfs-ls").arg("nfs://127.0.0.1/q/u/"));
    for name in ["big", "d", "v4file"] {
        assert!(ls.lines().any(|l| l.ends_with(&format!(" {name}"))), "nfs-ls lacks {name}:\n{ls}");
    }
    let st = v3.ok("stat /u/v4file");
    assert_eq!(st.split(' ').nth(3).unwrap().parse::<u64>().unwrap(), common::ino(&f.m("u/v4file")));
    drop(v3);
    drop(v4);
    assert_exact(&f.state, f.backing(), "after the NFS round trip");
}

#[test]
fn held_handles_survive_a_quotafs_restart_and_deleted_files_are_stale() {
    let _serial = serial();
    let mut f = Fixture::new("nfs-restart");
    f.home("u", 1000, 1000);
    std::fs::write(f.m("u/keep"), "kept data").unwrap();
    std::fs::write(f.m("u/gone"), "deleted data").unwrap();
    f.root("chown 1000:1000 u/keep u/gone");
    let ns = Netns::new();
    let mut g = Ganesha::start(&ns, &f.mnt, &f.scratch.dir.join("ganesha"));
    let mut c = Client::connect(&ns, 3, 1000, 1000);
    c.ok("open 0 /u/keep");
    c.ok("open 1 /u/gone");
    assert_eq!(c.ok("read 0 100"), "kept data");

    restart_all(&mut f, &mut g, &ns, |f| {
        // While ganesha is down: delete one file and create others, which may reuse its ext4
        // inode number; the held handle must never reach them.
        std::fs::remove_file(f.m("u/gone")).unwrap();
        for i in 0..20 {
            std::fs::write(f.m(&format!("u/new{i}")), format!("new file {i}")).unwrap();
        }
    });

    // The held handle reads and writes the same file; nothing was looked up by name first.
    assert_eq!(c.ok("read 0 100"), "kept data");
    c.ok("write 0 0 KEPT");
    assert_eq!(std::fs::read_to_string(f.m("u/keep")).unwrap(), "KEPT data");
    // GETATTR on the deleted file's handle: NFS3ERR_STALE, which libnfs turns into ESTALE (116).
    let stale = c.cmd("fstat 1");
    assert!(stale.starts_with("err errno=116"), "deleted file's handle: {stale}");
    // A READ fails too (libnfs 4.0 reports every v3 READ/WRITE error as EFAULT).
    assert!(c.cmd("read 1 100").starts_with("err"), "read through a deleted file's handle");
    let kept = c.ok("fstat 0");
    assert_eq!(kept.split(' ').nth(3).unwrap().parse::<u64>().unwrap(), common::ino(&f.m("u/keep")));
}

#[test]
fn edquot_reaches_nfs_clients_for_user_and_project_limits() {
    let _serial = serial();
    let f = Fixture::new("nfs-edquot");
    f.home("u", 1000, 1000);
    f.home("shared", 1001, 1001);
    std::fs::set_permissions(f.m("shared"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    run_ok(
        Command::new(BIN).arg("--state-dir").arg(&f.state).args(["project", "assign", "--id", "7"]).arg(f.m("shared")),
    );
    quota_ok(&f, &["--user", "1000", "--bytes-hard", "1M"]);
    quota_ok(&f, &["--project", "7", "--bytes-hard", "512K"]);
    let ns = Netns::new();
    let g = Ganesha::start(&ns, &f.mnt, &f.scratch.dir.join("ganesha"));

    // NFSv4: the status reaches the client by name.
    let mut v4 = Client::connect(&ns, 4, 1000, 1000);
    let over = v4.cmd("put /u/big 3000000");
    assert!(over.contains("NFS4ERR_DQUOT"), "user limit over NFSv4: {over}");
    let written: u64 = over.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(written < 1 << 20, "wrote {written} bytes past a 1 MiB limit");
    // A project limit binds uid 2000, which has no limit of its own.
    let mut v4b = Client::connect(&ns, 4, 2000, 2000);
    let over = v4b.cmd("put /shared/big 3000000");
    assert!(over.contains("NFS4ERR_DQUOT"), "project limit over NFSv4: {over}");
    assert!(std::fs::metadata(f.m("shared/big")).unwrap().len() <= 512 << 10);

    // NFSv3: libnfs 4.0 reports every v3 write error alike; ganesha's log names the status.
    let mut v3 = Client::connect(&ns, 3, 2000, 2000);
    let over = v3.cmd("put /shared/big3 3000000");
    assert!(over.starts_with("err"), "project limit over NFSv3: {over}");
    let log = g.log_text();
    assert!(
        log.contains("DQUOT") || log.contains("quota") || over.contains("DQUOT"),
        "neither the client ({over}) nor ganesha's log names the quota:\n{log}"
    );
    let usage = report(&f.state);
    assert!(usage[&("project".into(), 7)].0 <= (512 << 10) + (64 << 10), "project 7 overshot: {usage:?}");
    assert_exact(&f.state, f.backing(), "after refused NFS writes");

    // df of the project directory over NFS (FSSTAT on its handle). On the mount, statfs of
    // the directory shows project 7's 512 KiB limit. ganesha 4.3's VFS FSAL answers FSSTAT
    // with statvfs of the mount root instead, whatever the handle: NFS clients see the
    // volume, not the project (documented in quotafs(8), "NFS export").
    let stat_f = |p: &std::path::Path| {
        let out = run_ok(Command::new("stat").args(["-f", "-c", "%S %b"]).arg(p));
        let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] * v[1]
    };
    assert_eq!(stat_f(&f.m("shared")), 512 << 10, "statfs on the mount shows the project's limit");
    let df: Vec<u64> = v3.ok("df /shared").split(' ').map(|x| x.parse().unwrap()).collect();
    let (nfs_total, root_total) = (df[0] * df[1], stat_f(&f.mnt));
    assert!(nfs_total.abs_diff(root_total) <= 4096, "FSSTAT over NFS: {nfs_total}, mount root: {root_total}");
    drop(g);
}

#[test]
fn dropbox_files_on_the_routed_backing_over_nfs() {
    let _serial = serial();
    let mut f = Fixture::with_routes("nfs-dropbox", &["/home/*/Dropbox"], &[]);
    f.home("home", 0, 0);
    f.home("home/u", 1000, 1000);
    f.sh_ok(1000, 1000, "mkdir home/u/Dropbox");
    let ns = Netns::new();
    let mut g = Ganesha::start(&ns, &f.mnt, &f.scratch.dir.join("ganesha"));
    let mut c = Client::connect(&ns, 3, 1000, 1000);
    assert_eq!(c.ok("put /home/u/Dropbox/synced 300000"), "300000");
    let routed = f.routed[0].backing.join("home/u/Dropbox/synced");
    assert_eq!(std::fs::metadata(&routed).unwrap().len(), 300_000, "the file must land on the routed backing");
    assert!(!f.served.join("home/u/Dropbox").exists());
    c.ok("open 0 /home/u/Dropbox/synced");
    restart_all(&mut f, &mut g, &ns, |_| {});
    // A handle to a file on the second backing resolves after a restart too.
    assert_eq!(c.ok("read 0 5"), "xxxxx");
    assert_exact_all(&f.state, &f.all_backings(), "after NFS writes into a routed Dropbox");
}

/// The kernel side of NFS export, without ganesha: handles taken through the mount open the
/// same files after a daemon restart with nothing looked up; a deleted file's handle is stale;
/// a forged handle naming an inode of the same ext4 outside the backing root is stale too.
#[test]
fn kernel_handles_resolve_after_restart_and_never_leave_the_backing() {
    let _serial = serial();
    let mut f = Fixture::serving("nfs-handles", Some("data"), &[]);
    let outside = f.scratch.backing.join("secret");
    std::fs::write(&outside, "SECRET").unwrap();
    std::fs::create_dir(f.scratch.backing.join("outdir")).unwrap();
    f.root("echo alpha > a && mkdir -p d/e && echo beta > d/e/b && echo gone > g");
    let handle = |p: &std::path::Path| run_ok(Command::new(HANDLES).arg("get").arg(p)).trim().to_string();
    let mnt = f.mnt.clone();
    let open = |h: &str| {
        let mut parts = h.split(' ');
        let (t, hex) = (parts.next().unwrap(), parts.next().unwrap());
        run_ok(Command::new(HANDLES).arg("open").arg(&mnt).args([t, hex])).trim().to_string()
    };
    let (ha, hb, he, hg) = (handle(&f.m("a")), handle(&f.m("d/e/b")), handle(&f.m("d/e")), handle(&f.m("g")));
    assert_eq!(open(&hb), "ok beta");

    assert!(f.unmount().success());
    f.start(&[]);
    std::fs::remove_file(f.m("g")).unwrap();
    for i in 0..20 {
        std::fs::write(f.m(&format!("n{i}")), "new").unwrap();
    }
    // Fresh daemon: nothing but the root is known; the handles still name the same files.
    assert_eq!(open(&hb), "ok beta");
    assert_eq!(open(&ha), "ok alpha");
    assert_eq!(open(&he), "dir");
    assert_eq!(open(&hg), "err ESTALE");

    // Forged handles for inodes outside the backing root, with their true generations.
    for p in [&outside, &f.scratch.backing.join("outdir")] {
        let ext4 = handle(p);
        let raw = hex_bytes(ext4.split(' ').nth(1).unwrap());
        let ino = u32::from_le_bytes(raw[0..4].try_into().unwrap());
        let generation = u32::from_le_bytes(raw[4..8].try_into().unwrap());
        let forged = run_ok(Command::new(HANDLES).args(["fuse", &ino.to_string(), &generation.to_string()]));
        assert_eq!(open(forged.trim()), "err ESTALE", "a forged handle reached {}", p.display());
    }
    // And the forger's recipe works for a file inside: the check is the root, not the format.
    let inside = handle(&f.b("a"));
    let raw = hex_bytes(inside.split(' ').nth(1).unwrap());
    let forged = run_ok(Command::new(HANDLES).args([
        "fuse",
        &u32::from_le_bytes(raw[0..4].try_into().unwrap()).to_string(),
        &u32::from_le_bytes(raw[4..8].try_into().unwrap()).to_string(),
    ]));
    assert_eq!(open(forged.trim()), "ok alpha");
    assert_exact(&f.state, f.backing(), "after handle lookups");
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
