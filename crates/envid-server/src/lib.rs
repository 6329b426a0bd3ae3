//! The reference environment service (the protocol: see ARCHITECTURE.md,
//! "Where is that IP", and README.md).
//!
//! A small, real HTTP service answering IP → environment lookups from a TOML
//! registry file (see [`crate::registry_file::parse_registry`] for the format):
//!
//! * `GET /v1/hosts/{ip}` → `200` with the most specific record (the exact IP
//!   before the narrowest CIDR), `404` with a JSON error when unknown.
//! * `POST /v1/hosts/lookup` with `{"ips": [...]}` → `200`
//!   `{"hosts": {"<ip>": record | null}}`, keyed by each IP string exactly as
//!   sent (in request order, each once); at most [`Config::max_batch`] IPs.
//! * `GET /v1/registry` → the whole registry `{"version": N, "records": [...]}`
//!   ([`envid::protocol::RegistrySnapshot`]) with `ETag: "N"`, `304` on a
//!   matching `If-None-Match`; `GET /v1/registry?since=N&wait=S` → the merged
//!   changes after N ([`envid::protocol::RegistryDelta`]), held up to `S`
//!   seconds (at most [`Config::max_wait`]) while there are none and answered
//!   as soon as one lands; `410 gone` when N is not in the retained history.
//! * `PUT /v1/hosts/{ip}` (record fields + `lease_seconds`, 1..=86400)
//!   registers a dynamic record; `POST /v1/hosts/{ip}/renew` (empty body or
//!   `{}`) extends the lease (`404` when unknown); `DELETE /v1/hosts/{ip}` is
//!   idempotent (`204`). Unrenewed leases expire. Closed (`403`) unless
//!   [`Config::apps_path`] names the app credentials (or
//!   [`Config::insecure_open_registration`]): a token names an app, which
//!   registers only its own IP (the connection's peer, or `X-Forwarded-For`
//!   from [`Config::trusted_proxies`]) for its own name and allowed envs and
//!   idcs, and renews or removes only its own registrations; an operator's
//!   token may do it all for any IP. A static record of the registry file is
//!   never replaced or removed (`409`); special addresses are refused
//!   (`400`). At most [`Config::register_limit`] `PUT`s per (caller, IP) per
//!   [`Config::register_window`], then `429` + `Retry-After`; failed
//!   authentications per client address are limited too. Persisted to
//!   [`Config::state_path`] when set. See README.md, "Security model".
//! * `GET /v1/keys` → the public keys of signed identities as a JWK set
//!   (RFC 7517) with `ETag` and `Cache-Control: max-age=300`, `304` on a
//!   matching `If-None-Match`, `404` without a signing key; open like
//!   `/healthz` (see [`identity`]).
//! * `GET /healthz` → `{"status": "ok", "version": N, "records": M,
//!   "registration": "apps" | "open" | "closed", "reload_refused": null |
//!   {...}, "lease_self_preservation": null | {...}}` (see
//!   [`Config::allow_mass_delete`], [`Config::lease_preservation`]); never
//!   needs the token. On etcd, `"status": "stale"` with a `"reason"` while
//!   etcd cannot be reached or refuses us, and `"etcd"` with the TLS, user
//!   and credential-reload state ([`Config::etcd_access`]).
//! * `GET /metrics` → Prometheus/OpenMetrics text: `envid_http_requests_total`
//!   `{endpoint, status}` (endpoint `get_host`, `lookup`, `registry`,
//!   `register`, `renew`, `deregister`, `keys`, `healthz`, `metrics`, `other`),
//!   `envid_ips_looked_up_total`, `envid_registry_version`,
//!   `envid_registry_records`, `envid_registry_registrations`,
//!   `envid_registry_reloads_total{result}`, `envid_registrations_total`,
//!   `envid_renewals_total`, `envid_deregistrations_total`,
//!   `envid_lease_expiries_total`, `envid_rate_limited_total{reason}`,
//!   `envid_long_polls_in_flight`, `envid_registry_reload_refused`,
//!   `envid_lease_self_preservation`, `envid_leases_held`,
//!   `envid_registration_refusals_total{reason}`,
//!   `envid_registration_open`, `envid_apps_reloads_total{result}`. A
//!   request is counted when its response is ready, so a scrape does not see
//!   itself. `/metrics` needs the token when one is configured (it reveals
//!   traffic; Prometheus scrape configs can send a bearer token).
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}`: `400`
//! `invalid_ip` (naming the IP), `invalid_json`, `too_many_ips`; `413`
//! `body_too_large` past [`Config::max_body_bytes`] (413 rather than 400: it
//! is the status that tells a client to shrink the request, not fix it);
//! `401 unauthorized` (with `WWW-Authenticate: Bearer`) for a missing or
//! wrong token; `403 registration_closed` and `forbidden`; `409
//! static_record`; `404 not_found`; `405 method_not_allowed`; `410 gone`; `429`
//! with `Retry-After` (`rate_limited`; `overloaded` past
//! [`Config::max_in_flight`], where waiting long polls and `/healthz` are not
//! counted; `too_many_long_polls`). [`ErrorCode`] lists every code with its
//! status.
//!
//! The registry is reloaded when the file changes (polled; see README.md,
//! "Reload"): a bad new file is logged as a warning and the old registry
//! keeps serving; so does one that would delete more than half of the
//! static records, unless [`Config::allow_mass_delete`] (README.md,
//! "Protection against mass deletion"); registrations are kept. The records live in a versioned
//! [`store::Store`] with a bounded change history. README.md documents the
//! decisions (precedence, limits, shedding, persistence).
//!
//! The service logs through [`tracing`] (structured fields, levels) and
//! installs no subscriber: the embedding program chooses one (`envid serve`
//! writes to stderr, filtered by `RUST_LOG`, default `info`).
#![warn(missing_docs)]

pub mod apps;
mod conn;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod guard;
mod hash;
mod http;
pub mod identity;
mod metrics;
mod poll;
pub mod registration_body;
pub mod registry_file;
mod reload;
pub mod store;
mod tls;
pub mod validation;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::error::ErrorCode;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::store::embedded::EmbeddedStore;
#[cfg(feature = "etcd")]
use crate::store::etcd::{EtcdConfig, EtcdStore};
pub use crate::store::etcd_connect::{EtcdAccess, EtcdPassword};
use crate::store::RegistryStore;
pub use crate::tls::TlsFiles;

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
    /// The app credentials (see [`apps`]): which token may register which
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
    /// Most requests handled at once before new ones are shed with `429`;
    /// waiting long polls and `/healthz` are not counted.
    pub max_in_flight: usize,
    /// Most long polls (`GET /v1/registry?since=N&wait=S`) waiting at once;
    /// past it a long poll is `429` with `Retry-After`.
    pub max_long_polls: usize,
    /// The longest a long poll is held (`wait` is capped to it).
    pub max_wait: Duration,
    /// How long a long poll woken by a change waits for more changes before
    /// answering, so a burst reaches every replica as one delta (default
    /// 20 ms; zero answers at once).
    pub poll_coalesce: Duration,
    /// Most TCP connections served at once; past it a new connection evicts
    /// the oldest one with no request in flight, or waits in the kernel's
    /// accept backlog when every one is busy. See README.md, "Hostile clients".
    pub max_connections: usize,
    /// How long a connection may take to send a request head, counted from
    /// when the service starts waiting for it: a slow (slowloris) sender and
    /// an idle keep-alive connection are both closed after it.
    pub header_read_timeout: Duration,
    /// Longest time to handle one request once its head is in (a body that
    /// trickles in included); past it the answer is `408`. Long polls are
    /// bounded by `max_wait` instead.
    pub request_timeout: Duration,
    /// How often ended leases are swept out (the embedded store).
    pub expiry_interval: Duration,
    /// etcd client URLs: when set, the records live in etcd and any number
    /// of instances serve them (see [`store::etcd`]); when empty, the
    /// embedded store (see [`store::embedded`]).
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
    /// file, 3 registrations per (app, IP) per 60 s, 512 requests in flight,
    /// 4,096 long polls, 60 s longest wait, 20 ms long-poll coalescing, 100 ms lease sweep,
    /// 4,096 connections, 10 s to send a request head, 10 s to handle a request.
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
            max_in_flight: 512,
            max_long_polls: 4096,
            max_wait: Duration::from_secs(60),
            poll_coalesce: Duration::from_millis(20),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
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
            max_in_flight,
            max_long_polls,
            max_wait,
            poll_coalesce,
            max_connections,
            header_read_timeout,
            request_timeout,
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
            .field("max_in_flight", max_in_flight)
            .field("max_long_polls", max_long_polls)
            .field("max_wait", max_wait)
            .field("poll_coalesce", poll_coalesce)
            .field("max_connections", max_connections)
            .field("header_read_timeout", header_read_timeout)
            .field("request_timeout", request_timeout)
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

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The registry file is missing or invalid at start.
    #[error("registry: {0}")]
    Registry(String),
    /// The apps file is missing or invalid at start, or conflicts with
    /// open registration.
    #[error("apps: {0}")]
    Apps(String),
    /// The TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// A signing or verification key could not be read.
    #[error("identity: {0}")]
    Identity(String),
    /// etcd cannot be used: the store is not built in, or the cluster
    /// refused us for a reason a retry will not fix.
    #[error("etcd: {0}")]
    Etcd(String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A service running on its own runtime thread (tests, embedding). Dropping
/// the handle shuts the service down too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR`, or `https://ADDR` with TLS.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }
    /// Stops accepting, drains in-flight requests, and joins the runtime thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Everything prepared before serving: registry loaded, socket bound.
struct Prepared {
    config: Config,
    listener: std::net::TcpListener,
    state: AppState,
    reloader: Reloader,
    apps_reloader: Option<apps::AppsReloader>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The store when it is the embedded one (its leases expire here).
    embedded: Option<Arc<EmbeddedStore>>,
}

fn prepare(config: Config) -> Result<Prepared, ServerError> {
    if config.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        // Refused rather than read as "no token": that would open the service.
        return Err(ServerError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the token must not be empty",
        )));
    }
    if config.apps_path.is_some() && config.insecure_open_registration {
        return Err(ServerError::Apps(
            "an apps file and open registration exclude each other: open registration would ignore it".into(),
        ));
    }
    if config.etcd.is_empty() && config.etcd_access.is_set() {
        return Err(ServerError::Etcd(
            "--etcd-ca, --etcd-cert, --etcd-key and --etcd-user need --etcd URL".into(),
        ));
    }
    let tls = config
        .tls
        .as_ref()
        .map(tls::acceptor)
        .transpose()
        .map_err(ServerError::Tls)?;
    let path = &config.registry_path;
    let bytes = std::fs::read(path)
        .map_err(|e| ServerError::Registry(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ServerError::Registry(format!("{}: not valid UTF-8", path.display())))?;
    let records = crate::registry_file::parse_registry(&text, path)
        .map_err(|e| ServerError::Registry(e.to_string()))?;
    let identity =
        Arc::new(identity::Identity::load(&config.identity).map_err(ServerError::Identity)?);
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let metrics = Arc::new(Metrics::new());
    let embedded = config.etcd.is_empty().then(|| {
        Arc::new(EmbeddedStore::open(
            records.clone(),
            config.state_path.clone(),
            config.history_limit,
            metrics.clone(),
        ))
    });
    let store: Arc<dyn RegistryStore> = match &embedded {
        Some(e) => e.clone(),
        None => etcd_store(&config, records, metrics.clone())?,
    };
    let guard = Arc::new(guard::Guard::default());
    metrics.set_registration_open(config.insecure_open_registration);
    let (registration, apps_reloader) = match &config.apps_path {
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| ServerError::Apps(format!("cannot read {}: {e}", p.display())))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ServerError::Apps(format!("{}: not valid UTF-8", p.display())))?;
            let parsed = apps::parse_apps(text, p).map_err(|e| ServerError::Apps(e.to_string()))?;
            let handle = Arc::new(apps::AppsHandle::new(parsed));
            let reloader =
                apps::AppsReloader::new(p.clone(), handle.clone(), metrics.clone(), &bytes);
            (http::auth::RegistrationMode::Apps(handle), Some(reloader))
        }
        None if config.insecure_open_registration => (http::auth::RegistrationMode::Open, None),
        None => (http::auth::RegistrationMode::Closed, None),
    };
    let reloader = Reloader::new(
        path.clone(),
        store.clone(),
        metrics.clone(),
        text.as_bytes(),
        guard.clone(),
        config.allow_mass_delete,
    );
    let state = AppState {
        store,
        metrics,
        guard,
        token_digest: config.token.as_deref().map(http::auth::digest),
        registration,
        allow_loopback_registration: config.allow_loopback_registration,
        trusted_proxies: config.trusted_proxies.clone().into(),
        max_batch: config.max_batch,
        max_body_bytes: config.max_body_bytes,
        limits: Arc::new(http::Limits::new(&config)),
        shutdown: tokio::sync::watch::channel(false).1,
        snapshot_cache: Arc::default(),
        delta_cache: Arc::default(),
        identity,
    };
    Ok(Prepared {
        config,
        listener,
        state,
        reloader,
        apps_reloader,
        tls,
        embedded,
    })
}

#[cfg(feature = "etcd")]
fn etcd_store(
    config: &Config,
    records: Vec<envid::protocol::HostRecord>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn RegistryStore>, ServerError> {
    let mut prefix = config.etcd_prefix.clone();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let settings = store::etcd_connect::settings::EtcdSettings::load(
        &config.etcd,
        &prefix,
        &config.etcd_access,
    )
    .map_err(ServerError::Etcd)?;
    Ok(Arc::new(EtcdStore::new(
        EtcdConfig {
            endpoints: config.etcd.clone(),
            prefix,
            reload_interval: config.reload_interval,
        },
        settings,
        records,
        config.history_limit,
        metrics,
    )))
}

/// Without the `etcd` feature, asking for etcd is a start-up error that says
/// how to get a binary with it, never a silent fallback to the embedded store.
#[cfg(not(feature = "etcd"))]
fn etcd_store(
    _config: &Config,
    _records: Vec<envid::protocol::HostRecord>,
    _metrics: Arc<Metrics>,
) -> Result<Arc<dyn RegistryStore>, ServerError> {
    Err(ServerError::Etcd(ETCD_NOT_BUILT.into()))
}

/// What a binary built without the `etcd` feature says to `--etcd`.
pub const ETCD_NOT_BUILT: &str = "this envid was built without the etcd store; \
    rebuild it with `cargo install --path crates/envid-cli --features etcd` \
    (the build needs protoc: `apt-get install protobuf-compiler`)";

async fn serve(p: Prepared, shutdown: impl Future<Output = ()> + Send + 'static) {
    let Prepared {
        config,
        listener,
        mut state,
        reloader,
        apps_reloader,
        tls,
        embedded,
    } = p;
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the bound socket");
            return;
        }
    };
    let reload_task = poll::spawn(config.reload_interval, reloader);
    let store_tasks = state.store.clone().start();
    // The apps file is polled on its own task, like the registry.
    let apps_task = apps_reloader.map(|r| poll::spawn(config.reload_interval, r));

    // Lease expiry: the embedded store's, with self-preservation (the etcd
    // store's leases end inside etcd); the rate-limit windows' pruning.
    let expiry_task = {
        let store = embedded.clone();
        let metrics = state.metrics.clone();
        let interval = config.expiry_interval.max(Duration::from_millis(10));
        let limits = state.limits.clone();
        let guard = state.guard.clone();
        let preservation = config.lease_preservation;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lapses = guard::Lapses::default();
            loop {
                tick.tick().await;
                limits.prune();
                let Some(store) = &store else { continue };
                let now = store::now_unix_ms();
                let (live, due, longest) = store.lease_due(now);
                if preservation {
                    match lapses.decide(now, live, due) {
                        guard::Sweep::Hold(started) => {
                            if started {
                                tracing::warn!(
                                    due,
                                    live,
                                    "lease self-preservation: more than 15% of the leases lapsed \
                                     within one lease period; leases stop expiring until renewals recover"
                                );
                            }
                            metrics.preservation(true, due);
                            *guard.preserving.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(guard::Preserving {
                                    since_unix_ms: lapses.since().unwrap_or(now),
                                    held: due,
                                    live,
                                });
                            continue;
                        }
                        guard::Sweep::Resume => {
                            tracing::info!(
                                due,
                                live,
                                "lease self-preservation ended: renewals recovered; expiring the rest"
                            );
                            metrics.preservation(false, 0);
                            *guard.preserving.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                        guard::Sweep::Expire => {}
                    }
                }
                if due == 0 {
                    continue;
                }
                let (expired, change) = store.expire(now);
                lapses.expired(now, expired.len(), longest);
                if !expired.is_empty() {
                    metrics.expiries.inc_by(expired.len() as u64);
                    if let Some(c) = change {
                        tracing::info!(
                            expired = expired.len(),
                            version = c.version,
                            "leases expired"
                        );
                    }
                }
            }
        })
    };

    let (draining_tx, draining_rx) = tokio::sync::watch::channel(false);
    state.shutdown = draining_rx;
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let app = http::router(state);
    let limits = conn::Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        tls,
    };
    let shutdown = async move {
        shutdown.await;
        // Waiting long polls answer at once, so the drain is not held by them.
        let _ = draining_tx.send(true);
    };
    conn::serve(
        listener,
        app,
        limits,
        metrics,
        shutdown,
        config.drain_timeout,
    )
    .await;
    reload_task.abort();
    for task in store_tasks {
        task.abort();
    }
    expiry_task.abort();
    if let Some(task) = apps_task {
        task.abort();
    }
    // The last word (the embedded store marks its file clean).
    store.close().await;
}

/// Binds (before returning) and serves on a background thread with its own runtime.
pub fn spawn(config: Config) -> Result<ServerHandle, ServerError> {
    let prepared = prepare(config)?;
    let addr = prepared.listener.local_addr()?;
    let tls = prepared.tls.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("envid-server")
        .enable_all()
        .build()?;
    // On the runtime that will serve: the store's first client (its
    // connections' tasks) stays in use.
    runtime
        .block_on(prepared.state.store.preflight())
        .map_err(ServerError::Etcd)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("envid-server".into())
        .spawn(move || {
            runtime.block_on(serve(prepared, async move {
                let _ = stop_rx.await;
            }));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(ServerHandle {
        addr,
        tls,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Serves in the foreground until SIGTERM or Ctrl-C (the `envid serve` command).
pub fn run_blocking(config: Config) -> Result<(), ServerError> {
    let prepared = prepare(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(prepared.state.store.preflight())
        .map_err(ServerError::Etcd)?;
    let addr = prepared.listener.local_addr()?;
    let records = prepared.state.store.snapshot().records.len();
    let scheme = if prepared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        registry = %prepared.config.registry_path.display(),
        records,
        token_required = prepared.config.token.is_some(),
        registration = prepared.state.registration.as_str(),
        "listening on {scheme}://{addr}"
    );
    match &prepared.state.registration {
        http::auth::RegistrationMode::Open => {
            tracing::warn!("{}", http::OPEN_REGISTRATION_WARNING);
        }
        http::auth::RegistrationMode::Closed => tracing::info!(
            "registration is closed (PUT/DELETE /v1/hosts/IP answer 403); give --apps FILE to let apps register"
        ),
        http::auth::RegistrationMode::Apps(apps) => tracing::info!(
            apps = %prepared.config.apps_path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            principals = apps.get().principals().len(),
            "registration by the apps file's tokens"
        ),
    }
    if prepared.tls.is_none() && !prepared.config.listen.ip().is_loopback() {
        tracing::warn!("serving plain HTTP on a non-loopback address: tokens cross the network in clear; use --tls-cert and --tls-key");
    }
    runtime.block_on(serve(prepared, shutdown_signal()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down, draining in-flight requests");
}
