//! `envid serve`: the reference environment service in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(
    registry: PathBuf,
    listen: SocketAddr,
    token: Option<String>,
) -> Result<ExitCode, String> {
    let mut config = envid_server::Config::new(registry);
    config.listen = listen;
    config.token = token;
    envid_server::run_blocking(config).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
