//! Structured logs to stderr (journald picks them up under systemd). The filter comes from
//! QUOTAFS_LOG (e.g. `debug`, `quotafs=trace`), default `info,fuser=error` (fuser warns about
//! unmounting an already unmounted file system after every outside `umount`).

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUOTAFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fuser=error"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
