//! Command-line definitions. Exit codes: 0 success, 1 invalid input or
//! unidentified environment, 2 usage error (clap's own).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Show which hostname rule matches HOSTNAME and what it reads; when
    /// none does, each rule tried and why (exit 1).
    Explain {
        /// The hostname to explain.
        hostname: String,
        /// Hostname rules and aliases file.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Run the reference environment service on a registry file.
    // Boxed: its flags make it several times the size of the other commands.
    Serve(Box<ServeArgs>),
    /// Look up the environment of IP addresses at the environment service;
    /// exit 1 when any IP is unknown or its lookup fails, 2 when an argument
    /// is not an IP address.
    Lookup(LookupArgs),
    /// Run a replica of the registry and print one line per change and per
    /// interval (version, records, protection, held deletes, sync age,
    /// cache file, sync errors) until SIGTERM or Ctrl-C (then exit 0).
    Watch(WatchArgs),
    /// Print (and act on, with --exec) each host joining, leaving or
    /// changing under a filter, resuming after a restart from --checkpoint;
    /// until SIGTERM or Ctrl-C (then exit 0, after the running hook).
    Events(Box<EventsArgs>),
    /// Register this host's environment at the environment service
    /// (PUT /v1/hosts/{ip}); with --keep-alive, renew the lease every
    /// lease/3 until SIGTERM or Ctrl-C (then exit 0).
    Register(RegisterArgs),
    /// Remove this host's registration (DELETE /v1/hosts/{ip}); removing an
    /// unregistered IP is not an error.
    Deregister(DeregisterArgs),
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) for
    /// `serve --signing-key`; refuses to overwrite FILE. Prints its key id.
    Keygen {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Verify a signed identity against the service's keys (GET /v1/keys,
    /// or the keys cache); exit 0 printing the claims, 1 with the reason.
    Verify(VerifyArgs),
}

/// `envid serve`'s signed-identity flags.
#[derive(Debug, clap::Args)]
pub struct IdentityServeArgs {
    /// Sign identities with this Ed25519 key (PKCS#8 PEM; `envid keygen`
    /// writes one) and serve its public key at /v1/keys.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Also serve this older key (PKCS#8 PEM), so identities it signed
    /// still verify after a rotation; repeatable.
    #[arg(long = "verify-key", value_name = "FILE")]
    pub verify_keys: Vec<PathBuf>,
    /// How long an identity is valid, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub identity_lifetime: u64,
    /// The issuer (`iss`) of identities.
    #[arg(long, value_name = "NAME", default_value = "envid")]
    pub issuer: String,
    /// The audience (`aud`) of identities.
    #[arg(long, value_name = "AUDIENCE", default_value = "envid")]
    pub audience: String,
}

impl IdentityServeArgs {
    /// The service's identity configuration.
    pub fn config(self) -> envid_server::identity::IdentityConfig {
        envid_server::identity::IdentityConfig {
            signing_key: self.signing_key,
            verify_keys: self.verify_keys,
            lifetime: Duration::from_secs(self.identity_lifetime),
            issuer: self.issuer,
            audience: self.audience,
        }
    }
}

/// Arguments of `envid verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The identity (a JWT); `-` reads it from standard input. Prefer
    /// --file: a command line is visible to other users in `ps`.
    #[arg(
        value_name = "TOKEN",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub token: Option<String>,
    /// Read the identity from this file (as `register --identity-file` writes it).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The audience the identity must be for.
    #[arg(long, value_name = "AUDIENCE", default_value = "envid")]
    pub audience: String,
    /// The issuer the identity must come from (default: any; the keys
    /// already name the service).
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Keep the service's keys in this file, and verify from it when the
    /// service is down (up to --keys-max-age).
    #[arg(long, value_name = "FILE")]
    pub keys_cache: Option<PathBuf>,
    /// Use the keys cache without asking the service while it is younger
    /// than this, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub keys_refresh: u64,
    /// The oldest keys cache used when the service is down, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 7 * 24 * 3600)]
    pub keys_max_age: u64,
    /// Clock skew tolerated on exp and nbf, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub leeway: u64,
    /// Fetch the keys over plain http:// from a host other than loopback
    /// (anyone on the path could serve keys of their own; use https://).
    #[arg(long)]
    pub insecure_http: bool,
    /// Output format (text or json).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// Arguments of `envid serve`. Its `Debug` redacts the token.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The TOML registry of host records (single IPs and CIDR ranges).
    #[arg(long, value_name = "FILE")]
    pub registry: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Require this bearer token on every read endpoint but /healthz
    /// (also read from ENVID_SERVE_TOKEN, which keeps it out of `ps`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ENVID_SERVE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// App credentials (TOML: [[app]] name, envs, idcs, token_sha256;
    /// [[operator]] name, token_sha256): who may register what. Without it
    /// registration is closed. Reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub apps: Option<PathBuf>,
    /// Take the client address from X-Forwarded-For when the connection
    /// comes from this proxy range (repeatable); ignored from anyone else.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Allow registering loopback addresses (tests and local development).
    #[arg(long)]
    pub allow_loopback_registration: bool,
    /// Let anyone register any IP without a token (local development only;
    /// /healthz, /metrics and the log say so).
    #[arg(long, conflicts_with = "apps")]
    pub insecure_open_registration: bool,
    /// Serve HTTPS with this PEM certificate chain (re-read when it changes).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Keep registrations in this file so they survive a restart (a
    /// registration is answered once it is on disk). Embedded store only.
    #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
    pub state: Option<PathBuf>,
    /// Keep the registry in etcd at these client URLs (comma-separated),
    /// so any number of instances serve the same records.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The etcd key prefix of the registry.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "/envid/",
        requires = "etcd"
    )]
    pub etcd_prefix: String,
    /// Reach etcd over TLS, verifying its members' certificates with this
    /// PEM CA (https:// URLs need it). Re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub etcd_ca: Option<PathBuf>,
    /// A PEM client certificate for etcd members run with
    /// --client-cert-auth (with --etcd-key). Re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The PEM private key of --etcd-cert.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// Authenticate to etcd as this user; the password comes from
    /// --etcd-password-file or ENVID_ETCD_PASSWORD, never the command line.
    #[arg(long, value_name = "NAME", requires = "etcd")]
    pub etcd_user: Option<String>,
    /// The file holding --etcd-user's password (mode 0600 or stricter; a
    /// trailing newline is dropped). Re-read when it changes.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
    /// Apply a registry file change even when it deletes more than half
    /// of the static records (an empty or truncated file); by default
    /// such a reload is refused and the old registry keeps serving.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Let leases expire even when renewals collapse fleet-wide (by
    /// default, when more than 15% lapse within one lease period, they
    /// are kept until renewals recover).
    #[arg(long)]
    pub no_lease_preservation: bool,
    /// Paces a release wave's answers to waiting replicas: a long poll
    /// woken by a change gathers more for (replicas waiting / N) seconds
    /// before it is answered (10,000 waiting at the default: 250 ms), so
    /// the fan-out's CPU stays what one instance can give. 0: gather 20 ms
    /// only.
    #[arg(long, value_name = "N", default_value_t = 40_000)]
    pub fanout_rate: usize,
    /// Most TCP connections served at once (default 4,096); each waiting
    /// replica holds one. See BENCHMARKS.md, "Capacity".
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most long polls waiting at once (default 4,096, never more than
    /// seven eighths of `--max-connections`); past it a replica is told to
    /// retry (`429`).
    #[arg(long, value_name = "N")]
    pub max_long_polls: Option<usize>,
    /// Signed identities.
    #[command(flatten)]
    pub identity: IdentityServeArgs,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("registry", &self.registry)
            .field("listen", &self.listen)
            .field("token", &redacted(&self.token))
            .field("apps", &self.apps)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "allow_loopback_registration",
                &self.allow_loopback_registration,
            )
            .field(
                "insecure_open_registration",
                &self.insecure_open_registration,
            )
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("state", &self.state)
            .field("etcd", &self.etcd)
            .field("etcd_prefix", &self.etcd_prefix)
            .field("etcd_ca", &self.etcd_ca)
            .field("etcd_cert", &self.etcd_cert)
            .field("etcd_key", &self.etcd_key)
            .field("etcd_user", &self.etcd_user)
            .field("etcd_password_file", &self.etcd_password_file)
            .field("allow_mass_delete", &self.allow_mass_delete)
            .field("no_lease_preservation", &self.no_lease_preservation)
            .field("fanout_rate", &self.fanout_rate)
            .field("max_connections", &self.max_connections)
            .field("max_long_polls", &self.max_long_polls)
            .field("identity", &self.identity)
            .finish()
    }
}

/// What a `Debug` shows of a token.
fn redacted(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<redacted>")
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address range (e.g. 10.0.0.0/8) or address"))
}

/// How to reach the environment service: shared by `lookup`, `register`
/// and `deregister` (each adds its own token).
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// Service endpoint(s), comma-separated or repeated: lookups fail over
    /// in order; registration goes to the first.
    #[arg(
        long = "endpoint",
        value_name = "URL",
        env = "ENVID_ENDPOINT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,
    /// Trust the CA certificates of this PEM file (instead of the bundled
    /// Mozilla roots) for https endpoints.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Send requests through this proxy (proxy variables are not read).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// TCP connect (and TLS handshake) timeout in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub connect_timeout_ms: u64,
    /// Per-phase timeout in milliseconds: bounds sending the request,
    /// waiting for the response head and reading the body, each on its own.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// A strict deadline for each whole request, in milliseconds (off by
    /// default).
    #[arg(long, value_name = "MS")]
    pub total_timeout_ms: Option<u64>,
}

impl ServiceArgs {
    /// The library's connection config, with `token` as the bearer token;
    /// `Err` is the library's sentence for a bad endpoint, proxy, CA file
    /// or timeout.
    pub fn config(&self, token: Option<&str>) -> Result<envid::ServiceConfig, String> {
        let ms = Duration::from_millis;
        let mut b = envid::ServiceConfig::builder()
            .endpoints(self.endpoints.iter().cloned())
            .connect_timeout(ms(self.connect_timeout_ms))
            .per_phase_timeout(ms(self.timeout_ms));
        if let Some(t) = token {
            b = b.token(envid::Secret::new(t));
        }
        if let Some(p) = &self.proxy {
            b = b.proxy(p.clone());
        }
        if let Some(ca) = &self.ca {
            b = b.ca_file(ca.clone());
        }
        if let Some(t) = self.total_timeout_ms {
            b = b.total_timeout(ms(t));
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// The bearer token of `envid lookup`. Its `Debug` redacts it.
#[derive(clap::Args)]
pub struct LookupToken {
    /// Bearer token (also ENVID_LOOKUP_TOKEN, which keeps it out of `ps`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ENVID_LOOKUP_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl std::fmt::Debug for LookupToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupToken")
            .field("token", &redacted(&self.token))
            .finish()
    }
}

/// The registration token of `envid register` and `envid deregister`. Its
/// `Debug` redacts it.
#[derive(clap::Args)]
pub struct RegisterToken {
    /// Registration bearer token instead of the descriptor's `token` (an
    /// operator's, for instance; also ENVID_REGISTER_TOKEN, which keeps it
    /// out of `ps`). Never printed.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ENVID_REGISTER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Send the token over plain http:// to a host other than loopback
    /// (anyone on the path can read it; use https:// instead).
    #[arg(long)]
    pub insecure_http: bool,
}

impl std::fmt::Debug for RegisterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterToken")
            .field("token", &redacted(&self.token))
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

/// Arguments of `envid lookup`.
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// The IP addresses.
    #[arg(required = true, value_name = "IP")]
    pub ips: Vec<String>,
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The token.
    #[command(flatten)]
    pub token: LookupToken,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Answer from a replica of the whole registry (one snapshot, then
    /// local longest-prefix matches) instead of asking per IP.
    #[arg(long)]
    pub replica: bool,
    /// With --replica: the replica's cache file (written after the
    /// snapshot; read when the service is unreachable).
    #[arg(long, value_name = "PATH", requires = "replica")]
    pub cache_file: Option<PathBuf>,
}

/// Arguments of `envid watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The token.
    #[command(flatten)]
    pub token: LookupToken,
    /// The replica's cache file (read when the service is unreachable at
    /// start, written as the replica syncs).
    #[arg(long, value_name = "PATH")]
    pub cache_file: Option<PathBuf>,
    /// Seconds between two lines when nothing changes.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Output format: text lines, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// Arguments of `envid events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The token.
    #[command(flatten)]
    pub token: LookupToken,
    /// Only hosts of these apps (comma-separated or repeated).
    #[arg(long = "app", value_name = "A", value_delimiter = ',')]
    pub apps: Vec<String>,
    /// Only hosts in these environments.
    #[arg(long = "env", value_name = "E", value_delimiter = ',')]
    pub envs: Vec<String>,
    /// Only hosts of these environment classes (prod, beta, test, …).
    #[arg(long = "env-type", value_name = "T", value_delimiter = ',')]
    pub env_types: Vec<String>,
    /// Only hosts in these data centers.
    #[arg(long = "idc", value_name = "I", value_delimiter = ',')]
    pub idcs: Vec<String>,
    /// What this consumer believes joined, and the events not yet acted
    /// on (written before an event is printed or its hook runs; FILE.journal
    /// beside it).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Start afresh when the checkpoint does not parse (the IPs it held are
    /// forgotten: no leave for those that left meanwhile).
    #[arg(long)]
    pub ignore_corrupt_checkpoint: bool,
    /// Output: one JSON object per event (NDJSON) or a text line.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub format: ReportFormat,
    /// Run this shell command once per event, the event in ENVID_EVENT
    /// (join|leave|change), ENVID_IP, ENVID_APP, ENVID_ENV, ENVID_IDC,
    /// ENVID_EVENT_ID, ENVID_REGISTRATION, ENVID_PREVIOUS_REGISTRATION and
    /// its JSON on standard input; retried with a capped backoff until it
    /// exits 0, and only then checkpointed.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// The longest pause between two runs of a failing hook, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub exec_max_backoff: u64,
    /// Keep a JSON status here (atomically rewritten at every status line
    /// and hook failure): joined, pending, how long the oldest
    /// unacknowledged event has waited, held leaves, the failing hook.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Seconds between two status lines on stderr.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub status_interval: u64,
    /// Emit leaves even while the registry looks collapsed (by default they
    /// are held while the replica's protection against mass deletion is on).
    #[arg(long)]
    pub no_protection: bool,
}

/// Arguments of `envid register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The token.
    #[command(flatten)]
    pub token: RegisterToken,
    /// Lease in seconds; an unrenewed registration expires after it.
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lease: u64,
    /// Read exactly this descriptor instead of the default locations.
    #[arg(long, value_name = "PATH")]
    pub descriptor: Option<PathBuf>,
    /// Register this IP instead of the identified environment's.
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Keep renewing the lease until SIGTERM or Ctrl-C.
    #[arg(long)]
    pub keep_alive: bool,
    /// Write the signed identity the service returns (a JWT) to this file,
    /// atomically and with mode 0600; with --keep-alive it is rewritten at
    /// every renewal, at least every half of its lifetime.
    #[arg(long, value_name = "PATH")]
    pub identity_file: Option<PathBuf>,
    /// Write the registration id the service answers to this file
    /// (atomically; rewritten when --keep-alive registers again), for
    /// `envid deregister --registration-file` to remove exactly this
    /// registration and never one a new host made for the IP since.
    #[arg(long, value_name = "PATH")]
    pub registration_file: Option<PathBuf>,
}

/// Arguments of `envid deregister`.
#[derive(Debug, clap::Args)]
pub struct DeregisterArgs {
    /// The service.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The token.
    #[command(flatten)]
    pub token: RegisterToken,
    /// Read exactly this descriptor instead of the default locations.
    #[arg(long, value_name = "PATH")]
    pub descriptor: Option<PathBuf>,
    /// Remove this IP instead of the identified environment's.
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Remove only this registration (the id `envid register` printed):
    /// when the IP was registered again since, by another host, nothing is
    /// removed (and the command succeeds: this registration is gone).
    #[arg(long, value_name = "ID", conflicts_with = "registration_file")]
    pub registration: Option<String>,
    /// As --registration, the id read from the file `envid register
    /// --registration-file` wrote; when the file does not exist, nothing
    /// was registered and nothing is removed.
    #[arg(long, value_name = "PATH")]
    pub registration_file: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_token() {
        for args in [
            &[
                "envid",
                "serve",
                "--registry",
                "r.toml",
                "--token",
                "s3cret-1",
            ][..],
            &["envid", "register", "--token", "s3cret-2"],
            &[
                "envid",
                "deregister",
                "--token",
                "s3cret-3",
                "--ip",
                "10.0.0.1",
            ],
            &["envid", "lookup", "10.0.0.1", "--token", "s3cret-4"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let shown = format!("{cli:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
