//! An O_DIRECT writer reaching its limit gets what ext4 with kernel quotas gives: a short
//! write, then EDQUOT; never EIO. (The kernel's asynchronous direct-I/O path turns any short
//! write into EIO, so quotafs does not negotiate it.)

mod common;

use common::{Fixture, assert_exact};

const WRITER: &str = r#"
import errno, mmap, os
fd = os.open("t/direct", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
buf = mmap.mmap(-1, 65536)
buf.write(b"d" * 65536)
total, errors = 0, []
for i in range(64):
    try:
        n = os.pwritev(fd, [buf], total)
    except OSError as e:
        errors.append(e.errno)
        if len(errors) == 3:
            break
        continue
    total += n
print(total, " ".join(errno.errorcode[e] for e in errors))
"#;

#[test]
fn an_odirect_writer_at_its_limit_gets_edquot_not_eio() {
    let f = Fixture::new("odirect-limit");
    f.home("t", 1000, 1000);
    f.quotafs(&["quota", "set", "--user", "1000", "--bytes-hard", "1000K"]);
    let out = f.sh_ok(1000, 1000, &format!("exec /usr/bin/python3 -c '{WRITER}'"));
    let mut words = out.split_whitespace();
    let total: u64 = words.next().unwrap().parse().unwrap();
    let errors: Vec<&str> = words.collect();
    assert!(!errors.is_empty(), "the limit was reached: {out}");
    assert!(errors.iter().all(|e| *e == "EDQUOT"), "only EDQUOT at the limit: {out}");
    assert!(total <= 1000 * 1024, "no more than the limit was written: {out}");
    assert_exact(&f.state, f.backing(), "after O_DIRECT writes to the limit");
}
