//! Structured logs to stderr (journald picks them up under systemd). The filter comes from
//! QUOTAFS_LOG (e.g. `debug`, `quotafs=trace`), default `info`.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUOTAFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
