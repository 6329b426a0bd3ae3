//! How to run the service ([`Config`]) and why it could not start
//! ([`ServerError`]).
//!
//! `Config` stays one flat struct: every user (the CLI, tests, benches, the
//! FFI tests) builds it with `Config::new(path)` and sets fields, which
//! sub-structs would break for little gain. Its `Debug` redacts the read
//! token and the etcd password.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::apps::AppsError;
use crate::identity;
use crate::registry_file::RegistryError;
use crate::store::etcd_connect::EtcdAccess;
use crate::tls::TlsFiles;

/// How to run the service. Its `Debug` output redacts the tokens.
#[derive(Clone)]
pub struct Config {
    /// The TOML registry file.
    pub registry_path: PathBuf,
    /// Where to listen; port 0 picks an ephemeral port.
    pub listen: SocketAddr,
    /// Bearer token required on every endpoint but `/healthz` when set.
    pub token: Option<String>,
    /// How often the registry file is checked for changes.
    pub reload_interval: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most IPs in one `POST /v1/hosts/lookup`.
    pub max_batch: usize,
    /// How many changes the store keeps for replication deltas.
    pub history_limit: usize,
    /// How long shutdown waits for in-flight requests before dropping them.
    pub drain_timeout: Duration,
    /// The app credentials (see [`crate::apps`]): which token may register which
    /// app, in which envs and idcs. Polled like the registry. Without it
    /// (and without `insecure_open_registration`) registration is closed.
    pub apps_path: Option<PathBuf>,
    /// Anyone may register any IP, without a token (local development
    /// only; `/healthz`, `/metrics` and the start-up log say so). Refused
    /// together with `apps_path`.
    pub insecure_open_registration: bool,
    /// Loopback addresses may be registered (tests and local development;
    /// other special addresses stay refused).
    pub allow_loopback_registration: bool,
    /// Peers (load balancers) whose `X-Forwarded-For` gives the client
    /// address; from anyone else the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate and key (re-read when they change).
    pub tls: Option<TlsFiles>,
    /// Most failed authentications per client address within
    /// `auth_failure_window`; past it, requests needing a token are `429`.
    /// 0: no limit.
    pub auth_failure_limit: usize,
    /// The sliding window of `auth_failure_limit`.
    pub auth_failure_window: Duration,
    /// Where registrations are saved so they survive a restart; `None` keeps
    /// them in memory only. See README.md, "Persistence".
    pub state_path: Option<PathBuf>,
    /// Most accepted `PUT /v1/hosts/{ip}` per (app, IP) within
    /// `register_window`; the next one is `429` with `Retry-After`.
    pub register_limit: usize,
    /// The sliding window of `register_limit`.
    pub register_window: Duration,
    /// Most renewals per (app, IP) within one lease length of the
    /// registration renewed (a sliding window that long); the next one is
    /// `429` with `Retry-After`. 0: no limit.
    pub renew_limit: usize,
    /// Most requests handled at once before new ones are shed with `429`;
    /// waiting long polls and `/healthz` are not counted.
    pub max_in_flight: usize,
    /// Most requests from one client address handled at once (the
    /// connection's peer, or the `X-Forwarded-For` client of a trusted
    /// proxy); past it that address's new requests are `429 overloaded`,
    /// and nobody else's. Requests with a body never take the last eighth
    /// of `max_in_flight`: that much is always left for lookups.
    pub max_in_flight_per_client: usize,
    /// Most long polls (`GET /v1/registry?since=N&wait=S`) waiting at once;
    /// past it a long poll is `429` with `Retry-After`. Never more than
    /// seven eighths of `max_connections`, whatever is set here, so long
    /// polls always leave connections for `/healthz` and lookups.
    pub max_long_polls: usize,
    /// Most long polls waiting at once from one client address; past it
    /// that address's long polls are `429 too_many_long_polls`.
    pub max_long_polls_per_client: usize,
    /// The longest a long poll is held (`wait` is capped to it).
    pub max_wait: Duration,
    /// How long a long poll woken by a change waits for more changes before
    /// answering, so a burst reaches every replica as one delta (default
    /// 20 ms; zero answers at once).
    pub poll_coalesce: Duration,
    /// Paces a wave's answers to long polls: a poll woken by a change
    /// gathers for `poll_coalesce`, or for (long polls waiting) /
    /// `fanout_rate` seconds when that is longer (default 40,000: 10,000
    /// waiting replicas gather for 250 ms), so each answer carries more
    /// changes and there are fewer of them (below 8,000 waiting the window
    /// is shorter than the replicas' own 200 ms `min_poll_interval`). While
    /// the window is longer than `poll_coalesce`, a poll arriving with
    /// changes already there waits it too. See
    /// BENCHMARKS.md, "The service at fleet size". 0: `poll_coalesce`
    /// only.
    pub fanout_rate: usize,
    /// Most TCP connections served at once; past it a new connection evicts
    /// the oldest one with no request in flight (of the address holding the
    /// most first), else ends the oldest waiting long poll early, or waits in
    /// the kernel's accept backlog when every one runs a short request. See
    /// README.md, "Hostile clients".
    pub max_connections: usize,
    /// Most TCP connections from one peer address (a trusted proxy is not
    /// limited); past it a new connection from that address evicts that
    /// address's oldest idle connection, or is closed at once when all of
    /// them are busy. Other addresses are never evicted for it.
    pub max_connections_per_client: usize,
    /// Largest request head (request line and headers) a connection may
    /// send, and the most it buffers; past it the answer is `431` and the
    /// connection is closed. At least 8 KiB.
    pub max_header_bytes: usize,
    /// How long a connection may take to send a request head, counted from
    /// when the service starts waiting for it: a slow (slowloris) sender and
    /// an idle keep-alive connection are both closed after it.
    pub header_read_timeout: Duration,
    /// Longest time to handle one request once its head is in (a body that
    /// trickles in included); past it the answer is `408`. Long polls are
    /// bounded by `max_wait` instead.
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive once the service
    /// starts reading it (after the token was checked); past it the answer
    /// is `408` and the connection is closed, so a body that never comes
    /// holds no request slot for long.
    pub body_read_timeout: Duration,
    /// How often ended leases are swept out (the embedded store).
    pub expiry_interval: Duration,
    /// etcd client URLs: when set, the records live in etcd and any number
    /// of instances serve them (see `store::etcd`, feature `etcd`); when empty, the
    /// embedded store (see [`crate::store::embedded`]).
    pub etcd: Vec<String>,
    /// The etcd key prefix (default `/envid/`).
    pub etcd_prefix: String,
    /// TLS and a user towards etcd (default: plaintext, no user). Checked
    /// at start: a certificate the other side does not trust, a wrong
    /// password or no access to the prefix stop the service with the cause;
    /// the certificates and the password file are re-read when they change.
    pub etcd_access: EtcdAccess,
    /// Apply a registry file reload even when it deletes more than half of
    /// the static records (an empty or truncated file); by default such a
    /// reload is refused and the old registry keeps serving. See README.md,
    /// "Protection against mass deletion".
    pub allow_mass_delete: bool,
    /// Lease self-preservation (default on): when more than 15% of the
    /// leases lapse within one lease period, stop expiring them until
    /// renewals recover.
    pub lease_preservation: bool,
    /// Signed identities: the keys, lifetime, issuer and audience (no
    /// signing key by default: no identities, `/v1/keys` is `404`).
    pub identity: identity::IdentityConfig,
}

impl Config {
    /// Defaults: 127.0.0.1:7070, no read token, registration closed (no
    /// apps file), no TLS, no trusted proxy, 10 failed authentications per
    /// address per 60 s, 1 s reload check, 256 KiB bodies,
    /// 1,000 IPs a batch, 1,000 changes of history, 10 s drain, no state
    /// file, 3 registrations (and 3 removals) per (app, IP) per 60 s, 10
    /// renewals per (app, IP) per lease, 512 requests in flight (128 per
    /// client address), 4,096 long polls (1,024 per client address), 60 s
    /// longest wait, 20 ms long-poll coalescing, 100 ms lease sweep, 4,096
    /// connections (1,024 per client address), 16 KiB request heads, 10 s
    /// to send a request head, 2 s for a body to arrive, 10 s to handle a
    /// request.
    pub fn new(registry_path: impl Into<PathBuf>) -> Config {
        Config {
            registry_path: registry_path.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: None,
            reload_interval: Duration::from_secs(1),
            max_body_bytes: 256 * 1024,
            max_batch: 1000,
            history_limit: 1000,
            drain_timeout: Duration::from_secs(10),
            apps_path: None,
            insecure_open_registration: false,
            allow_loopback_registration: false,
            trusted_proxies: Vec::new(),
            tls: None,
            auth_failure_limit: 10,
            auth_failure_window: Duration::from_secs(60),
            state_path: None,
            register_limit: 3,
            register_window: Duration::from_secs(60),
            renew_limit: 10,
            max_in_flight: 512,
            max_in_flight_per_client: 128,
            max_long_polls: 4096,
            max_long_polls_per_client: 1024,
            max_wait: Duration::from_secs(60),
            poll_coalesce: Duration::from_millis(20),
            fanout_rate: 40_000,
            max_connections: 4096,
            max_connections_per_client: 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(2),
            expiry_interval: Duration::from_millis(100),
            etcd: Vec::new(),
            etcd_prefix: "/envid/".into(),
            etcd_access: EtcdAccess::default(),
            allow_mass_delete: false,
            lease_preservation: true,
            identity: identity::IdentityConfig::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so a new field cannot be left out by accident.
        let Config {
            registry_path,
            listen,
            token,
            reload_interval,
            max_body_bytes,
            max_batch,
            history_limit,
            drain_timeout,
            apps_path,
            insecure_open_registration,
            allow_loopback_registration,
            trusted_proxies,
            tls,
            auth_failure_limit,
            auth_failure_window,
            state_path,
            register_limit,
            register_window,
            renew_limit,
            max_in_flight,
            max_in_flight_per_client,
            max_long_polls,
            max_long_polls_per_client,
            max_wait,
            poll_coalesce,
            fanout_rate,
            max_connections,
            max_connections_per_client,
            max_header_bytes,
            header_read_timeout,
            request_timeout,
            body_read_timeout,
            expiry_interval,
            etcd,
            etcd_prefix,
            etcd_access,
            allow_mass_delete,
            lease_preservation,
            identity,
        } = self;
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("registry_path", registry_path)
            .field("listen", listen)
            .field("token", &redacted(token))
            .field("reload_interval", reload_interval)
            .field("max_body_bytes", max_body_bytes)
            .field("max_batch", max_batch)
            .field("history_limit", history_limit)
            .field("drain_timeout", drain_timeout)
            .field("apps_path", apps_path)
            .field("insecure_open_registration", insecure_open_registration)
            .field("allow_loopback_registration", allow_loopback_registration)
            .field("trusted_proxies", trusted_proxies)
            .field("tls", tls)
            .field("auth_failure_limit", auth_failure_limit)
            .field("auth_failure_window", auth_failure_window)
            .field("state_path", state_path)
            .field("register_limit", register_limit)
            .field("register_window", register_window)
            .field("renew_limit", renew_limit)
            .field("max_in_flight", max_in_flight)
            .field("max_in_flight_per_client", max_in_flight_per_client)
            .field("max_long_polls", max_long_polls)
            .field("max_long_polls_per_client", max_long_polls_per_client)
            .field("max_wait", max_wait)
            .field("poll_coalesce", poll_coalesce)
            .field("fanout_rate", fanout_rate)
            .field("max_connections", max_connections)
            .field("max_connections_per_client", max_connections_per_client)
            .field("max_header_bytes", max_header_bytes)
            .field("header_read_timeout", header_read_timeout)
            .field("request_timeout", request_timeout)
            .field("body_read_timeout", body_read_timeout)
            .field("expiry_interval", expiry_interval)
            .field("etcd", etcd)
            .field("etcd_prefix", etcd_prefix)
            // Paths and a user name; the password is redacted by its type.
            .field("etcd_access", etcd_access)
            .field("allow_mass_delete", allow_mass_delete)
            .field("lease_preservation", lease_preservation)
            .field("identity", identity)
            .finish()
    }
}

/// Why the service could not start. Its `Display` is the message
/// `envid serve` prints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting that cannot be used as given, or two that exclude each
    /// other.
    #[error("{field}: {problem}")]
    Config {
        /// The [`Config`] field to fix.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The registry file cannot be read, or is invalid, at start.
    #[error("registry: {0}")]
    Registry(#[source] RegistryError),
    /// The apps file cannot be read, or is invalid, at start.
    #[error("apps: {0}")]
    Apps(#[source] AppsError),
    /// The TLS certificate or key cannot be used.
    #[error("tls: {problem}")]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why the pair cannot be used.
        problem: String,
    },
    /// A signing or verification key cannot be used.
    #[error("identity: {problem}")]
    Identity {
        /// Why, naming the file.
        problem: String,
    },
    /// etcd cannot be used: the store is not built in, its settings do not
    /// load, or the cluster refused us for a reason a retry will not fix.
    #[error("etcd: {problem}")]
    Etcd {
        /// The cause, naming the flag that fixes it.
        problem: String,
    },
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// [`Config::listen`].
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The service's runtime or its thread cannot be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
