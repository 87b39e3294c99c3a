//! The randomized multi-tenant stress run (issues #14 and #15): four tenants (uids 1001–1004)
//! and a root worker, each a process running `tests/stress/worker.py` with its own seed derived
//! from one run seed, do random operations of every kind on a small shared name space — their
//! homes, a shared 1777 directory and two project trees, one with a tight limit — so that they
//! open, write, map, truncate, rename over and unlink each other's files, and hit EDQUOT often
//! (two tenants have tight hard limits).
//!
//! It fails on any EIO, ENOTCONN or ESTALE (except the two documented answers, accepted only
//! where the design gives them: a reopen through `/proc/self/fd` of an unlinked file, and EIO
//! from a flush of an inode whose mapping's write-back was refused; tests/stress/README.md),
//! on EBADF from a descriptor a worker believes valid,
//! on an errno no operation should give here (ENOSPC, EMFILE, ...), on data read back wrong, on
//! drift (ledger vs an independent recount, once the workers have ended and again after a
//! kill -9 and restart), on a tenant above its hard limit by more than root wrote for it, and
//! if the tree cannot be walked, read and removed afterwards or the daemon died.
//!
//! Run it longer or replay a run (the seed and op count are printed):
//!
//! ```sh
//! QUOTAFS_STRESS_SECS=600 QUOTAFS_SEED=1234 cargo test --test stress_multitenant -- --nocapture
//! ```
//!
//! `QUOTAFS_STRESS_SECS` is the time the workers run (default 30 s, all five at once); a seed
//! fixes each worker's sequence of operations, not their interleaving. tests/stress/README.md
//! says more.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Fixture, Rng, mounted_at, recount, run_ok, seed};

const TENANTS: [u32; 4] = [1001, 1002, 1003, 1004];
const MIB: u64 = 1 << 20;
/// ext4 metadata a limit can be passed by (extent blocks, directory blocks of operations in
/// flight: docs/design.md §11 "Overshoot bound").
const SLACK: u64 = MIB;
/// How long a step through the mount or the control socket may take before the daemon counts
/// as hung (each takes seconds at most).
const HUNG: Duration = Duration::from_secs(120);

/// Hard limits: (kind, id, quota set arguments, hard bytes, hard inodes).
const LIMITS: [(&str, u32, &[&str], u64, u64); 6] = [
    ("user", 1001, &["--bytes-hard", "3M", "--inodes-hard", "60"], 3 * MIB, 60),
    ("user", 1002, &["--bytes-hard", "6M"], 6 * MIB, u64::MAX),
    ("user", 1003, &["--bytes-soft", "6M", "--bytes-hard", "12M"], 12 * MIB, u64::MAX),
    ("user", 1004, &["--bytes-hard", "24M"], 24 * MIB, u64::MAX),
    ("project", 7, &["--bytes-hard", "5M", "--inodes-hard", "80"], 5 * MIB, 80),
    ("project", 8, &["--inodes-hard", "100000"], u64::MAX, 100_000),
];

struct Worker {
    name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// What one worker process is given.
struct Spec {
    name: String,
    uid: u32,
    seed: u64,
    /// Directories (relative to the mount root) it works in.
    bases: Vec<String>,
    /// A directory only it writes in.
    private: String,
}

/// The row of the outcome table for EIO from a flush of a file whose shared mapping's
/// write-back was refused.
const DOC_FLUSH: &str = "documented: EIO from a flush after a refused write-back (design §4)";

/// How many refused write-backs of one inode the mapping workers saw, by the errno they got.
#[derive(Default, Clone, Copy)]
struct Refused {
    edquot: u64,
    eio: u64,
}

/// The refused write-backs the mapping workers saw, by (st_dev, st_ino), from the lines
/// "st_dev st_ino errno worker t" they appended to the shared log.
fn refused_writebacks(log: &Path) -> BTreeMap<(u64, u64), Refused> {
    let mut out: BTreeMap<(u64, u64), Refused> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let [dev, ino, err, ..] = w[..]
            && let (Ok(dev), Ok(ino)) = (dev.parse(), ino.parse())
        {
            let r = out.entry((dev, ino)).or_default();
            if err == "EDQUOT" {
                r.edquot += 1;
            } else {
                r.eio += 1;
            }
        }
    }
    out
}

fn spawn_worker(f: &Fixture, script: &Path, wb_log: &Path, spec: &Spec, secs: f64) -> Worker {
    let Spec { name, uid, seed, bases, private } = spec;
    let uid = *uid;
    let out = f.scratch.dir.join(format!("worker-{name}.json"));
    let err = f.scratch.dir.join(format!("worker-{name}.err"));
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups");
    // The system's interpreter: one under root's home (pyenv) is out of a tenant's reach.
    let python = ["/usr/bin/python3", "/bin/python3"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("python3");
    cmd.args([python, "-B"]).arg(script);
    cmd.args(["--name", name, "--seed", &seed.to_string(), "--secs", &secs.to_string()]);
    cmd.args(["--bases", &bases.join(","), "--private", private.as_str()]);
    cmd.arg("--wb-log").arg(wb_log);
    if uid == 0 {
        cmd.arg("--root");
    }
    if let Ok(skip) = std::env::var("QUOTAFS_STRESS_SKIP") {
        cmd.args(["--skip", &skip]);
    }
    // A group of its own, so that a stuck worker is ended with its forked mmap children.
    let child = cmd
        .process_group(0)
        .current_dir(&f.mnt)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn a stress worker (setpriv, python3)");
    Worker { name: name.clone(), child, out, err }
}

/// Runs a command to its end, bounded in time: a daemon that stops answering (its mount or its
/// control socket) fails the test instead of hanging it.
fn bounded(cmd: &mut Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HUNG) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        Err(_) => {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("{cmd:?} did not end in {HUNG:?}: the daemon does not answer");
        }
    }
}

/// A `quotafs` command against the daemon's state dir; its stdout.
fn ctl(f: &Fixture, args: &[&str]) -> String {
    let out = bounded(Command::new(BIN).arg("--state-dir").arg(&f.state).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ledger (`quotafs report --json`) as a UsageMap, as `common::report` reads it.
fn ledger(f: &Fixture) -> common::UsageMap {
    let out = ctl(f, &["report", "--json"]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("report --json: {e}: {out}"));
    rows.iter()
        .map(|r| {
            let (bytes, inodes) = (r["bytes_used"].as_u64().unwrap_or(0), r["inodes_used"].as_u64().unwrap_or(0));
            ((r["kind"].as_str().unwrap_or("?").to_string(), r["id"].as_u64().unwrap_or(0) as u32), (bytes, inodes))
        })
        .collect()
}

/// The ledger's differences from the recount, after a checkpoint (None: exact).
fn drift(f: &Fixture) -> Option<String> {
    ctl(f, &["checkpoint"]);
    // A subject with limits stays in the report at zero usage; the recount has no row for it.
    let nonzero = |m: common::UsageMap| -> common::UsageMap { m.into_iter().filter(|(_, v)| *v != (0, 0)).collect() };
    let (ledger, truth) = (nonzero(ledger(f)), nonzero(recount(f.backing())));
    if ledger == truth {
        return None;
    }
    let mut diff = String::new();
    for k in ledger.keys().chain(truth.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (l, t) = (ledger.get(k), truth.get(k));
        if l != t {
            diff.push_str(&format!("    {k:?}: ledger {l:?}, recount {t:?}\n"));
        }
    }
    Some(diff)
}

/// Drift that stays: a file closed a moment ago may still be on its way to its last release.
fn lasting_drift(f: &Fixture) -> Option<String> {
    let mut last = None;
    for _ in 0..5 {
        last = drift(f);
        if last.is_none() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    last
}

/// (bytes, inodes) per project of the inodes owned by root (which root made or wrote, exempt
/// from limits), counted the way `common::recount` counts: each inode once, its project from
/// its tag or its directory's.
fn root_owned_by_project(backing: &Path) -> BTreeMap<u32, (u64, u64)> {
    fn project_of(p: &Path, inherited: u32) -> u32 {
        let mut buf = [0u8; 64];
        match rustix::fs::lgetxattr(p, "trusted.quotafs", &mut buf[..]) {
            Ok(13) if buf[0] == 1 => u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]),
            _ => inherited,
        }
    }
    fn walk(
        dir: &Path,
        root: bool,
        project: u32,
        seen: &mut std::collections::HashSet<u64>,
        out: &mut BTreeMap<u32, (u64, u64)>,
    ) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if root && entry.file_name() == ".quotafs-journal" {
                continue; // the daemon's own, not charged (as in common::recount)
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
            if !seen.insert(md.ino()) {
                continue;
            }
            let p = project_of(&path, project);
            if md.uid() == 0 {
                let e = out.entry(p).or_default();
                e.0 += md.blocks() * 512;
                e.1 += 1;
            }
            if md.is_dir() {
                walk(&path, false, p, seen, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(backing, true, project_of(backing, 0), &mut std::collections::HashSet::new(), &mut out);
    out
}

fn daemon_alive(f: &Fixture) -> Result<(), String> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", f.daemon_pid())).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).unwrap_or("gone");
    if state == "Z" || state == "gone" || state == "X" {
        return Err(format!("the daemon is dead (state {state})"));
    }
    if state == "T" || state == "t" {
        return Err("the daemon is stopped".into());
    }
    if mounted_at(&f.mnt).as_deref() != Some("fuse.quotafs") {
        return Err("the mount is gone".into());
    }
    std::fs::read_dir(&f.mnt).map(|_| ()).map_err(|e| format!("the mount does not answer: {e}"))
}

/// Walks the tree through the mount as root, reading every file and symlink. Returns what
/// failed, and the number of inodes seen.
fn walk_and_read(dir: &Path, problems: &mut Vec<String>) -> u64 {
    let mut seen = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("readdir {}: {e}", dir.display()));
            return 0;
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                problems.push(format!("readdir {}: {e}", dir.display()));
                continue;
            }
        };
        seen += 1;
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) => {
                problems.push(format!("lstat {}: {e}", path.display()));
                continue;
            }
        };
        let res = if md.is_dir() {
            seen += walk_and_read(&path, problems);
            Ok(())
        } else if md.file_type().is_symlink() {
            std::fs::read_link(&path).map(|_| ())
        } else if md.is_file() {
            std::fs::read(&path).and_then(|data| {
                if data.len() as u64 == md.len() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("read {} bytes of {}", data.len(), md.len())))
                }
            })
        } else {
            Ok(())
        };
        if let Err(e) = res {
            problems.push(format!("read {}: {e}", path.display()));
        }
    }
    seen
}

#[test]
fn randomized_multitenant_run_fails_no_operation_and_keeps_the_ledger_exact() {
    let seed = seed();
    let secs: f64 = std::env::var("QUOTAFS_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    println!("QUOTAFS_SEED={seed} QUOTAFS_STRESS_SECS={secs}");
    let mut rng = Rng(seed);
    // QUOTAFS_STRESS_DAEMON_ARGS adds mount flags (e.g. `--no-passthrough`, `--threads 2`).
    let extra = std::env::var("QUOTAFS_STRESS_DAEMON_ARGS").unwrap_or_default();
    let args: Vec<&str> = ["--checkpoint-interval", "1"].into_iter().chain(extra.split_whitespace()).collect();
    let mut f = Fixture::with_args("stress", &args);
    let st = f.state.to_str().unwrap().to_string();

    // The name space: homes (0755, each with a subdirectory and a private directory), a shared
    // 1777 directory, project 7 (tight limit) and project 8, each 1777 with a subdirectory.
    f.root("mkdir -p shared/x proj/x proj2/x hroot/priv && chmod 1777 shared shared/x proj proj/x proj2 proj2/x");
    for uid in TENANTS {
        f.home(&format!("h{uid}"), uid, uid);
        f.sh_ok(uid, uid, &format!("mkdir h{uid}/sub h{uid}/priv"));
    }
    for (dir, id) in [("proj", "7"), ("proj2", "8")] {
        run_ok(Command::new(BIN).args(["--state-dir", &st, "project", "assign"]).arg(f.m(dir)).args(["--id", id]));
    }
    for (kind, id, limit, _, _) in LIMITS {
        run_ok(
            Command::new(BIN)
                .args(["--state-dir", &st, "quota", "set", &format!("--{kind}"), &id.to_string()])
                .args(limit),
        );
    }
    let script = f.scratch.dir.join("worker.py");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stress/worker.py"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Every worker appends the refused write-backs it sees (one line each, O_APPEND).
    let wb_log = f.scratch.dir.join("refused-writebacks.log");
    std::fs::write(&wb_log, "").unwrap();
    std::fs::set_permissions(&wb_log, std::fs::Permissions::from_mode(0o666)).unwrap();

    let common_bases = ["shared", "shared/x", "proj", "proj/x", "proj2", "proj2/x"];
    let mut workers = Vec::new();
    for uid in TENANTS.into_iter().chain([0]) {
        let mut bases: Vec<String> = common_bases.iter().map(|s| s.to_string()).collect();
        let (name, private) = if uid == 0 {
            bases.push("hroot".into());
            ("root".to_string(), "hroot/priv".to_string())
        } else {
            (uid.to_string(), format!("h{uid}/priv"))
        };
        // Every home: one's own to write in, the others' to read (and be refused) in.
        for t in TENANTS {
            bases.push(format!("h{t}"));
            bases.push(format!("h{t}/sub"));
        }
        if uid != 0 {
            // One's own home twice as likely as the others'.
            bases.push(format!("h{uid}"));
            bases.push(format!("h{uid}/sub"));
        }
        let wseed = rng.next();
        workers.push(spawn_worker(&f, &script, &wb_log, &Spec { name, uid, seed: wseed, bases, private }, secs));
    }

    // Every worker ends on its own; one that does not is stuck in the file system.
    let mut problems: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 120.0);
    let mut results: Vec<serde_json::Value> = Vec::new();
    for w in &mut workers {
        let status = loop {
            if let Some(s) = w.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&w.child),
                    rustix::process::Signal::KILL,
                );
                // No wait: a process stuck in a request the daemon never answers cannot be
                // reaped until the daemon is gone (the fixture's drop kills it).
                let _ = w.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr = std::fs::read_to_string(&w.err).unwrap_or_default();
        match status {
            None => problems.push(format!("worker {} did not end within {secs} s + 120 s (killed)", w.name)),
            Some(s) if !s.success() => problems.push(format!("worker {} exited {s}: {stderr}", w.name)),
            Some(_) => {}
        }
        let out = std::fs::read_to_string(&w.out).unwrap_or_default();
        match out.lines().last().map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(v)) => results.push(v),
            _ => problems.push(format!("worker {} wrote no summary: {out:?} {stderr}", w.name)),
        }
    }

    // What the workers did and what failed.
    let mut total_ops = 0;
    let mut outcomes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut given: BTreeMap<String, u64> = BTreeMap::new();
    let mut failure_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &results {
        let name = r["worker"].as_str().unwrap_or("?");
        let ops = r["ops"].as_u64().unwrap_or(0);
        total_ops += ops;
        let failures = r["failure_count"].as_u64().unwrap_or(0);
        println!("worker {name}: {ops} ops in {} s, {failures} failures", r["secs"]);
        if let Some(counts) = r["counts"].as_object() {
            for (op, by) in counts {
                for (outcome, n) in by.as_object().into_iter().flatten() {
                    *outcomes.entry(op.clone()).or_default().entry(outcome.clone()).or_default() +=
                        n.as_u64().unwrap_or(0);
                }
            }
        }
        for (k, v) in r["given"].as_object().into_iter().flatten() {
            *given.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
        for (kind, n) in r["failure_kinds"].as_object().into_iter().flatten() {
            *failure_kinds.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        for x in r["failures"].as_array().into_iter().flatten() {
            let ex = examples.entry(x["kind"].as_str().unwrap_or("?").to_string()).or_default();
            if ex.len() < 3 {
                ex.push(format!("worker {name}: {x}"));
            }
        }
    }
    // An EIO from a flush is the documented answer only for an inode whose mapping's write-back
    // a mapping worker saw refused; every other one fails the run.
    let refused = refused_writebacks(&wb_log);
    println!(
        "refused write-backs seen by the mapping workers: {} EDQUOT and {} EIO on {} inodes",
        refused.values().map(|r| r.edquot).sum::<u64>(),
        refused.values().map(|r| r.eio).sum::<u64>(),
        refused.len()
    );
    for r in &results {
        let name = r["worker"].as_str().unwrap_or("?");
        for x in r["flush_eio"].as_array().into_iter().flatten() {
            let op = x["op"].as_str().unwrap_or("?");
            // An msync's EIO on a shared writable map is how the kernel reports the refusal of
            // that map's own write-back (the mapping's AS_EIO): it is its own evidence, and it is
            // in the log. Any other flush's EIO needs a refusal of its inode in the log.
            let on_refused = x["inodes"].as_array().into_iter().flatten().any(|i| {
                let key = (i[0].as_u64().unwrap_or(u64::MAX), i[1].as_u64().unwrap_or(u64::MAX));
                refused.get(&key).is_some_and(|r| r.edquot > 0 || r.eio > 0)
            });
            if on_refused {
                *outcomes.entry(DOC_FLUSH.into()).or_default().entry(format!("{op} EIO")).or_default() += 1;
                continue;
            }
            let kind = if x["reopened_from_unlinked"].as_bool() == Some(true) {
                format!(
                    "fatal EIO {op} (reopened from an unlinked file: reached another inode, \
                     tests/reopen_reused_inode.rs)"
                )
            } else {
                format!("fatal EIO {op} (no refused write-back of its inode)")
            };
            *failure_kinds.entry(kind.clone()).or_default() += 1;
            let ex = examples.entry(kind).or_default();
            if ex.len() < 3 {
                ex.push(format!("worker {name}: {x}"));
            }
        }
    }
    for (kind, n) in &failure_kinds {
        let ex = examples.get(kind).map(|e| e.join("\n      ")).unwrap_or_default();
        problems.push(format!("{n} x {kind}, e.g.:\n      {ex}"));
    }
    println!("total: {total_ops} operations by {} workers (seed {seed})", results.len());
    for (op, by) in &outcomes {
        println!("  {op:<22} {by:?}");
    }

    // A stuck worker means a stuck request: anything done through the mount now could hang too.
    let stuck = problems.iter().any(|p| p.contains("did not end"));
    assert!(!stuck, "stress run (QUOTAFS_SEED={seed}) found {} problems:\n  {}", problems.len(), problems.join("\n  "));
    if let Err(e) = daemon_alive(&f) {
        problems.push(format!("after the run: {e}"));
    } else {
        // Quiescent: every worker has exited, so every descriptor is closed.
        if let Some(d) = lasting_drift(&f) {
            problems.push(format!("drift after the run (ledger vs recount):\n{d}"));
        }
        // No tenant or project above its hard limit by more than root (exempt) gave it: on
        // disk, whatever the ledger says. Root never writes into the tight tenants' files nor
        // chowns to them, so for them the bound is the limit and ext4's metadata slack. A
        // project may also hold root's own files and what root gave the other tenants.
        let usage = recount(f.backing());
        let root_owned = root_owned_by_project(f.backing());
        let given_to_users: u64 = given.iter().filter(|(k, _)| k.starts_with("user:")).map(|(_, v)| v).sum();
        for (kind, id, _, hard, hard_inodes) in LIMITS {
            let (used, used_inodes) = usage.get(&(kind.to_string(), id)).copied().unwrap_or_default();
            let mut gift = given.get(&format!("{kind}:{id}")).copied().unwrap_or(0);
            // Inodes: only root's chowns give a tenant inodes; a project also holds root's own.
            let mut gift_inodes = given.get(&format!("inodes:{kind}:{id}")).copied().unwrap_or(0);
            if kind == "project" {
                let (root_bytes, root_inodes) = root_owned.get(&id).copied().unwrap_or_default();
                gift += root_bytes + given_to_users;
                gift_inodes += root_inodes + given.get("inodes:chowned").copied().unwrap_or(0);
            }
            if used_inodes > hard_inodes.saturating_add(gift_inodes) {
                problems.push(format!(
                    "{kind} {id} uses {used_inodes} inodes: above its hard limit {hard_inodes} + {gift_inodes} made or \
                     given by root"
                ));
            }
            println!(
                "{kind} {id}: {used} bytes and {used_inodes} inodes on disk, hard limits {hard} and {hard_inodes}, \
                 written or moved for it by root {gift} bytes, {gift_inodes} inodes"
            );
            if used > hard.saturating_add(SLACK).saturating_add(gift) {
                problems.push(format!(
                    "{kind} {id} uses {used} bytes: above its hard limit {hard} + {SLACK} slack + {gift} written by root"
                ));
            }
        }
        // In a thread: a request the daemon never answers must fail the test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        let mnt = f.mnt.clone();
        std::thread::spawn(move || {
            let mut walk_problems = Vec::new();
            let inodes = walk_and_read(&mnt, &mut walk_problems);
            let _ = tx.send((inodes, walk_problems));
        });
        let (inodes, walk_problems) =
            rx.recv_timeout(HUNG).expect("the walk through the mount did not end: the daemon does not answer");
        println!("walked and read {inodes} inodes");
        problems.extend(walk_problems.into_iter().map(|p| format!("walk: {p}")));

        f.kill9();
        f.start(&args);
        if let Some(d) = lasting_drift(&f) {
            problems.push(format!("drift after kill -9 and restart:\n{d}"));
        }
        let top: Vec<String> = std::fs::read_dir(&f.mnt)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let top: Vec<String> = top.into_iter().filter(|n| n != "lost+found").map(|n| format!("'{n}'")).collect();
        let out = bounded(Command::new("sh").args(["-c", &format!("rm -rf {}", top.join(" "))]).current_dir(&f.mnt));
        if !out.status.success() {
            problems.push(format!("rm -rf as root failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let left: Vec<String> = std::fs::read_dir(&f.mnt)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lost+found")
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            problems.push(format!("left after rm -rf: {left:?}"));
        }
        if let Err(e) = daemon_alive(&f) {
            problems.push(format!("after the removal: {e}"));
        } else if let Some(d) = lasting_drift(&f) {
            problems.push(format!("drift after removing everything:\n{d}"));
        }
    }
    let log = f.log_text();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).take(5).collect();
    if !panics.is_empty() {
        problems.push(format!("the daemon panicked:\n    {}", panics.join("\n    ")));
    }
    assert!(
        problems.is_empty(),
        "stress run (QUOTAFS_SEED={seed}, {total_ops} operations, {secs} s) found {} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
