//! `quotafs demo`: a built-in example on a throwaway ext4 image. It makes the image, mounts it
//! as the backing, mounts quotafs over it (this same binary, `quotafs mount`), gives a tenant
//! (uid 1000) a 12 MiB quota, lets it write until EDQUOT, shows `df`, `report` and `check` and
//! what the backing holds, then unmounts and removes everything, also when a step fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{CliError, DemoArgs};
use crate::backing::sys;
use crate::config::mount_at;

struct Demo {
    dir: PathBuf,
    keep: bool,
    backing_mounted: bool,
    daemon: Option<Child>,
}

impl Demo {
    fn mnt(&self) -> PathBuf {
        self.dir.join("mnt")
    }
    fn backing(&self) -> PathBuf {
        self.dir.join("backing")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            if mount_at(&self.mnt()).is_some() {
                let _ = Command::new("umount").arg("-l").arg(self.mnt()).status();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.backing_mounted {
            let _ = Command::new("umount").arg(self.backing()).status();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn step(what: &str, cmd: &mut Command) -> Result<(), CliError> {
    let out = cmd.output().map_err(|e| CliError::failed(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(CliError::failed(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn show(title: &str, cmd: &mut Command) -> Result<(), CliError> {
    println!("\n$ {title}");
    let out = cmd.output().map_err(|e| CliError::failed(format!("{title}: {e}")))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(CliError::failed(format!("`{title}` failed")));
    }
    Ok(())
}

fn as_tenant(script: &str, cwd: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(cwd);
    std::os::unix::process::CommandExt::uid(&mut c, 1000);
    std::os::unix::process::CommandExt::gid(&mut c, 1000);
    c
}

pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    if sys::effective_uid() != 0 {
        return Err(CliError::usage("quotafs demo must run as root (it mounts an ext4 image and a FUSE file system)"));
    }
    let exe = std::env::current_exe().map_err(|e| CliError::failed(format!("cannot find this program: {e}")))?;
    let dir = std::env::temp_dir().join(format!("quotafs-demo-{}", std::process::id()));
    let mut demo = Demo { dir: dir.clone(), keep: args.keep, backing_mounted: false, daemon: None };
    for d in ["backing", "mnt", "state"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| CliError::failed(format!("mkdir {}: {e}", dir.display())))?;
    }
    let image = dir.join("backing.img");
    println!("quotafs demo in {}", dir.display());
    step("create image", Command::new("truncate").arg("-s").arg("256M").arg(&image))?;
    step("mkfs.ext4", Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
    step("mount image", Command::new("mount").arg("-o").arg("loop").arg(&image).arg(demo.backing()))?;
    demo.backing_mounted = true;

    let child = Command::new(&exe)
        .arg("mount")
        .arg("--backing")
        .arg(demo.backing())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg(demo.mnt())
        .env("QUOTAFS_LOG", std::env::var("QUOTAFS_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start quotafs mount: {e}")))?;
    demo.daemon = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mount_at(&demo.mnt()).is_some_and(|(t, _)| t.starts_with("fuse")) {
        if Instant::now() > deadline {
            return Err(CliError::failed("quotafs did not mount within 10 s"));
        }
        if let Some(Ok(Some(status))) = demo.daemon.as_mut().map(Child::try_wait) {
            return Err(CliError::failed(format!("quotafs mount exited early: {status}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mnt = demo.mnt();
    step("make a home", Command::new("install").args(["-d", "-o", "1000", "-g", "1000"]).arg(mnt.join("home/alice")))?;
    let home = mnt.join("home/alice");
    let state = dir.join("state");
    let quotafs = |args: &[&str]| {
        let mut c = Command::new(&exe);
        c.arg("--state-dir").arg(&state).args(args);
        c
    };
    show(
        "quotafs quota set --user 1000 --bytes-hard 12M",
        &mut quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "12M"]),
    )?;
    show(
        "(as uid 1000) write, append, copy and link files in /home/alice",
        &mut as_tenant(
            "echo 'hello from a tenant' > hello.txt && echo 'second line' >> hello.txt && \
             dd if=/dev/urandom of=data.bin bs=1M count=4 status=none && cp data.bin copy.bin && \
             ln -s hello.txt link && mkdir -p projects/site && echo ok",
            &home,
        ),
    )?;
    show("ls -lan /home/alice (through quotafs)", Command::new("ls").arg("-lan").arg(&home))?;
    show("cat /home/alice/link", Command::new("cat").arg(home.join("link")))?;
    show("du -sh /home/alice", Command::new("du").arg("-sh").arg(&home))?;
    show("(as uid 1000) df -h /home/alice: the tenant sees its own quota", &mut as_tenant("df -h .", &home))?;
    println!("\n$ (as uid 1000) head -c 8M /dev/zero > big   # 8 MiB more would pass the 12 MiB limit");
    let out = as_tenant("head -c 8388608 /dev/zero > big; ls -l big", &home)
        .output()
        .map_err(|e| CliError::failed(format!("tenant write: {e}")))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    show("quotafs report", &mut quotafs(&["report"]))?;
    show("quotafs check (full rescan vs the ledger)", &mut quotafs(&["check"]))?;
    show("cmp data.bin copy.bin", Command::new("cmp").arg(home.join("data.bin")).arg(home.join("copy.bin")))?;
    show(
        "ls -lan (the backing ext4 holds the same files, owned by the tenant)",
        Command::new("ls").arg("-lan").arg(demo.backing().join("home/alice")),
    )?;
    step("unmount", Command::new("umount").arg(&mnt))?;
    if let Some(mut child) = demo.daemon.take() {
        let status = child.wait().map_err(|e| CliError::failed(e.to_string()))?;
        println!("\nquotafs exited with {status} after `umount`");
    }
    println!("demo done{}", if args.keep { format!("; kept {}", dir.display()) } else { "; cleaned up".into() });
    Ok(())
}
