//! Extent blocks that ext4 allocates at writeback are charged, whenever the write that caused
//! them lands relative to a checkpoint (issue #14 item 6).
//!
//! ext4 builds a delayed-allocation file's extent tree only when its pages are written back:
//! a file of more than four separate extents gets its extent block then, after the write was
//! settled. A tenant writing such files continuously, with checkpoints every second, makes
//! some of them land between a checkpoint's log rotation and its writeback reconcile; those
//! must stay remembered for the next checkpoint, or their blocks are never charged; and the
//! ledger must stay exact when the daemon is killed amid such writes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{Fixture, assert_exact};

/// Writes files of six one-byte pieces 8 KiB apart (six extents: one extent block at
/// writeback), one after another, for `secs` seconds or `max` files. Prints the count.
const WRITER: &str = r#"
use Fcntl;
my ($dir, $secs, $max) = @ARGV;
my $end = time + $secs;
my $i = 0;
while (time < $end && $i < $max) {
    sysopen(my $fh, "$dir/f$i", O_WRONLY | O_CREAT) or die "open: $!";
    for my $k (0 .. 5) {
        sysseek($fh, $k * 8192, 0) or die "seek: $!";
        syswrite($fh, "x", 1) == 1 or die "write: $!";
    }
    close($fh) or die "close: $!";
    $i++;
}
print "$i\n";
"#;

#[test]
fn blocks_allocated_at_writeback_are_charged_across_checkpoints() {
    let mut f = Fixture::with_args("writeback-blocks", &["--checkpoint-interval", "1"]);
    f.home("u", 1000, 1000);
    let script = f.scratch.dir.join("writer.pl");
    std::fs::write(&script, WRITER).unwrap();
    let out = f.sh_ok(1000, 1000, &format!("perl {} u 6 2500", script.display()));
    let files: u64 = out.trim().parse().unwrap_or_else(|e| panic!("writer printed {out:?}: {e}"));
    assert!(files > 10, "only {files} files written");
    eprintln!("{files} files written");
    // Quiesce: everything written back, then two checkpoints.
    f.root("sync");
    std::thread::sleep(Duration::from_millis(2500));
    // The scenario is exercised only if writeback added the extent block.
    let md = std::fs::metadata(f.b("u/f0")).unwrap();
    assert_eq!(md.blocks(), 7 * md.blksize() / 512, "six data blocks and one extent block after writeback");
    assert_exact(&f.state, f.backing(), &format!("after {files} fragmented files under 1 s checkpoints"));

    // The same across a crash: kill -9 right after such writes, pages still dirty and files
    // still remembered across the checkpoints in between; recovery must be exact too.
    f.sh_ok(1000, 1000, "mkdir u/again");
    f.sh_ok(1000, 1000, &format!("perl {} u/again 3 1500", script.display()));
    f.kill9();
    f.start(&["--checkpoint-interval", "1"]);
    assert_exact(&f.state, f.backing(), "after kill -9 amid fragmented writes");
}
