//! The etcd store: any number of service instances on one etcd cluster
//! serve the same registry.
//!
//! **Layout** (under the prefix, default `/envid/`): `static` holds the
//! whole static record set of the registry file as one JSON value, so a
//! reload is one revision; `static-hash` its content hash, so instances
//! reading the same file write it once (a transaction compares the hash);
//! `hosts/<ip>` holds a registration, attached to an etcd lease.
//!
//! **An informer.** Each instance lists the prefix at a revision, then
//! watches from the next one, and keeps the result as its view (a [`Store`]
//! whose versions are the revisions that made them). Lookups, snapshots and
//! long polls are answered from the view and never wait on etcd.
//!
//! **Versions are etcd revisions; the history is the cluster id.** A state
//! at revision R is the same on every instance, so a replica can fail over
//! mid-stream. An instance whose view is behind a replica's `since` asks
//! etcd for a progress report and answers once it has caught up. A `since`
//! older than the view's retained changes, or compacted away, gets `410`.
//!
//! **Leases are etcd leases**: a registration is a put under a new lease
//! (at least 2 s, etcd's minimum), a renewal a keep-alive, an expiry etcd's
//! delete, which the watch turns into a delta. No instance sweeps.
//!
//! **Trouble.** Writes wait for etcd's commit (bounded); when etcd cannot
//! commit (no quorum, unreachable) they get `503` with `Retry-After`, and
//! reads go on from the view, reported stale by `/healthz` and `/metrics`. The
//! watch resumes from its revision, or re-lists when that was compacted,
//! without a restart. Until the first list the instance serves nothing but
//! a failing `/healthz` that says why.
//!
//! **TLS and authentication** ([`super::etcd_connect`]): a refusal that a
//! retry will not fix (a certificate the other side does not trust, a wrong
//! password, no access to the prefix) is found at start by a bounded probe
//! ([`RegistryStore::preflight`]) and stops the service; later, it is the
//! `/healthz` reason. The certificates and the password file are polled;
//! when they change, a new client is built, tried, and swapped in, and the
//! watch resumes on it from its revision.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use envid::protocol::HostRecord;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};

use super::etcd_connect::{fingerprint, now_secs, utc, EtcdSettings, Failure, REQUEST_TIMEOUT};
use super::{
    Ack, BoxFuture, Delta, Gone, Health, Registration, RegistryStore, Snapshot, StaticOutcome,
    Store, StoreError,
};
use crate::metrics::Metrics;

/// etcd's smallest lease.
pub const MIN_LEASE_SECONDS: u64 = 2;

/// How often etcd is probed (a quorum read) for `/healthz`.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How long a write waits for this instance's view to show it.
const VIEW_WAIT: Duration = Duration::from_secs(2);

const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The largest message to or from etcd: the static set is one value (etcd's
/// own limit, `--max-request-bytes`, 1.5 MiB by default, is the one that
/// binds; raise it for registries past ~10,000 static records).
const MAX_MESSAGE: usize = 256 << 20;

/// The longest the first connection and probe at start may take; past it,
/// etcd counts as unreachable (the service starts and waits for it).
const PREFLIGHT_DEADLINE: Duration = Duration::from_secs(5);

/// How long one operation keeps retrying (a dead member's endpoint, an
/// election) before the caller gets `503`. A leader's death stalls writes
/// for an election timeout (1 to 2 s by etcd's defaults) plus the vote, so
/// the bound leaves room for one attempt after a timed-out one.
const OPERATION_DEADLINE: Duration = Duration::from_secs(5);

/// One etcd operation, retried until [`OPERATION_DEADLINE`]: the client's
/// balancer may pick a member that just died (connection refused) or one in
/// an election; another attempt a moment later usually lands. Only
/// idempotent operations go through it (a put, a delete, a get, a lease
/// grant whose lease would just expire unused). Counted in the metrics.
macro_rules! etcd {
    ($store:expr, |$c:ident| $body:expr) => {{
        let store = $store;
        let deadline = Instant::now() + OPERATION_DEADLINE;
        loop {
            #[allow(unused_mut)]
            let mut $c = match store.client().await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let started = Instant::now();
            let left = deadline
                .saturating_duration_since(started)
                .min(REQUEST_TIMEOUT);
            let result = tokio::time::timeout(left, async { $body.await }).await;
            match result {
                Ok(Ok(v)) => {
                    store
                        .metrics
                        .etcd_round_trip
                        .observe(started.elapsed().as_secs_f64());
                    break Ok(v);
                }
                Ok(Err(e)) => {
                    store.metrics.store_error("etcd");
                    let failure = store.classify(&e);
                    // A refusal (TLS, credentials, permission) is the same
                    // on every retry.
                    if failure.is_permanent()
                        || Instant::now() + Duration::from_millis(100) >= deadline
                    {
                        break Err(unavailable(failure));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    // A write stalled by an election answers once a leader
                    // is in: try again while the deadline allows.
                    store.metrics.store_error("etcd");
                    if Instant::now() + Duration::from_millis(100) >= deadline {
                        break Err(unavailable("no answer within the deadline"));
                    }
                }
            }
        }
    }};
}

/// A registration as stored in etcd.
#[derive(Serialize, Deserialize)]
struct Stored {
    record: HostRecord,
    lease_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// The static set as stored in etcd.
#[derive(Serialize, Deserialize)]
struct StaticSet {
    records: Vec<HostRecord>,
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The key prefix (ends with `/`).
    pub prefix: String,
    /// How often the certificates and the password file are checked for a
    /// change.
    pub reload_interval: Duration,
}

/// How long credentials etcd refused are left before they are tried again
/// (unless the files change): each try makes etcd check a password, which
/// costs it a bcrypt.
const REFUSED_RETRY: Duration = Duration::from_secs(10);

/// The state of the credentials on disk, for `/healthz`.
#[derive(Debug, Default)]
struct Credentials {
    /// The fingerprint of the files the client in use was built from.
    applied: u64,
    /// Files etcd refused, and when.
    refused: Option<(u64, Instant)>,
    /// New credentials swapped in since start.
    reloads: u64,
    /// Why the files on disk are not in use (or the one in use expired).
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Status {
    /// Set once the first list is in.
    ready: bool,
    /// Why etcd is not serving us, when it is not.
    trouble: Option<String>,
}

/// The etcd store (see the module docs).
pub struct EtcdStore {
    config: EtcdConfig,
    /// The client in use, made on first need from `settings` and replaced
    /// when the credentials rotate.
    client: tokio::sync::Mutex<Option<Client>>,
    settings: RwLock<Arc<EtcdSettings>>,
    /// Bumped when a client built from new credentials is swapped in: the
    /// watch moves to it.
    rotation: tokio::sync::watch::Sender<u64>,
    credentials: Mutex<Credentials>,
    view: RwLock<Arc<Store>>,
    history_limit: usize,
    /// The newest revision the watch has reported (events or progress): the
    /// view holds every change up to it.
    seen: tokio::sync::watch::Sender<u64>,
    /// The newest revision etcd reported to the probe.
    etcd_revision: AtomicU64,
    /// Asks the watch task for a progress report.
    progress: tokio::sync::Notify,
    status: Mutex<Status>,
    metrics: Arc<Metrics>,
    /// The static set this instance reconciles into etcd (the file).
    statics: Mutex<Option<Vec<HostRecord>>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", &self.config)
            .field("seen", &*self.seen.borrow())
            .finish_non_exhaustive()
    }
}

/// A failure that looks transient, looked at again: over TLS 1.3, a member
/// refusing our certificate looks like a closed connection (see
/// [`EtcdSettings::diagnose_tls`]).
async fn refine<T>(settings: &EtcdSettings, result: Result<T, Failure>) -> Result<T, Failure> {
    match result {
        Err(Failure::Transient(why)) => Err(settings
            .diagnose_tls()
            .await
            .unwrap_or(Failure::Transient(why))),
        other => other,
    }
}

/// What `/healthz` says of a failed etcd operation: its cause, without the
/// "cannot commit" wording meant for writers.
fn reason(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        reason: format!("etcd: {e}"),
        retry_after: RETRY_AFTER,
    }
}

impl EtcdStore {
    /// A store on `config`'s cluster; nothing is contacted until
    /// [`RegistryStore::start`]. `statics` (the registry file) is reconciled
    /// into etcd once it is reached.
    pub(crate) fn new(
        config: EtcdConfig,
        settings: EtcdSettings,
        statics: Vec<HostRecord>,
        history_limit: usize,
        metrics: Arc<Metrics>,
    ) -> EtcdStore {
        if let Some(t) = settings.not_after() {
            metrics.etcd_client_cert_not_after.set(t);
        }
        EtcdStore {
            config,
            client: tokio::sync::Mutex::new(None),
            settings: RwLock::new(Arc::new(settings)),
            rotation: tokio::sync::watch::channel(0).0,
            credentials: Mutex::new(Credentials::default()),
            view: RwLock::new(Arc::new(Store::new(Vec::new(), history_limit))),
            history_limit,
            seen: tokio::sync::watch::channel(0).0,
            etcd_revision: AtomicU64::new(0),
            progress: tokio::sync::Notify::new(),
            status: Mutex::new(Status::default()),
            metrics,
            statics: Mutex::new(Some(statics)),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.config.prefix)
    }

    fn host_key(&self, ip: IpAddr) -> String {
        self.key(&format!("hosts/{ip}"))
    }

    fn store(&self) -> Arc<Store> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trouble(&self, why: Option<String>) {
        let mut status = self.status();
        if status.trouble != why {
            match &why {
                Some(w) => {
                    tracing::warn!(reason = %w, "etcd unreachable or refusing; serving reads from the view, refusing writes")
                }
                None => tracing::info!("etcd reachable again"),
            }
            status.trouble = why;
        }
        self.metrics.stale.set(i64::from(status.trouble.is_some()));
    }

    fn settings(&self) -> Arc<EtcdSettings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn credentials(&self) -> std::sync::MutexGuard<'_, Credentials> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How an etcd error looks to an operator (naming the flag to fix),
    /// and whether waiting can fix it.
    fn classify(&self, e: &etcd_client::Error) -> Failure {
        self.settings().classify(e)
    }

    /// A client on `settings`. With a user this authenticates, so a wrong
    /// password shows here.
    async fn connect(&self, settings: &EtcdSettings) -> Result<Client, Failure> {
        match tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            Client::connect(&self.config.endpoints, Some(settings.options())),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(settings.classify(&e)),
            Err(_) => Err(Failure::Transient(
                "no answer within the connect deadline".into(),
            )),
        }
    }

    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let settings = self.settings();
        let client = self.connect(&settings).await.map_err(unavailable)?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Checks what a retry will not fix: the TLS handshake, the password,
    /// read access to the prefix (a list) and write access (a transaction
    /// whose comparison never holds, so its put never runs, but etcd checks
    /// the permission of every operation in it).
    async fn check(&self, client: &mut Client) -> Result<(), etcd_client::Error> {
        let prefix = self.config.prefix.as_bytes();
        client
            .get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_limit(1),
                ),
            )
            .await?;
        let probe = self.key("probe");
        let txn = Txn::new()
            // A mod revision is never below 0 (a missing key compares as 0).
            .when([Compare::mod_revision(probe.clone(), CompareOp::Less, 0)])
            .and_then([TxnOp::put(probe, "", None)]);
        client.txn(txn).await?;
        Ok(())
    }

    /// The first connection and probe, bounded: `Err` is a cause a retry
    /// will not fix; an unreachable etcd is left to the watch loop to wait
    /// for.
    async fn first_check(&self) -> Result<(), String> {
        let settings = self.settings();
        let attempt = async {
            let mut client = self.connect(&settings).await?;
            self.check(&mut client)
                .await
                .map_err(|e| settings.classify(&e))?;
            *self.client.lock().await = Some(client);
            Ok::<(), Failure>(())
        };
        let attempt = async { refine(&settings, attempt.await).await };
        match tokio::time::timeout(PREFLIGHT_DEADLINE, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Permanent(cause))) => Err(cause),
            Ok(Err(Failure::Transient(why))) => {
                tracing::warn!(reason = %why, endpoints = ?self.config.endpoints, "etcd not reachable at start; serving a failing /healthz until it is");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(endpoints = ?self.config.endpoints, "etcd did not answer within {PREFLIGHT_DEADLINE:?} at start; serving a failing /healthz until it does");
                Ok(())
            }
        }
    }

    /// Polls the certificates and the password file; when their content
    /// changes, a client built from them is tried (the same probe as at
    /// start) and swapped in, and the watch moves to it. Files that do not
    /// load, or that etcd refuses, keep the client in use; `/healthz` and
    /// the log say why, and the next poll tries again.
    async fn watch_credentials(self: Arc<Self>) {
        let interval = self.config.reload_interval.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let access = self.settings().access().clone();
        let first = {
            let access = access.clone();
            tokio::task::spawn_blocking(move || fingerprint(&access))
                .await
                .unwrap_or_default()
        };
        self.credentials().applied = first;
        loop {
            tick.tick().await;
            self.check_expiry();
            let now = {
                let access = access.clone();
                match tokio::task::spawn_blocking(move || fingerprint(&access)).await {
                    Ok(f) => f,
                    Err(_) => continue,
                }
            };
            {
                let c = self.credentials();
                let resting = c
                    .refused
                    .is_some_and(|(f, at)| f == now && at.elapsed() < REFUSED_RETRY);
                if now == c.applied || resting {
                    continue;
                }
            }
            let loaded = {
                let (endpoints, prefix, access) = (
                    self.config.endpoints.clone(),
                    self.config.prefix.clone(),
                    access.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    EtcdSettings::load(&endpoints, &prefix, &access)
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            };
            let settings = match loaded {
                Ok(s) => s,
                Err(e) => {
                    self.credentials_failed(format!(
                        "new etcd credentials do not load, keeping the previous ones: {e}"
                    ));
                    continue;
                }
            };
            let tried = async {
                let mut client = self.connect(&settings).await?;
                tokio::time::timeout(PREFLIGHT_DEADLINE, self.check(&mut client))
                    .await
                    .map_err(|_| Failure::Transient("no answer within the deadline".into()))?
                    .map_err(|e| settings.classify(&e))?;
                Ok::<Client, Failure>(client)
            };
            match refine(&settings, tried.await).await {
                Ok(client) => {
                    if let Some(t) = settings.not_after() {
                        self.metrics.etcd_client_cert_not_after.set(t);
                    }
                    *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
                    *self.client.lock().await = Some(client);
                    {
                        let mut c = self.credentials();
                        c.applied = now;
                        c.refused = None;
                        c.reloads += 1;
                        c.error = None;
                    }
                    self.metrics.etcd_credentials_reload(true);
                    self.rotation.send_modify(|g| *g += 1);
                    tracing::info!(
                        not_after = ?self.settings().not_after().map(utc),
                        "etcd credentials reloaded; the new client is in use"
                    );
                    self.check_expiry();
                }
                Err(failure) => {
                    self.credentials().refused = Some((now, Instant::now()));
                    self.credentials_failed(format!(
                        "etcd refused the new credentials, keeping the previous ones: {failure}"
                    ))
                }
            }
        }
    }

    fn credentials_failed(&self, why: String) {
        let mut c = self.credentials();
        if c.error.as_deref() != Some(why.as_str()) {
            tracing::warn!(reason = %why, "etcd credentials reload failed");
            self.metrics.etcd_credentials_reload(false);
            c.error = Some(why);
        }
    }

    /// A client certificate in use that has expired is named, before etcd
    /// refuses the next connection made with it.
    fn check_expiry(&self) {
        let settings = self.settings();
        let Some(until) = settings.not_after() else {
            return;
        };
        if now_secs() > until {
            let why = format!(
                "the client certificate --etcd-cert {} expired on {}; etcd refuses new \
                 connections made with it",
                settings
                    .access()
                    .cert
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                utc(until)
            );
            self.credentials_failed(why);
        }
    }

    /// Times one etcd round trip for the metrics; errors are counted.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
            Ok(Ok(v)) => {
                self.metrics
                    .etcd_round_trip
                    .observe(started.elapsed().as_secs_f64());
                Ok(v)
            }
            Ok(Err(e)) => {
                self.metrics.store_error("etcd");
                Err(unavailable(self.classify(&e)))
            }
            Err(_) => {
                self.metrics.store_error("etcd");
                Err(unavailable("no answer within 2 s"))
            }
        }
    }

    /// Waits (bounded) until this instance's view holds `revision`, so a
    /// caller reads its own write here.
    async fn caught_up(&self, revision: u64) {
        let mut seen = self.seen.subscribe();
        if *seen.borrow() >= revision {
            return;
        }
        self.progress.notify_one();
        let _ = tokio::time::timeout(VIEW_WAIT, seen.wait_for(|s| *s >= revision)).await;
    }

    /// Lists the prefix; returns the revision, the cluster id, the static
    /// records and the registered ones.
    async fn list(&self) -> Result<(u64, u64, Vec<HostRecord>, Vec<HostRecord>), StoreError> {
        let resp = etcd!(self, |c| c
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(
                self.config.prefix.as_bytes(),
                Some(GetOptions::new().with_prefix())
            ))?;
        let header = resp.header().ok_or_else(|| unavailable("no header"))?;
        let (revision, cluster) = (header.revision() as u64, header.cluster_id());
        let mut statics = Vec::new();
        let mut registered = Vec::new();
        let static_key = self.key("static");
        let hosts = self.key("hosts/");
        for kv in resp.kvs() {
            if kv.key() == static_key.as_bytes() {
                match serde_json::from_slice::<StaticSet>(kv.value()) {
                    Ok(s) => statics = s.records,
                    Err(e) => {
                        self.metrics.store_error("decode");
                        tracing::error!(error = %e, "etcd holds a static set that does not parse");
                    }
                }
            } else if kv.key().starts_with(hosts.as_bytes()) {
                if let Some(r) = self.decode_host(kv.key(), kv.value()) {
                    registered.push(r);
                }
            }
        }
        Ok((revision, cluster, statics, registered))
    }

    fn decode_host(&self, key: &[u8], value: &[u8]) -> Option<HostRecord> {
        let ip = self.host_ip(key)?;
        match serde_json::from_slice::<Stored>(value) {
            Ok(s) => {
                let mut r = s.record;
                r.ip = Some(ip);
                Some(r)
            }
            Err(e) => {
                self.metrics.store_error("decode");
                tracing::error!(%ip, error = %e, "etcd holds a registration that does not parse");
                None
            }
        }
    }

    fn host_ip(&self, key: &[u8]) -> Option<IpAddr> {
        let hosts = self.key("hosts/");
        std::str::from_utf8(key.strip_prefix(hosts.as_bytes())?)
            .ok()?
            .parse()
            .ok()
    }

    /// Puts the static set when etcd holds another one (one transaction:
    /// instances reading the same file write it once).
    async fn reconcile(&self, records: &[HostRecord]) -> Result<Option<u64>, StoreError> {
        let value = serde_json::to_vec(&StaticSet {
            records: records.to_vec(),
        })
        .expect("records always encode");
        let hash = format!("{:016x}", crate::reload::content_hash(&value));
        let hash_key = self.key("static-hash");
        let txn = Txn::new()
            .when([Compare::value(
                hash_key.clone(),
                CompareOp::Equal,
                hash.clone(),
            )])
            .or_else([
                TxnOp::put(hash_key, hash, None),
                TxnOp::put(self.key("static"), value, None),
            ]);
        let resp = etcd!(self, |c| c
            .kv_client()
            .max_encoding_message_size(MAX_MESSAGE)
            .txn(txn.clone()))?;
        let revision = resp.header().map_or(0, |h| h.revision() as u64);
        Ok((!resp.succeeded()).then_some(revision))
    }

    async fn put_registration(
        &self,
        client: &mut Client,
        ip: IpAddr,
        stored: &Stored,
    ) -> Result<u64, StoreError> {
        let ttl = stored.lease_seconds.max(MIN_LEASE_SECONDS) as i64;
        let lease = etcd!(self, |c| c.lease_grant(ttl, None))?.id();
        let value = serde_json::to_vec(stored).expect("records always encode");
        let resp = etcd!(self, |c| c.put(
            self.host_key(ip),
            value.clone(),
            Some(PutOptions::new().with_lease(lease).with_prev_key())
        ))?;
        if let Some(old) = resp.prev_key().map(|kv| kv.lease()) {
            if old != 0 && old != lease {
                // The old lease holds nothing now; let it go at once rather
                // than at its expiry.
                let mut c = client.clone();
                tokio::spawn(async move {
                    let _ = c.lease_revoke(old).await;
                });
            }
        }
        Ok(resp.header().map_or(0, |h| h.revision() as u64))
    }

    /// The watch loop: list, watch, resume or re-list, forever.
    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut resume_from: Option<u64> = None;
        loop {
            // Subscribed before the client is taken: a rotation after this
            // point moves the watch to the new client.
            let mut rotation = self.rotation.subscribe();
            let mut client = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    self.wait_out(&reason(&e), &mut backoff).await;
                    continue;
                }
            };
            if resume_from.is_none() {
                // Reconcile the file first, so the list shows it.
                let pending = self
                    .statics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(records) = pending {
                    match self.reconcile(&records).await {
                        Ok(_) => {
                            *self.statics.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                        Err(e) => {
                            self.wait_out(&reason(&e), &mut backoff).await;
                            continue;
                        }
                    }
                }
                match self.list().await {
                    Ok((revision, cluster, statics, registered)) => {
                        self.install(revision, cluster, statics, registered);
                        resume_from = Some(revision);
                    }
                    Err(e) => {
                        self.wait_out(&reason(&e), &mut backoff).await;
                        continue;
                    }
                }
            }
            let from = resume_from.expect("listed");
            match self.watch(&mut client, from, &mut rotation).await {
                WatchEnd::Rotated(at) => {
                    // The same revision on the new client: no event lost.
                    resume_from = Some(at);
                    continue;
                }
                WatchEnd::Compacted => {
                    tracing::warn!(
                        revision = from,
                        "the watch revision was compacted; listing again"
                    );
                    resume_from = None;
                }
                WatchEnd::Broken(e, at) => {
                    resume_from = Some(at);
                    self.wait_out(&e, &mut backoff).await;
                    continue;
                }
            }
            backoff = Duration::from_millis(100);
        }
    }

    /// `why`, or the TLS refusal behind it (see
    /// [`EtcdSettings::diagnose_tls`]).
    async fn explain(&self, why: String) -> String {
        match self.settings().diagnose_tls().await {
            Some(cause) => format!("etcd: {cause}"),
            None => why,
        }
    }

    async fn wait_out(&self, why: &str, backoff: &mut Duration) {
        let why = &self.explain(why.to_string()).await;
        if self.status().ready {
            self.trouble(Some(why.to_string()));
        } else {
            let mut status = self.status();
            if status.trouble.as_deref() != Some(why) {
                tracing::warn!(reason = %why, endpoints = ?self.config.endpoints, "waiting for etcd");
                status.trouble = Some(why.to_string());
            }
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    /// Installs a list: the first one becomes the view; later ones (after a
    /// compaction) are applied as one change, so the deltas stay right.
    fn install(
        &self,
        revision: u64,
        cluster: u64,
        statics: Vec<HostRecord>,
        registered: Vec<HostRecord>,
    ) {
        let history = format!("{cluster:016x}");
        let first = !self.status().ready;
        let same_history = *self.store().snapshot().history == *history;
        if first || !same_history {
            let leases = registered
                .into_iter()
                .map(|record| super::Lease {
                    record,
                    lease_seconds: 0,
                    expires_unix_ms: u64::MAX,
                })
                .collect();
            let store = Store::with_registrations(statics, leases, revision, self.history_limit)
                .with_history(history);
            *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(store);
        } else {
            let store = self.store();
            store.at_version(revision, |s| s.reset(statics, registered));
        }
        self.seen.send_modify(|s| *s = (*s).max(revision));
        {
            let mut status = self.status();
            status.ready = true;
        }
        self.trouble(None);
        tracing::info!(revision, cluster = %format!("{cluster:016x}"), records = self.store().snapshot().records.len(), "view listed from etcd");
    }

    async fn watch(
        &self,
        client: &mut Client,
        from: u64,
        rotation: &mut tokio::sync::watch::Receiver<u64>,
    ) -> WatchEnd {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from as i64 + 1)
            .with_progress_notify();
        let mut stream = match self
            .timed(
                client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE)
                    .watch(self.config.prefix.as_bytes(), Some(options)),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return WatchEnd::Broken(reason(&e), from),
        };
        let mut at = from;
        let store = self.store();
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = rotation.changed() => return WatchEnd::Rotated(at),
                _ = self.progress.notified() => {
                    if let Err(e) = stream.request_progress().await {
                        return WatchEnd::Broken(self.classify(&e).to_string(), at);
                    }
                    continue;
                }
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return WatchEnd::Broken("the watch stream ended".into(), at),
                Err(e) => return WatchEnd::Broken(self.classify(&e).to_string(), at),
            };
            if resp.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if resp.canceled() {
                return WatchEnd::Broken(format!("watch canceled: {}", resp.cancel_reason()), at);
            }
            self.trouble(None);
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision() as u64;
                self.apply(&store, event.event_type(), kv.key(), kv.value(), revision);
                at = at.max(revision);
            }
            if resp.events().is_empty() && !resp.created() {
                // A progress report (sent only once the watcher is in sync):
                // nothing of ours changed up to its revision.
                if let Some(h) = resp.header() {
                    at = at.max(h.revision() as u64);
                }
            }
            self.seen.send_modify(|s| *s = (*s).max(at));
        }
    }

    fn apply(&self, store: &Store, kind: EventType, key: &[u8], value: &[u8], revision: u64) {
        if key == self.key("static").as_bytes() {
            let records = match kind {
                EventType::Put => match serde_json::from_slice::<StaticSet>(value) {
                    Ok(s) => s.records,
                    Err(e) => {
                        self.metrics.store_error("decode");
                        tracing::error!(error = %e, "etcd holds a static set that does not parse");
                        return;
                    }
                },
                EventType::Delete => Vec::new(),
            };
            store.at_version(revision, |s| s.replace_all(records));
        } else if let Some(ip) = self.host_ip(key) {
            match kind {
                EventType::Put => {
                    if let Some(r) = self.decode_host(key, value) {
                        store.at_version(revision, |s| s.register(ip, r, 0, 0));
                    }
                }
                EventType::Delete => {
                    store.at_version(revision, |s| s.deregister(ip));
                }
            }
        }
    }

    /// Probes etcd with a quorum read: health, round trip, watch lag.
    async fn probe(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.status().ready {
                continue;
            }
            let key = self.key("static-hash");
            match etcd!(&*self, |c| c.get(key.clone(), None)) {
                Ok(resp) => {
                    let r = resp.header().map_or(0, |h| h.revision() as u64);
                    self.etcd_revision.store(r, Ordering::Relaxed);
                    let seen = *self.seen.borrow();
                    self.metrics.watch_lag.set(r.saturating_sub(seen) as i64);
                    if r > seen {
                        self.progress.notify_one();
                    }
                    self.trouble(None);
                }
                Err(e) => {
                    let why = self.explain(reason(&e)).await;
                    self.trouble(Some(why))
                }
            }
        }
    }
}

enum WatchEnd {
    /// New credentials are in use: watch again on the new client from the
    /// revision.
    Rotated(u64),
    Compacted,
    /// The stream failed; resume after the revision.
    Broken(String, u64),
}

impl RegistryStore for EtcdStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.store().snapshot()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store().subscribe()
    }

    fn changes_since(&self, since: u64) -> Result<Delta, Gone> {
        let store = self.store();
        let current = store.version();
        let seen = *self.seen.borrow();
        if since > current && since <= seen {
            // The replica saw a later revision elsewhere, and this view has
            // every change up to it: none of ours happened in between.
            let mut d = store.changes_since(current)?;
            d.version = since;
            return Ok(d);
        }
        store.changes_since(since)
    }

    fn catch_up(&self, version: u64) -> BoxFuture<'_, ()> {
        Box::pin(self.caught_up(version))
    }

    fn static_deletions(&self, records: &[HostRecord]) -> (usize, usize) {
        self.store().static_deletions(records)
    }

    fn registration_count(&self) -> usize {
        self.store().registration_count()
    }

    fn register(&self, r: Registration) -> BoxFuture<'_, Result<Ack, StoreError>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let stored = Stored {
                record: r.record,
                lease_seconds: r.lease_seconds.max(MIN_LEASE_SECONDS),
                owner: r.owner,
            };
            let revision = self.put_registration(&mut client, r.ip, &stored).await?;
            self.caught_up(revision).await;
            Ok(Ack {
                version: revision,
                lease_seconds: stored.lease_seconds,
            })
        })
    }

    fn renew<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let resp = etcd!(self, |c| c.get(self.host_key(ip), None))?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(None);
            };
            let Ok(stored) = serde_json::from_slice::<Stored>(kv.value()) else {
                return Ok(None);
            };
            if owner.is_some_and(|o| stored.record.app.as_deref() != Some(o)) {
                let mut theirs = stored.record;
                theirs.ip = Some(ip);
                return Err(StoreError::NotOwner(Arc::new(theirs)));
            }
            let mut client = client;
            // The client's keep-alive waits for etcd's first answer, and
            // fails with a lease error when the lease is gone (expired).
            let started = Instant::now();
            match tokio::time::timeout(REQUEST_TIMEOUT, client.lease_keep_alive(kv.lease())).await {
                Ok(Ok(_)) => {
                    self.metrics
                        .etcd_round_trip
                        .observe(started.elapsed().as_secs_f64());
                    Ok(Some(stored.lease_seconds))
                }
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => Ok(None),
                Ok(Err(e)) => {
                    self.metrics.store_error("etcd");
                    Err(unavailable(self.classify(&e)))
                }
                Err(_) => {
                    self.metrics.store_error("etcd");
                    Err(unavailable("no answer within 2 s"))
                }
            }
        })
    }

    fn deregister<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            // With an owner: the record is read, checked, and deleted only if
            // it has not changed since (a transaction on its revision).
            let guard = match owner {
                None => None,
                Some(o) => {
                    let resp = etcd!(self, |c| c.get(self.host_key(ip), None))?;
                    let Some(kv) = resp.kvs().first() else {
                        return Ok(false);
                    };
                    if let Ok(stored) = serde_json::from_slice::<Stored>(kv.value()) {
                        if stored.record.app.as_deref() != Some(o) {
                            let mut theirs = stored.record;
                            theirs.ip = Some(ip);
                            return Err(StoreError::NotOwner(Arc::new(theirs)));
                        }
                    }
                    Some(kv.mod_revision())
                }
            };
            let delete = TxnOp::delete(
                self.host_key(ip),
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            );
            let txn = match guard {
                Some(rev) => Txn::new()
                    .when([Compare::mod_revision(
                        self.host_key(ip),
                        CompareOp::Equal,
                        rev,
                    )])
                    .and_then([delete]),
                None => Txn::new().and_then([delete]),
            };
            let resp = etcd!(self, |c| c.txn(txn.clone()))?;
            if !resp.succeeded() {
                // Changed between the read and the delete: not ours to remove.
                return Err(unavailable("the registration changed meanwhile; retry"));
            }
            let mut deleted = false;
            for op in resp.op_responses() {
                if let etcd_client::TxnOpResponse::Delete(d) = op {
                    deleted |= d.deleted() > 0;
                    for kv in d.prev_kvs() {
                        let lease = kv.lease();
                        if lease != 0 {
                            let mut c = client.clone();
                            tokio::spawn(async move {
                                let _ = c.lease_revoke(lease).await;
                            });
                        }
                    }
                }
            }
            let revision = resp.header().map_or(0, |h| h.revision() as u64);
            if deleted {
                self.caught_up(revision).await;
            }
            Ok(deleted)
        })
    }

    fn static_record(&self, ip: IpAddr) -> Option<Arc<HostRecord>> {
        self.store().static_record(ip)
    }

    fn replace_static(
        &self,
        records: Vec<HostRecord>,
    ) -> BoxFuture<'_, Result<StaticOutcome, StoreError>> {
        Box::pin(async move {
            let before = self.store().static_count();
            let after = records.len();
            let changed = self.reconcile(&records).await?;
            if let Some(revision) = changed {
                self.caught_up(revision).await;
            }
            Ok(StaticOutcome {
                before,
                after,
                version: changed,
            })
        })
    }

    fn health(&self) -> Health {
        let status = self.status();
        match (&status.trouble, status.ready) {
            (None, true) => Health::Ok,
            (Some(why), true) => Health::Stale {
                reason: why.clone(),
            },
            (why, false) => Health::Starting {
                reason: why
                    .clone()
                    .unwrap_or_else(|| "listing the registry from etcd".into()),
            },
        }
    }

    fn start(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(self.clone().run()),
            tokio::spawn(self.clone().probe()),
        ];
        if self.settings().has_files() {
            tasks.push(tokio::spawn(self.watch_credentials()));
        }
        tasks
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.first_check())
    }

    fn health_details(&self) -> Option<serde_json::Value> {
        let mut details = self.settings().describe();
        let c = self.credentials();
        details["credential_reloads"] = c.reloads.into();
        details["credential_error"] = c.error.clone().into();
        Some(details)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
