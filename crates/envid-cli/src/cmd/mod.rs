//! One module per command; each returns the process exit code.

mod check;
mod explain;
mod inspect;
mod lookup;
mod serve;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command. `Err` is printed as `envid: <message>` with exit 1.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Check {
            file,
            strict,
            format,
        } => check::run(&file, strict, format),
        Command::Explain {
            hostname,
            rules,
            format,
        } => explain::run(&hostname, rules.as_deref(), format),
        Command::Lookup {
            ips,
            endpoints,
            token,
            timeout_ms,
            format,
        } => lookup::run(&ips, endpoints, token, timeout_ms, format),
        Command::Serve {
            registry,
            listen,
            token,
        } => serve::run(registry, listen, token),
    }
}
