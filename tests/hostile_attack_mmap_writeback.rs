//! A tenant writes past its hard limit, without bound, through a shared writable mapping.
//!
//! Truncating a file up allocates nothing and is allowed below the limit; the tenant then maps
//! the file `MAP_SHARED` with `PROT_WRITE` and stores into the mapping. The kernel writes the
//! dirty pages back with FUSE WRITE requests that carry no caller credentials (writeback
//! requests are `nocreds`: uid 0, gid 0, pid 0), so the daemon takes them for root's, and root
//! is never refused (`Enforcer::is_exempt`, src/quota/enforce.rs; `caller(req)` in
//! src/fuse/mod.rs `write`). Such requests carry FUSE_WRITE_CACHE in their write flags (the
//! daemon's debug log shows `write flags 0x1`); they must be charged and refused as the
//! opener of the file handle they name. Measured: a 1 MiB hard limit, 16 MiB written and
//! charged through one mapping, no EDQUOT anywhere.

mod common;

use std::process::Command;

use common::{BIN, Fixture, assert_exact, report, run_ok};

const LIMIT: u64 = 1 << 20;

/// Truncates `file` up to `mib` MiB, maps it shared and writable, fills every page, syncs.
/// Prints the file's allocated bytes, or the error that stopped it.
const WRITER: &str = r#"
import mmap, os, sys
MIB = 1 << 20
path, size = sys.argv[1], int(sys.argv[2]) * MIB
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
try:
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    for off in range(0, size, 4096):
        m[off:off + 4096] = b"M" * 4096
    m.flush()
    m.close()
    os.fsync(fd)
    print("allocated", os.fstat(fd).st_blocks * 512)
except OSError as e:
    print("stopped by", e)
"#;

#[test]
fn stores_through_a_shared_mapping_are_held_to_the_limit() {
    let f = Fixture::new("attack-mmap-writeback");
    let st = f.state.to_str().unwrap().to_string();
    f.home("u", 1001, 1001);
    run_ok(Command::new(BIN).args(["--state-dir", &st, "quota", "set", "--user", "1001", "--bytes-hard", "1M"]));
    let script = f.scratch.dir.join("writer.py");
    std::fs::write(&script, WRITER).unwrap();

    let out = f.sh_as(1001, 1001, &format!("/usr/bin/python3 {} u/mapped 16", script.display()));
    eprintln!("writer: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    f.root("sync");
    assert_exact(&f.state, f.backing(), "after the writes through the mapping");
    let used = report(&f.state).get(&("user".to_string(), 1001)).map_or(0, |u| u.0);
    assert!(
        used <= LIMIT + (64 << 10),
        "uid 1001 holds {used} bytes against a {LIMIT}-byte hard limit ({} over) after storing \
         into a shared writable mapping: its writeback came to the daemon as uid 0, which is \
         never refused",
        used - LIMIT
    );
}
