//! `envid serve`: the reference environment service in the foreground.

use std::process::ExitCode;

pub fn run(config: envid_server::Config) -> Result<ExitCode, String> {
    envid_server::run_blocking(config).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
