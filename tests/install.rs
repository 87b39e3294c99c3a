//! `make install` puts the binary, both man pages, the systemd unit (Type=notify from the
//! supervisor, a supervised mount at the installed binary, `reload` an upgrade in place through
//! it) and an example config where a distribution would, under PREFIX and
//! DESTDIR; `systemd-analyze verify` accepts the installed unit; `make uninstall` takes it all
//! away again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_quotafs");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make(args: &[String]) {
    let out = Command::new("make").arg("-C").arg(REPO).args(args).output().expect("make (apt-get install make)");
    assert!(
        out.status.success(),
        "make {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn make_install_puts_everything_where_a_distribution_would() {
    let tmp = TempDir(std::env::temp_dir().join(format!("quotafs-install-{}", std::process::id())));
    let prefix = tmp.0.join("usr");
    let vars = vec![format!("PREFIX={}", prefix.display()), format!("BIN={BIN}")];
    make(&[&["install".to_string()][..], &vars].concat());

    let bin = prefix.join("bin/quotafs");
    let unit = prefix.join("lib/systemd/system/quotafs.service");
    let files = [
        (bin.clone(), 0o755),
        (prefix.join("share/man/man8/quotafs.8"), 0o644),
        (prefix.join("share/man/man5/quotafs.toml.5"), 0o644),
        (unit.clone(), 0o644),
        (prefix.join("share/doc/quotafs/quotafs.toml.example"), 0o644),
    ];
    for (path, m) in &files {
        assert_eq!(mode(path), *m, "{}", path.display());
    }
    assert_eq!(
        std::fs::read(prefix.join("share/man/man8/quotafs.8")).unwrap(),
        std::fs::read(Path::new(REPO).join("man/quotafs.8")).unwrap()
    );
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("mount"));

    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify".to_string(),
        // READY=1 comes from the supervisor, which is the main process.
        "NotifyAccess=main".into(),
        "KillMode=mixed".into(),
        "Restart=on-failure".into(),
        format!("ExecStart={} --config /etc/quotafs.toml mount --supervise", bin.display()),
        format!("ExecReload={} --config /etc/quotafs.toml restart", bin.display()),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");

    // DESTDIR: the same tree under a staging root, nothing outside it.
    let stage = tmp.0.join("stage");
    make(
        &[&["install".to_string(), format!("DESTDIR={}", stage.display()), "PREFIX=/usr".into()][..], &vars[1..]]
            .concat(),
    );
    let staged = std::fs::read_to_string(stage.join("usr/lib/systemd/system/quotafs.service")).unwrap();
    assert!(
        staged.lines().any(|l| l == "ExecStart=/usr/bin/quotafs --config /etc/quotafs.toml mount --supervise"),
        "{staged}"
    );
    assert!(staged.lines().any(|l| l == "ExecReload=/usr/bin/quotafs --config /etc/quotafs.toml restart"), "{staged}");
    assert_eq!(mode(&stage.join("usr/bin/quotafs")), 0o755);

    make(&[&["uninstall".to_string()][..], &vars].concat());
    for (path, _) in &files {
        assert!(!path.exists(), "{} left after uninstall", path.display());
    }
}
