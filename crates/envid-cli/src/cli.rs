//! Command-line definitions. Exit codes: 0 success, 1 invalid input or
//! unidentified environment, 2 usage error (clap's own).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Tells where this software runs: environment, data center, app, platform.
#[derive(Debug, Parser)]
#[command(name = "envid", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Text,
    /// JSON for programs.
    Json,
    /// TOML (inspect only).
    Toml,
}

/// Output formats of reports that have no TOML form (`check`, `lookup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned text for people.
    Text,
    /// JSON for programs.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this host's environment (exit 1 when it cannot be identified).
    Inspect(InspectArgs),
    /// Validate a descriptor file as a release gate; exit 1 listing every
    /// problem when invalid (a descriptor without app, env or idc is invalid).
    Check {
        /// The descriptor (.toml or .json).
        file: PathBuf,
        /// Unknown keys are errors too.
        #[arg(long)]
        strict: bool,
        /// Allow a descriptor without app, env or idc (completed by other
        /// sources on purpose: variables, Kubernetes, hostname rules).
        #[arg(long)]
        partial: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Show which hostname rule matches HOSTNAME and what it reads; exit 1 when none.
    Explain {
        /// The hostname to explain.
        hostname: String,
        /// Hostname rules and aliases file.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Output format (text or json).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the reference environment service on a registry file.
    Serve {
        /// The TOML registry of host records (single IPs and CIDR ranges).
        #[arg(long, value_name = "FILE")]
        registry: PathBuf,
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Require this bearer token on every endpoint but /healthz
        /// (also read from ENVID_SERVE_TOKEN, which keeps it out of `ps`).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "ENVID_SERVE_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Require this bearer token on registration (PUT/DELETE
        /// /v1/hosts/{ip}, renew) instead of leaving it open (also read from
        /// ENVID_SERVE_REGISTRAR_TOKEN).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "ENVID_SERVE_REGISTRAR_TOKEN",
            hide_env_values = true
        )]
        registrar_token: Option<String>,
        /// Keep registrations in this file so they survive a restart
        /// (written atomically: temporary file, fsync, rename).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Look up the environment of IP addresses at the environment service;
    /// exit 1 when any IP is unknown or its lookup fails.
    Lookup {
        /// The IP addresses.
        #[arg(required = true, value_name = "IP")]
        ips: Vec<String>,
        /// Service endpoint(s), tried in order (failover).
        #[arg(
            long = "endpoint",
            value_name = "URL",
            env = "ENVID_ENDPOINT",
            value_delimiter = ',',
            default_value = "http://127.0.0.1:7070"
        )]
        endpoints: Vec<String>,
        /// Bearer token (also ENVID_LOOKUP_TOKEN, which keeps it out of `ps`).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "ENVID_LOOKUP_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Whole-request timeout in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
        /// Output format (text or json).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Answer from a replica of the whole registry (one snapshot, then
        /// local longest-prefix matches) instead of asking per IP.
        #[arg(long)]
        replica: bool,
        /// With --replica: the replica's cache file (written after the
        /// snapshot; read when the service is unreachable).
        #[arg(long, value_name = "PATH", requires = "replica")]
        cache_file: Option<PathBuf>,
    },
    /// Register this host's environment at the environment service
    /// (PUT /v1/hosts/{ip}); with --keep-alive, renew the lease every
    /// lease/3 until SIGTERM or Ctrl-C (then exit 0).
    Register {
        /// Service endpoint (the first of ENVID_ENDPOINT's list).
        #[arg(
            long,
            value_name = "URL",
            env = "ENVID_ENDPOINT",
            value_delimiter = ',',
            default_value = "http://127.0.0.1:7070"
        )]
        endpoint: Vec<String>,
        /// Lease in seconds; an unrenewed registration expires after it.
        #[arg(long, value_name = "SECONDS", default_value_t = 300,
              value_parser = clap::value_parser!(u64).range(1..))]
        lease: u64,
        /// Read exactly this descriptor instead of the default locations.
        #[arg(long, value_name = "PATH")]
        descriptor: Option<PathBuf>,
        /// Registration bearer token (also ENVID_REGISTER_TOKEN, which keeps it out of `ps`).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "ENVID_REGISTER_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Register this IP instead of the identified environment's.
        #[arg(long, value_name = "IP")]
        ip: Option<IpAddr>,
        /// Keep renewing the lease until SIGTERM or Ctrl-C.
        #[arg(long)]
        keep_alive: bool,
        /// Whole-request timeout in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Remove this host's registration (DELETE /v1/hosts/{ip}); removing an
    /// unregistered IP is not an error.
    Deregister {
        /// Service endpoint (the first of ENVID_ENDPOINT's list).
        #[arg(
            long,
            value_name = "URL",
            env = "ENVID_ENDPOINT",
            value_delimiter = ',',
            default_value = "http://127.0.0.1:7070"
        )]
        endpoint: Vec<String>,
        /// Read exactly this descriptor instead of the default locations.
        #[arg(long, value_name = "PATH")]
        descriptor: Option<PathBuf>,
        /// Registration bearer token (also ENVID_REGISTER_TOKEN).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "ENVID_REGISTER_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Remove this IP instead of the identified environment's.
        #[arg(long, value_name = "IP")]
        ip: Option<IpAddr>,
        /// Whole-request timeout in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// Arguments of `envid inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Read exactly this descriptor (missing = error) instead of the default locations.
    #[arg(long, value_name = "PATH")]
    pub descriptor: Option<PathBuf>,
    /// Probe files below this directory instead of / (fake hosts).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Hostname rules and aliases file.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show where each fact came from.
    #[arg(long)]
    pub explain: bool,
    /// Include the app token in the output.
    #[arg(long)]
    pub show_secrets: bool,
    /// Descriptor warnings (unknown keys, missing expected fields) are errors.
    #[arg(long)]
    pub strict: bool,
    /// Ignore ENVID_* variables.
    #[arg(long)]
    pub no_env_vars: bool,
}
