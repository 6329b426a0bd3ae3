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
//! watches from the next one, and keeps the result as its view (a [`Records`]
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
//!
//! **Files.** This one holds the store, its connection and its writes;
//! `etcd/watch.rs` the view (list, watch, probe); `etcd/credentials.rs` the
//! credentials' rotation.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use envid::protocol::{canonical_ip, HostRecord};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::etcd_connect::refusal::Failure;
use super::etcd_connect::settings::{EtcdSettings, REQUEST_TIMEOUT};
use super::records::{Delta, Gone, Records};
use super::{
    may_touch, now_unix_ms, Ack, BoxFuture, Durable, Health, MemberStatus, Owns, Registration,
    RegistryStore, Renewed, StaticOutcome, StoreError, StoreErrorNote, StoreStatus,
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

// After the macro, which they use too.
mod credentials;
mod members;
mod watch;

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

/// What `/healthz` shows of the credentials' rotation.
#[derive(Debug, Default)]
struct CredentialHealth {
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
    credentials: Mutex<CredentialHealth>,
    view: RwLock<Arc<Records>>,
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
    /// Each endpoint as last checked (`members.rs`).
    members: Mutex<Vec<MemberStatus>>,
    /// The last trouble met, kept after it cleared (the console shows it).
    last_error: Mutex<Option<StoreErrorNote>>,
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
            credentials: Mutex::new(CredentialHealth::default()),
            view: RwLock::new(Arc::new(Records::new(Vec::new(), history_limit))),
            history_limit,
            seen: tokio::sync::watch::channel(0).0,
            etcd_revision: AtomicU64::new(0),
            progress: tokio::sync::Notify::new(),
            status: Mutex::new(Status::default()),
            metrics,
            statics: Mutex::new(Some(statics)),
            members: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.config.prefix)
    }

    fn host_key(&self, ip: IpAddr) -> String {
        self.key(&format!("hosts/{}", canonical_ip(ip)))
    }

    fn store(&self) -> Arc<Records> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trouble(&self, why: Option<String>) {
        let mut status = self.status();
        if status.trouble != why {
            if let Some(w) = &why {
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(StoreErrorNote {
                    message: w.clone(),
                    at_unix_ms: Some(now_unix_ms()),
                });
            }
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

    fn credentials(&self) -> std::sync::MutexGuard<'_, CredentialHealth> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> Arc<EtcdSettings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// Times one etcd round trip for the metrics; errors are counted.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.timed_or(f, |_| None).await
    }

    /// [`Self::timed`], where `answer` turns an etcd error that is an
    /// answer rather than a failure into a value (not counted as an error).
    async fn timed_or<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
        answer: impl FnOnce(&etcd_client::Error) -> Option<T>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
            Ok(Ok(v)) => {
                self.metrics
                    .etcd_round_trip
                    .observe(started.elapsed().as_secs_f64());
                Ok(v)
            }
            Ok(Err(e)) => match answer(&e) {
                Some(v) => Ok(v),
                None => {
                    self.metrics.store_error("etcd");
                    Err(unavailable(self.classify(&e)))
                }
            },
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

    /// Puts the static set when etcd holds another one (one transaction:
    /// instances reading the same file write it once).
    async fn reconcile(&self, records: &[HostRecord]) -> Result<Option<u64>, StoreError> {
        let value = serde_json::to_vec(&StaticSet {
            records: records.to_vec(),
        })
        .expect("records always encode");
        let hash = format!("{:016x}", crate::hash::content_hash(&value));
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
}

impl RegistryStore for EtcdStore {
    fn records(&self) -> Arc<Records> {
        self.store()
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

    fn register(&self, r: Registration) -> Durable<'_, Ack> {
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
        owner: Option<Owns<'a>>,
        registration: Option<&'a str>,
    ) -> Durable<'a, Option<Renewed>> {
        Box::pin(async move {
            let client = self.client().await?;
            let key = self.host_key(ip);
            let resp = etcd!(self, |c| c.get(key.clone(), None))?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(None);
            };
            let Ok(stored) = serde_json::from_slice::<Stored>(kv.value()) else {
                return Ok(None);
            };
            let mut record = stored.record;
            record.ip = Some(canonical_ip(ip));
            let record = Arc::new(record);
            // The lease kept alive below is the one read here: a registration
            // put since has a lease of its own, which this never extends.
            let owns = owner.map(|o| o as &dyn Fn(&HostRecord) -> bool);
            may_touch(&record, owns, registration)?;
            let mut client = client;
            let (lease, lease_seconds, revision) =
                (kv.lease(), stored.lease_seconds, kv.mod_revision());
            // The client's keep-alive waits for etcd's first answer, and
            // fails with a lease error when the lease is gone (expired).
            let kept = self
                .timed_or(
                    async {
                        let kept = client.lease_keep_alive(lease).await;
                        kept.map(|_| Some(()))
                    },
                    |e| matches!(e, etcd_client::Error::LeaseKeepAliveError(_)).then_some(None),
                )
                .await?;
            if kept.is_none() {
                return Ok(None);
            }
            // The key must still hold the registration read above: one made
            // in between (another app's, on a new lease) is not the caller's
            // to renew or to be signed for. Unchanged before and after the
            // keep-alive means it was the registration renewed.
            let after = etcd!(self, |c| c.get(key.clone(), None))?;
            match after.kvs().first() {
                Some(kv) if kv.mod_revision() == revision => Ok(Some(Renewed {
                    lease_seconds,
                    record,
                })),
                _ => Ok(None),
            }
        })
    }

    fn deregister<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<Owns<'a>>,
        registration: Option<&'a str>,
    ) -> Durable<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            // With an owner or a registration: the record is read, checked,
            // and deleted only if it has not changed since (a transaction on
            // its revision), so a registration put on another instance in
            // between is never removed.
            let guard = if owner.is_none() && registration.is_none() {
                None
            } else {
                let resp = etcd!(self, |c| c.get(self.host_key(ip), None))?;
                let Some(kv) = resp.kvs().first() else {
                    return Ok(false);
                };
                if let Ok(stored) = serde_json::from_slice::<Stored>(kv.value()) {
                    let mut theirs = stored.record;
                    theirs.ip = Some(canonical_ip(ip));
                    let owns = owner.map(|o| o as &dyn Fn(&HostRecord) -> bool);
                    may_touch(&Arc::new(theirs), owns, registration)?;
                }
                Some(kv.mod_revision())
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

    fn replace_static(&self, records: Vec<HostRecord>) -> Durable<'_, StaticOutcome> {
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
            tokio::spawn(self.clone().check_members()),
        ];
        if self.settings().has_files() {
            tasks.push(self.rotate_credentials());
        }
        tasks
    }

    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.first_check())
    }

    fn status(&self) -> StoreStatus {
        let mut members = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if members.is_empty() {
            members = self
                .config
                .endpoints
                .iter()
                .map(|endpoint| MemberStatus {
                    endpoint: endpoint.clone(),
                    reachable: None,
                    checked_unix_ms: None,
                })
                .collect();
        }
        StoreStatus {
            kind: "etcd",
            persistent: None,
            members,
            watch_lag: Some(self.metrics.watch_lag.get().max(0) as u64),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
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
