use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = quotafs::cli::Cli::parse();
    quotafs::logging::init();
    match quotafs::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            quotafs::logging::stderr_line(&format!("quotafs: {}", e.message));
            ExitCode::from(e.code)
        }
    }
}
