//! Tenant processes that hold files open: `tests/common/holder.py` run as a given uid, driven
//! one command at a time (see the script's doc string for the commands and answers).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/holder.py");

/// One holder process; killed when dropped (its files close with it).
pub struct Holder {
    pub uid: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    pub fn spawn(uid: u32, gid: u32) -> Holder {
        let mut child = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .args(["/usr/bin/python3", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the holder");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Holder { uid, child, stdin, stdout }
    }

    /// Sends one command, returns the answer line.
    pub fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("holder alive");
        let mut out = String::new();
        self.stdout.read_line(&mut out).expect("holder answers");
        assert!(!out.is_empty(), "holder uid {} died at `{line}`", self.uid);
        out.trim_end().to_string()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
