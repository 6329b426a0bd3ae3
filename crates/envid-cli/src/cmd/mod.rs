//! One module per command; each returns the process exit code.

mod check;
mod explain;
mod inspect;
mod keygen;
mod lookup;
mod register;
mod serve;
mod verify;
mod watch;

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
        Command::Watch(args) => watch::run(args),
        Command::Register(args) => register::register(args),
        Command::Deregister(args) => register::deregister(args),
        Command::Keygen { file } => keygen::run(&file),
        Command::Verify(args) => verify::run(args),
        Command::Serve(a) => {
            let mut config = envid_server::Config::new(a.registry);
            config.listen = a.listen;
            config.token = a.token;
            config.apps_path = a.apps;
            config.trusted_proxies = a.trusted_proxies;
            config.allow_loopback_registration = a.allow_loopback_registration;
            config.insecure_open_registration = a.insecure_open_registration;
            if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
                config.tls = Some(envid_server::TlsFiles { cert, key });
            }
            config.state_path = a.state;
            config.etcd = a.etcd;
            config.etcd_prefix = a.etcd_prefix;
            config.allow_mass_delete = a.allow_mass_delete;
            config.lease_preservation = !a.no_lease_preservation;
            config.identity = a.identity.config();
            serve::run(config)
        }
    }
}
