//! `quotafs mount`.

use super::{Cli, CliError, MountArgs, load_file_config};
use crate::config::{FileConfig, RouteConfig, validate_mount};

pub fn run(cli: &Cli, args: &MountArgs) -> Result<(), CliError> {
    let file = load_file_config(cli)?;
    let flags = FileConfig {
        backing: args.backing.clone(),
        state_dir: cli.state_dir.clone(),
        mountpoint: args.mountpoint.clone(),
        threads: args.threads,
        entry_ttl: args.entry_ttl,
        attr_ttl: args.attr_ttl,
        fd_cache: args.fd_cache,
        passthrough: None,
        opens_per_uid: args.opens_per_uid,
        acl: args.no_acl.then_some(false),
        max_write: args.max_write,
        transport: args.transport.clone(),
        supervise: args.supervise.then_some(true),
        restart_limit: args.restart_limit.clone(),
        checkpoint_interval: args.checkpoint_interval,
        exempt_uids: (!args.exempt_uid.is_empty()).then(|| args.exempt_uid.clone()),
        shared_pool: args.shared_pool.then_some(true),
        watch_routes: args.watch_routes.then_some(true),
        route_threads: args.route_threads,
        metrics_listen: args.metrics_listen.clone(),
        metrics_textfile: args.metrics_textfile.clone(),
        exports_dir: args.exports_dir.clone(),
        export_projects: args.export_projects.then_some(true),
        export_users: args.export_users.then_some(true),
        route: if args.route.is_empty() {
            None
        } else {
            Some(args.route.iter().map(|r| RouteConfig::parse_flag(r)).collect::<Result<_, _>>()?)
        },
        ..FileConfig::default()
    };
    let cfg = validate_mount(file, flags)?;
    if args.check_takeover {
        let said = crate::supervise::check_takeover(&cfg).map_err(CliError::usage)?;
        println!("{said}");
        return Ok(());
    }
    let run = if cfg.supervise && !crate::daemon::supervised() { crate::supervise::run } else { crate::daemon::run };
    run(&cfg).map_err(|e| match e {
        crate::daemon::RunError::Refused(m) => CliError::usage(m),
        crate::daemon::RunError::Failed(m) => CliError::failed(m),
    })
}
