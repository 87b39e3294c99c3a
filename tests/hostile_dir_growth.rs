//! Another tenant cannot push a directory's owner past its hard limit by growing the directory
//! (issue #14 item 9).
//!
//! ext4 (and the ledger, which counts as it does) charges a directory's blocks to the
//! directory's owner. A tenant filling someone else's world-writable directory with long names
//! grows it block by block; the directory never shrinks when the names go. Each operation that
//! may add an entry therefore needs room for one more directory block under the owner's (and
//! the directory's project's) limits, and is refused with EDQUOT — the caller's refusal — when
//! there is none, as ext4 refuses whoever grows a directory whose owner is over quota.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run_ok};

const LIMIT: u64 = 1 << 20;

/// Creates empty files with 240-byte names in `dir` until a creation fails or `max` are made;
/// prints the count and the errno of the failure (0: none).
const FILLER: &str = r#"
use Fcntl;
my ($dir, $max) = @ARGV;
my $pad = "n" x 230;
my $i = 0;
my $err = 0;
while ($i < $max) {
    my $name = sprintf("%s/%s%010d", $dir, $pad, $i);
    if (!sysopen(my $fh, $name, O_WRONLY | O_CREAT | O_EXCL)) { $err = $! + 0; last; }
    close($fh);
    $i++;
}
print "$i $err\n";
"#;

fn user_bytes(f: &Fixture, uid: u32) -> u64 {
    report(&f.state).get(&("user".to_string(), uid)).map_or(0, |u| u.0)
}

#[test]
fn growing_another_tenants_directory_is_refused_to_the_grower() {
    let f = Fixture::new("dir-growth");
    let st = f.state.to_str().unwrap().to_string();
    let shared = f.home("shared", 1001, 1001);
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    f.home("h1002", 1002, 1002);
    f.sh_ok(1001, 1001, "head -c 200000 /dev/zero > shared/mine");
    run_ok(Command::new(BIN).args(["--state-dir", &st, "quota", "set", "--user", "1001", "--bytes-hard", "1M"]));
    let script = f.scratch.dir.join("filler.pl");
    std::fs::write(&script, FILLER).unwrap();

    // uid 1002, without limits of its own, fills 1001's directory until refused.
    let out = f.sh_ok(1002, 1002, &format!("perl {} shared 12000", script.display()));
    let (made, errno) = out.trim().split_once(' ').unwrap();
    let (made, errno): (u64, i32) = (made.parse().unwrap(), errno.parse().unwrap());
    let owner = user_bytes(&f, 1001);
    assert_eq!(errno, libc::EDQUOT, "uid 1002 made {made} entries and was not refused; uid 1001 uses {owner} bytes");
    assert!(owner <= LIMIT, "uid 1001 uses {owner} bytes against a 1 MiB hard limit after {made} entries");
    assert!(made > 1000, "only {made} entries before the refusal");
    assert_exact(&f.state, f.backing(), "after filling another tenant's directory");

    // The refusal is 1002's only there: it writes freely in its own directory.
    f.sh_ok(1002, 1002, "head -c 3000000 /dev/zero > h1002/big");
    // Links and renames into the directory grow it too: refused to 1002 as well.
    for cmd in [
        "ln h1002/big shared/link-with-a-long-name-$(printf 'x%.0s' $(seq 200))",
        "mv h1002/big shared/moved-with-a-long-name-$(printf 'y%.0s' $(seq 200))",
        "mkdir shared/dir-with-a-long-name-$(printf 'z%.0s' $(seq 200))",
        "ln -s target shared/symlink-with-a-long-name-$(printf 'w%.0s' $(seq 200))",
    ] {
        let out = f.sh_as(1002, 1002, cmd);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"),
            "`{cmd}` as 1002: {out:?}"
        );
    }
    assert!(user_bytes(&f, 1001) <= LIMIT, "uid 1001 uses {} bytes", user_bytes(&f, 1001));
    // Root is never refused (and counted).
    f.root("touch shared/by-root-$(printf 'r%.0s' $(seq 200))");

    // The names go; the directory keeps its blocks (ext4 never shrinks one), within the limit.
    f.sh_ok(1002, 1002, "find shared -user 1002 -delete");
    assert!(user_bytes(&f, 1001) <= LIMIT + 4096, "uid 1001 uses {} bytes", user_bytes(&f, 1001));
    assert_exact(&f.state, f.backing(), "after the names were removed");
}
