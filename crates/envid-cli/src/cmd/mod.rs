//! One module per command; each returns the process exit code.

mod check;
mod events;
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
        Command::Events(args) => events::run(*args),
        Command::Register(args) => register::register(args),
        Command::Deregister(args) => register::deregister(args),
        Command::Keygen { file } => keygen::run(&file),
        Command::Verify(args) => verify::run(args),
        Command::Serve(a) => {
            let a = *a;
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
            config.etcd_access = etcd_access(
                a.etcd_ca,
                a.etcd_cert,
                a.etcd_key,
                a.etcd_user,
                a.etcd_password_file,
            )?;
            config.allow_mass_delete = a.allow_mass_delete;
            config.lease_preservation = !a.no_lease_preservation;
            config.fanout_rate = a.fanout_rate;
            if let Some(n) = a.max_connections {
                config.max_connections = n;
            }
            if let Some(n) = a.max_long_polls {
                config.max_long_polls = n;
            }
            config.identity = a.identity.config();
            serve::run(config)
        }
    }
}

/// The name of the variable that may hold the etcd user's password.
const ETCD_PASSWORD_VAR: &str = "ENVID_ETCD_PASSWORD";

/// `envid serve`'s etcd TLS and user flags; the password from its file or
/// `ENVID_ETCD_PASSWORD` (never a flag: it would show in `ps`). The service
/// checks the rest (see `envid_server::EtcdAccess`).
fn etcd_access(
    ca: Option<std::path::PathBuf>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    user: Option<String>,
    password_file: Option<std::path::PathBuf>,
) -> Result<envid_server::EtcdAccess, String> {
    let from_env = std::env::var(ETCD_PASSWORD_VAR)
        .ok()
        .map(envid::Secret::new);
    let password = match (password_file, from_env) {
        (Some(_), Some(_)) if user.is_some() => {
            return Err(format!(
                "give the etcd password once: --etcd-password-file or {ETCD_PASSWORD_VAR}, not both"
            ))
        }
        (Some(f), _) => Some(envid_server::EtcdPassword::File(f)),
        // The variable alone means nothing without a user to use it for.
        (None, Some(v)) if user.is_some() => Some(envid_server::EtcdPassword::Value(v)),
        (None, _) => None,
    };
    Ok(envid_server::EtcdAccess {
        ca,
        cert,
        key,
        user,
        password,
    })
}
