//! Starting and stopping the service: [`prepare`] checks the [`Config`],
//! loads the files, binds the socket and builds the store and the handlers'
//! state; [`spawn`] and [`run_blocking`] then serve it on a runtime of their
//! own, with the background tasks (file pollers, the lease sweep, the
//! store's own) beside the accept loop, until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::apps::{self, AppsReloader};
use crate::config::{Config, ServerError};
use crate::http::auth::{self, RegistrationMode};
use crate::http::limits::Limits;
use crate::http::state::AppState;
use crate::identity::Identity;
use crate::leases::Sweeper;
use crate::metrics::Metrics;
use crate::protection::ReloadRefusal;
use crate::recent::Recent;
use crate::reload::Reloader;
use crate::store::embedded::EmbeddedStore;
use crate::store::RegistryStore;
use crate::{conn, http, poll, tls};

/// What a binary built without the `etcd` feature says to `--etcd`.
pub const ETCD_NOT_BUILT: &str = "this envid was built without the etcd store; \
    rebuild it with `cargo install --path crates/envid-cli --features etcd` \
    (the build needs protoc: `apt-get install protobuf-compiler`)";

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
    /// Turns true when the service starts draining; `state.shutdown` is
    /// its receiver.
    draining: tokio::sync::watch::Sender<bool>,
    reloader: Reloader,
    apps_reloader: Option<AppsReloader>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Prepared {
    /// The bound address.
    fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: self.config.listen,
                source,
            })
    }
}

fn prepare(config: Config) -> Result<Prepared, ServerError> {
    if config.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        // Refused rather than read as "no token": that would open the service.
        return Err(ServerError::Config {
            field: "token",
            problem: "the token must not be empty (no token would leave the reads open)".into(),
        });
    }
    if config.apps_path.is_some() && config.insecure_open_registration {
        return Err(ServerError::Config {
            field: "insecure_open_registration",
            problem: "an apps file and open registration exclude each other: \
                      open registration would ignore it"
                .into(),
        });
    }
    if config.etcd.is_empty() && config.etcd_access.is_set() {
        return Err(ServerError::Config {
            field: "etcd_access",
            problem: "--etcd-ca, --etcd-cert, --etcd-key and --etcd-user need --etcd URL".into(),
        });
    }
    let tls = config
        .tls
        .as_ref()
        .map(|files| {
            tls::acceptor(files).map_err(|problem| ServerError::Tls {
                cert: files.cert.clone(),
                key: files.key.clone(),
                problem,
            })
        })
        .transpose()?;
    let path = &config.registry_path;
    // Bounded like every file the project reads (crate::registry_file::load).
    let registry = crate::registry_file::load(path).map_err(ServerError::Registry)?;
    let records = registry.records;
    let identity =
        Identity::load(&config.identity).map_err(|problem| ServerError::Identity { problem })?;
    let bind = |source| ServerError::Bind {
        addr: config.listen,
        source,
    };
    let listener = conn::listen(config.listen).map_err(bind)?;
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn RegistryStore> = if config.etcd.is_empty() {
        Arc::new(EmbeddedStore::open(
            records,
            config.state_path.clone(),
            config.history_limit,
            metrics.clone(),
        ))
    } else {
        etcd_store(&config, records, metrics.clone())?
    };
    metrics.set_registration_open(config.insecure_open_registration);
    let (registration, apps_reloader) = match &config.apps_path {
        Some(p) => {
            let file = apps::load(p).map_err(ServerError::Apps)?;
            let (parsed, bytes) = (file.apps, file.bytes);
            let handle = Arc::new(apps::AppsHandle::new(parsed));
            let reloader = AppsReloader::new(p.clone(), handle.clone(), metrics.clone(), &bytes);
            (RegistrationMode::Apps(handle), Some(reloader))
        }
        None if config.insecure_open_registration => (RegistrationMode::Open, None),
        None => (RegistrationMode::Closed, None),
    };
    let reload_refusal = Arc::new(ReloadRefusal::default());
    let recent = Arc::new(Recent::default());
    let reloader = Reloader::new(
        path.clone(),
        store.clone(),
        metrics.clone(),
        &registry.bytes,
        reload_refusal.clone(),
        config.allow_mass_delete,
    )
    .with_recent(recent.clone());
    let (draining, shutdown) = tokio::sync::watch::channel(false);
    let state = AppState::new(http::state::Shared {
        store,
        metrics,
        reload_refusal,
        preservation: Arc::default(),
        token_digest: config.token.as_deref().map(auth::digest),
        registration,
        allow_loopback_registration: config.allow_loopback_registration,
        trusted_proxies: config.trusted_proxies.clone().into(),
        max_batch: config.max_batch,
        max_body_bytes: config.max_body_bytes,
        limits: Arc::new(Limits::new(&config)),
        write_limits: Arc::new(http::write_limits::WriteLimits::new(&config)),
        shutdown,
        snapshot_cache: Arc::default(),
        delta_cache: Arc::default(),
        identity: Arc::new(identity),
        recent,
        tls: tls.is_some(),
        allow_mass_delete: config.allow_mass_delete,
        lease_preservation: config.lease_preservation,
    });
    Ok(Prepared {
        config,
        listener,
        state,
        draining,
        reloader,
        apps_reloader,
        tls,
    })
}

/// The etcd store on `config.etcd`. Without the `etcd` feature, asking for
/// etcd is a start-up error that says how to get a binary with it, never a
/// silent fallback to the embedded store.
fn etcd_store(
    config: &Config,
    records: Vec<envid::protocol::HostRecord>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn RegistryStore>, ServerError> {
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (config, records, metrics);
        Err(ServerError::Etcd {
            problem: ETCD_NOT_BUILT.into(),
        })
    }
    #[cfg(feature = "etcd")]
    {
        use crate::store::etcd::{EtcdConfig, EtcdStore};
        use crate::store::etcd_connect::settings::EtcdSettings;

        let mut prefix = config.etcd_prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let settings = EtcdSettings::load(&config.etcd, &prefix, &config.etcd_access)
            .map_err(|problem| ServerError::Etcd { problem })?;
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
}

/// Serves `p` until `shutdown` completes, then drains and stops the
/// background tasks; the store has the last word.
async fn serve(p: Prepared, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (config, state) = (p.config, p.state);
    let listener = match tokio::net::TcpListener::from_std(p.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the bound socket");
            return;
        }
    };
    let mut tasks = vec![poll::spawn(config.reload_interval, p.reloader)];
    tasks.extend(state.store.clone().start());
    tasks.extend(
        p.apps_reloader
            .map(|r| poll::spawn(config.reload_interval, r)),
    );
    // The lease sweep, and the rate-limit windows' pruning on its tick.
    let mut sweeper = Sweeper::new(
        state.store.clone(),
        state.metrics.clone(),
        config.lease_preservation,
        state.preservation.clone(),
    );
    let limits = state.limits.clone();
    let write_limits = state.write_limits.clone();
    tasks.push(poll::every(config.expiry_interval, move || {
        limits.prune();
        write_limits.prune();
        sweeper.sweep();
    }));

    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let app = http::router(state);
    let limits = conn::Limits {
        max_connections: config.max_connections,
        max_connections_per_client: config.max_connections_per_client,
        trusted_proxies: config.trusted_proxies.clone().into(),
        max_header_bytes: config.max_header_bytes,
        header_read_timeout: config.header_read_timeout,
        tls: p.tls,
    };
    let draining = p.draining;
    let shutdown = async move {
        shutdown.await;
        // Waiting long polls answer at once, so the drain is not held by them.
        let _ = draining.send(true);
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
    for task in tasks {
        task.abort();
    }
    // The last word (the embedded store marks its file clean).
    store.close().await;
}

/// A runtime for the service.
fn runtime(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ServerError> {
    builder.enable_all().build().map_err(ServerError::Runtime)
}

/// Binds (before returning) and serves on a background thread with its own runtime.
pub fn spawn(config: Config) -> Result<ServerHandle, ServerError> {
    let prepared = prepare(config)?;
    let addr = prepared.local_addr()?;
    let tls = prepared.tls.is_some();
    let runtime = runtime(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("envid-server"),
    )?;
    // On the runtime that will serve: the store's first client (its
    // connections' tasks) stays in use.
    runtime
        .block_on(prepared.state.store.preflight())
        .map_err(|problem| ServerError::Etcd { problem })?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("envid-server".into())
        .spawn(move || {
            runtime.block_on(serve(prepared, async move {
                let _ = stop_rx.await;
            }));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(ServerError::Runtime)?;
    Ok(ServerHandle {
        addr,
        tls,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Serves in the foreground until SIGTERM or Ctrl-C (the `envid serve` command).
pub fn run_blocking(config: Config) -> Result<(), ServerError> {
    limit_malloc_arenas();
    let prepared = prepare(config)?;
    let runtime = runtime(&mut tokio::runtime::Builder::new_multi_thread())?;
    runtime
        .block_on(prepared.state.store.preflight())
        .map_err(|problem| ServerError::Etcd { problem })?;
    let addr = prepared.local_addr()?;
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
        RegistrationMode::Open => {
            tracing::warn!("{}", http::OPEN_REGISTRATION_WARNING);
        }
        RegistrationMode::Closed => tracing::info!(
            "registration is closed (PUT/DELETE /v1/hosts/IP answer 403); give --apps FILE to let apps register"
        ),
        RegistrationMode::Apps(apps) => tracing::info!(
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

/// glibc arenas a service process uses (`M_ARENA_MAX`), unless the
/// operator set `MALLOC_ARENA_MAX`.
///
/// A waiting long poll's memory is allocated on one tokio worker and often
/// freed on another; with glibc's default (8 arenas a core) the freed
/// chunks scatter over per-thread arenas and the service held 24.1 KiB per
/// waiting replica at 1,000 replicas, 14.0 KiB with two arenas (the fleet
/// bench, issue 24). Two rather than one: the workers still rarely wait
/// on each other's malloc lock.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas for a process that is the service (see
/// [`MALLOC_ARENAS`]): call it first thing in `main`, before the runtime's
/// threads exist. [`run_blocking`] calls it; [`spawn`] does not, as it may
/// run inside a program that tunes its own allocator. Does nothing on other
/// C libraries or when `MALLOC_ARENA_MAX` is set.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of glibc's allocator; it is
        // called before this process starts its worker threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}
