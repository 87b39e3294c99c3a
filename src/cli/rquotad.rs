//! `quotafs rquotad`: the rquota service for NFS clients (src/rquota).

use super::{Cli, CliError, RquotadArgs, state_dir};

pub fn run(cli: &Cli, args: &RquotadArgs) -> Result<(), CliError> {
    let dir = state_dir(cli)?;
    let trusted = if args.trusted.is_empty() {
        vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()]
    } else {
        args.trusted.clone()
    };
    crate::rquota::run(crate::rquota::Options { state_dir: dir, port: args.port, trusted, register: !args.no_register })
        .map_err(CliError::failed)
}
