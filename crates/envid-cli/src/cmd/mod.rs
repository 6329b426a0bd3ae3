//! One module per command; each returns the process exit code.

mod check;
mod explain;
mod inspect;
mod lookup;
mod register;
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
        Command::Serve {
            registry,
            listen,
            token,
            registrar_token,
            state,
            etcd,
            etcd_prefix,
        } => {
            let mut config = envid_server::Config::new(registry);
            config.listen = listen;
            config.token = token;
            config.registrar_token = registrar_token;
            config.state_path = state;
            config.etcd = etcd;
            config.etcd_prefix = etcd_prefix;
            serve::run(config)
        }
    }
}
