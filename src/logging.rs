//! Structured logs to stderr (journald picks them up under systemd). The filter comes from
//! QUOTAFS_LOG (e.g. `debug`, `quotafs=trace`), default `info,fuser=error` (fuser warns about
//! unmounting an already unmounted file system after every outside `umount`).
//!
//! A log line that cannot be written (stderr a pipe whose reader is gone, a full disk, a
//! closed journal) is dropped: no thread ever fails or panics for want of a log.

use std::io::Write;

/// stderr, with every write reported as done: the fmt layer then never reports a failed write
/// itself (it would `eprintln!`, which panics on a broken stderr).
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUOTAFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fuser=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_target(false)
        .log_internal_errors(false)
        .try_init();
}

/// Prints one line to stderr, dropping it if stderr cannot take it (unlike `eprintln!`).
pub fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n"));
}
