//! nfs-ganesha (FSAL VFS) exporting a quotafs mount over 127.0.0.1, inside a network namespace
//! of the test's own, and a libnfs client (tests/nfs/client.c) that runs in it.
//!
//! The namespace is held by a `sleep` so that ganesha can be stopped and started again while
//! clients keep their sockets' namespace. ganesha and its rpcbind run in a private mount
//! namespace with their own tmpfs on /run and /var/lib/nfs, so tests in parallel do not share
//! rpcbind's socket or ganesha's recovery directory. Everything is killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::run_ok;

/// A network namespace with only `lo`, up.
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Netns {
        let holder = Command::new("unshare")
            .args(["-n", "sh", "-c", "ip link set lo up && exec sleep 100000"])
            .spawn()
            .expect("unshare -n");
        let ns = Netns { holder };
        let deadline = Instant::now() + Duration::from_secs(5);
        // Wait until the holder has entered its namespace (its ns link differs from ours).
        while std::fs::read_link(ns.path()).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
            assert!(Instant::now() < deadline, "network namespace not created");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// ganesha.nfsd exporting `export` as pseudo path `/q` (NFSv3 and v4, sec=sys, no root squash).
pub struct Ganesha {
    child: Option<Child>,
    pub dir: PathBuf,
    export: PathBuf,
    /// EXPORT blocks replacing the fixture's (e.g. from `quotafs nfs exports`).
    exports: Option<String>,
}

impl Ganesha {
    pub fn start(ns: &Netns, export: &Path, dir: &Path) -> Ganesha {
        std::fs::create_dir_all(dir).unwrap();
        let mut g = Ganesha { child: None, dir: dir.to_path_buf(), export: export.to_path_buf(), exports: None };
        g.restart(ns);
        g
    }

    /// ganesha with fixtures/ganesha.conf's settings but `exports` (EXPORT blocks) for its own.
    pub fn start_with_exports(ns: &Netns, exports: &str, dir: &Path) -> Ganesha {
        std::fs::create_dir_all(dir).unwrap();
        let mut g =
            Ganesha { child: None, dir: dir.to_path_buf(), export: PathBuf::new(), exports: Some(exports.to_string()) };
        g.restart(ns);
        g
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("ganesha.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Starts ganesha (stopped first if running) and waits until it serves.
    pub fn restart(&mut self, ns: &Netns) {
        self.stop();
        let conf = self.dir.join("ganesha.conf");
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ganesha.conf")).unwrap();
        let text = match &self.exports {
            // The fixture's blocks up to its EXPORT, then the given exports, then its LOG.
            Some(exports) => {
                let (head, rest) = template.split_once("EXPORT {").expect("fixture has an EXPORT block");
                let log = &rest[rest.find("LOG {").expect("fixture has a LOG block")..];
                format!("{head}{exports}\n{log}")
            }
            None => template.replace("/srv/quotafs", &self.export.to_string_lossy()),
        };
        std::fs::write(&conf, text).unwrap();
        let _ = std::fs::remove_file(self.log());
        let script = format!(
            "mount -t tmpfs none /run && mount -t tmpfs none /var/lib/nfs && mkdir -p /var/lib/nfs/ganesha \
             || exit 1; rpcbind -w -f & sleep 0.3; exec ganesha.nfsd -F -f {} -L {} -p {}",
            conf.display(),
            self.log().display(),
            self.dir.join("ganesha.pid").display()
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]).process_group(0);
        self.child = Some(cmd.spawn().expect("start ganesha"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains("NFS SERVER INITIALIZED") {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ganesha exited ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "ganesha did not start:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops ganesha and its rpcbind (the whole process group), releasing its mount namespace
    /// and with it the namespace's reference to the quotafs mount.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pgid}")]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
            let _ = child.wait();
            // The group's last members (rpcbind) may outlive the leader for a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && Command::new("kill")
                    .args(["-0", "--", &format!("-{pgid}")])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The libnfs test client, compiled once per test binary.
pub fn client_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = std::env::temp_dir().join(format!("quotafs-nfs-client-{}", std::process::id()));
            run_ok(
                Command::new("cc")
                    .args(["-O1", "-Wall", "-o"])
                    .arg(&out)
                    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nfs/client.c"))
                    .arg("-lnfs"),
            );
            out
        })
        .clone()
}

/// A running libnfs client session (see tests/nfs/client.c for its commands).
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    /// Mounts `/q` over NFS `version` (3 or 4) as uid:gid.
    pub fn connect(ns: &Netns, version: u32, uid: u32, gid: u32) -> Client {
        Client::connect_to(ns, "/q", version, uid, gid)
    }

    /// Mounts export `path` (a pseudo path) over NFS `version` (3 or 4) as uid:gid.
    pub fn connect_to(ns: &Netns, path: &str, version: u32, uid: u32, gid: u32) -> Client {
        let mut child = ns
            .command(client_binary().to_str().unwrap())
            .args(["127.0.0.1", path, &version.to_string(), &uid.to_string(), &gid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start NFS client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = Client { child, stdin, stdout };
        let hello = c.read_line();
        assert_eq!(hello, "ok mounted", "NFSv{version} mount failed");
        c
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client output");
        line.trim_end_matches('\n').to_string()
    }

    /// Sends one command; returns the answer line ("ok ..." or "err ...").
    pub fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("client input");
        self.read_line()
    }

    /// A command that must succeed; returns what follows "ok".
    pub fn ok(&mut self, line: &str) -> String {
        let answer = self.cmd(line);
        assert!(answer.starts_with("ok"), "NFS `{line}`: {answer}");
        answer.trim_start_matches("ok").trim_start().to_string()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `quotafs rquotad` in `ns` with an rpcbind of its own (private /run), serving `state`.
pub struct Rquotad {
    child: Child,
    pub port: u16,
}

impl Rquotad {
    pub fn start(ns: &Netns, state: &std::path::Path) -> Rquotad {
        let script = format!(
            "mount -t tmpfs none /run || exit 1; rpcbind -w -f & sleep 0.3; exec {} --state-dir {} rquotad",
            super::BIN,
            state.display()
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]).stdout(Stdio::piped()).process_group(0);
        let mut child = cmd.spawn().expect("start rquotad");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(' ').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        Rquotad { child, port }
    }
}

impl Drop for Rquotad {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.wait();
    }
}
