//! On an ext4 whose block is smaller than 4 KiB, a tenant at its hard limit writes 768 KiB
//! more with one write.
//!
//! When the worst case of a write does not fit, the daemon reserves only the blocks the range
//! would newly allocate, found with SEEK_DATA / SEEK_HOLE, but it counts in 4 KiB units: a
//! 4 KiB chunk that holds any data counts as fully allocated. With 1 KiB blocks, a file with
//! one byte in every 4 KiB chunk (one block allocated in four) looks full: overwriting it
//! wants nothing, is admitted at the limit, and allocates the other three blocks of every
//! chunk. Measured: 1 MiB hard limit, 1,821,696 bytes charged after one 1 MiB write. The
//! cause is `new_blocks` in src/passthrough/account.rs (its 4 KiB `BLOCK`, not the file
//! system's block: hole starts rounded up, data starts rounded down).

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run_ok};

const LIMIT: u64 = 1 << 20;

/// Puts one byte at the start of each of `chunks` 4 KiB chunks of `file`, then overwrites the
/// first `over` chunks with one write. Prints the bytes that write wrote (or -errno).
const WRITER: &str = r#"
use Fcntl;
my ($file, $chunks, $over) = @ARGV;
sysopen(my $fh, $file, O_RDWR | O_CREAT | O_EXCL) or die "open: $!";
for my $k (0 .. $chunks - 1) {
    sysseek($fh, $k * 4096, 0) or die "seek: $!";
    syswrite($fh, "s", 1) == 1 or die "seed $k: $!";
}
sysseek($fh, 0, 0) or die "seek: $!";
my $n = syswrite($fh, "D" x ($over * 4096));
print defined($n) ? "$n\n" : "-" . ($! + 0) . "\n";
close($fh);
"#;

#[test]
fn a_write_over_partly_allocated_chunks_is_charged_against_the_limit() {
    let f = Fixture::new("attack-subblock-holes");
    let st = f.state.to_str().unwrap().to_string();
    f.home("u", 1001, 1001);
    let blksize = std::fs::metadata(f.b("u")).unwrap().blksize();
    assert!(blksize < 4096, "the scenario needs an ext4 block smaller than 4 KiB, the image has {blksize}");
    run_ok(Command::new(BIN).args(["--state-dir", &st, "quota", "set", "--user", "1001", "--bytes-hard", "1M"]));
    let script = f.scratch.dir.join("writer.pl");
    std::fs::write(&script, WRITER).unwrap();

    // 1000 seeds take the tenant to its limit (one block each, and the extent tree); the
    // overwrite of the first 256 chunks (1 MiB, one FUSE write) needs 768 blocks more.
    let seeds = LIMIT / blksize - 24;
    let out = f.sh_ok(1001, 1001, &format!("perl {} u/sparse {seeds} 256", script.display()));
    eprintln!("the overwrite returned {}", out.trim());
    f.root("sync");
    assert_exact(&f.state, f.backing(), "after the overwrite");
    let used = report(&f.state).get(&("user".to_string(), 1001)).map_or(0, |u| u.0);
    assert!(
        used <= LIMIT + 16 * blksize,
        "uid 1001 holds {used} bytes against a {LIMIT}-byte hard limit ({} over): the overwrite of \
         chunks holding one {blksize}-byte block in four was admitted as allocating nothing",
        used - LIMIT
    );
}
