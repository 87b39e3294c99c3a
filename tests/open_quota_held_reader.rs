//! A writer whose file another tenant holds open for reading (and maps) is still refused with
//! EDQUOT at its limit, and the ledger stays exact: no open bypasses the daemon's limits.

mod common;

use common::holder::Holder;
use common::{Fixture, assert_exact};

const MIB: u64 = 1 << 20;

#[test]
fn writer_with_a_held_reader_is_refused_at_its_limit() {
    let f = Fixture::new("heldreader");
    f.home("u", 1000, 1000);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "20M"]);
    f.sh_ok(1000, 1000, "head -c 65536 /dev/zero > u/served && chmod 644 u/served");
    // Another tenant serves the file (a web server, a sync client hashing it): open, mapped.
    let mut reader = Holder::spawn(1001, 1001);
    let p = f.m("u/served");
    assert_eq!(reader.cmd(&format!("open r {} rdonly", p.display())), "ok");
    assert_eq!(reader.cmd(&format!("open m {} mmap_private", p.display())), "ok");
    // The owner appends 30 MiB, then overwrites in place past the limit.
    let out = f.sh_as(1000, 1000, "head -c 31457280 /dev/zero >> u/served");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Disk quota exceeded"), "append past the limit: {err}");
    let len = std::fs::metadata(&p).unwrap().len();
    assert!(len <= 20 * MIB && len > 19 * MIB, "stored up to the limit, not past it: {len}");
    let out = f.sh_as(1000, 1000, "dd if=/dev/zero of=u/served bs=1M count=25 conv=notrunc,fsync status=none");
    assert!(!out.status.success(), "an extending overwrite is refused too");
    // The held reader sees what was stored.
    let whole = reader.cmd("read r");
    assert!(whole.starts_with("data 65536 "), "reader reads its first 64 KiB window: {whole}");
    drop(reader);
    assert_exact(&f.state, f.backing(), "after the refused writes with a held reader");
}
