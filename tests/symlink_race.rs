//! A tenant swapping a directory for a symlink (to a place outside the backing) while other
//! operations run never makes the daemon read or write outside the backing: names are
//! resolved only relative to directory descriptors, never following a symlink.

mod common;

use std::time::{Duration, Instant};

use common::Fixture;

#[test]
fn swapped_symlinks_never_lead_outside_the_backing() {
    let f = Fixture::new("symrace");
    // Outside the backing: a root-only secret and a root-owned directory a tenant cannot
    // write to. Through the kernel (which follows the tenant's symlink with the tenant's
    // rights) both are refused; only the daemon, as root, could reach them.
    let outside = f.scratch.dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"TOPSECRET").unwrap();
    std::fs::set_permissions(outside.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    f.home("t", 1000, 1000);
    let target = outside.to_str().unwrap().to_string();

    let swapper = {
        let mnt = f.mnt.clone();
        let script = format!(
            "end=$(($(date +%s)+4)); while [ $(date +%s) -lt $end ]; do \
               mkdir t/d 2>/dev/null; echo public > t/d/secret 2>/dev/null; \
               rm -rf t/d; ln -s {target} t/d 2>/dev/null; rm -f t/d; done"
        );
        std::thread::spawn(move || {
            std::process::Command::new("setpriv")
                .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", &script])
                .current_dir(mnt)
                .output()
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut leaked = Vec::new();
    let mut rounds = 0;
    while Instant::now() < deadline {
        rounds += 1;
        let out = f.sh_as(
            1000,
            1000,
            "cat t/d/secret 2>/dev/null; echo planted > t/d/planted 2>/dev/null; \
             mkdir t/d/newdir 2>/dev/null; ln -s x t/d/newlink 2>/dev/null; \
             touch t/d/secret 2>/dev/null; chmod 666 t/d/secret 2>/dev/null; \
             mv t/d/planted t/d/moved 2>/dev/null; true",
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("TOPSECRET") {
            leaked.push(text);
        }
    }
    swapper.join().unwrap();
    assert!(leaked.is_empty(), "the secret outside the backing was read: {leaked:?}");
    let mut names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("secret")], "nothing was created outside the backing");
    let md = std::fs::metadata(outside.join("secret")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777, 0o600, "its mode is unchanged");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"TOPSECRET");
    assert!(rounds > 5, "the race ran {rounds} rounds");
}
