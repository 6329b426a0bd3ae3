//! `envid serve`: the reference environment service in the foreground.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

pub fn run(config: envid_server::Config) -> Result<ExitCode, String> {
    init_logging();
    envid_server::run_blocking(config).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// The service's `tracing` events to stderr, filtered by `RUST_LOG`
/// (default `info`); colours only on a terminal, so log files stay plain.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already installed; that one then serves.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
