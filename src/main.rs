use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

fn main() -> ExitCode {
    let cli = quotafs::cli::Cli::parse();
    if let Err(e) = quotafs::logging::init(cli.log_format) {
        quotafs::logging::stderr_line(&format!("quotafs: {e}"));
        return ExitCode::from(2);
    }
    let result = quotafs::cli::run(cli);
    quotafs::logging::flush(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            quotafs::logging::stderr_line(&format!("quotafs: {}", e.message));
            ExitCode::from(e.code)
        }
    }
}
