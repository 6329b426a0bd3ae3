//! One module per command; each returns the process exit code.

mod check;
mod explain;
mod inspect;
mod keygen;
mod lookup;
mod register;
mod serve;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command. `Err` is printed as `envid: <message>` with exit 1.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Check {
            file,
            strict,
            partial,
            format,
        } => check::run(&file, strict, partial, format),
        Command::Explain {
            hostname,
            rules,
            format,
        } => explain::run(&hostname, rules.as_deref(), format),
        Command::Lookup(args) => lookup::run(args),
        Command::Register(args) => register::register(args),
        Command::Deregister(args) => register::deregister(args),
        Command::Keygen { file } => keygen::run(&file),
        Command::Verify(args) => verify::run(args),
        Command::Serve {
            registry,
            listen,
            token,
            registrar_token,
            state,
            identity,
        } => {
            let mut config = envid_server::Config::new(registry);
            config.listen = listen;
            config.token = token;
            config.registrar_token = registrar_token;
            config.state_path = state;
            config.identity = identity.config();
            serve::run(config)
        }
    }
}
