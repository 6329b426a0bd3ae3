//! The embedded store: one machine, the records in memory (a [`Store`]),
//! the registrations in a local state file (see `state.rs`).
//!
//! **Durable acknowledgements by group commit.** A write is applied in
//! memory, then waits for a write of the state file that holds it (a whole
//! file, written atomically and fsynced, see `envid::atomic_file`). One
//! writer task writes the file whenever registrations changed since its last
//! write, so the writes that arrive while one runs share the next fsync: the
//! cost of a durable write is one fsync per batch, not per registration. A
//! home-made log plus a file keeps the dependency list short; redb or fjall
//! would bring a page cache and compaction this one-file state does not
//! need (the file is rewritten whole: it costs O(registrations) per batch,
//! which group commit amortizes).
//!
//! **Versions never lie.** A change is visible (to lookups and long polls)
//! before it is written, so a crash can lose versions a replica has seen.
//! The file names its history and whether the run that wrote it shut down
//! cleanly; after a crash or a corrupt file the store starts a new history,
//! and a replica's `since=N` from the old one gets `410`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envid::protocol::HostRecord;

use super::{
    now_unix_ms, Ack, BoxFuture, Delta, Gone, Health, Registration, RegistryStore, Snapshot,
    StaticOutcome, Store, StoreError,
};
use crate::metrics::Metrics;
use crate::state;

/// How long a write waits for the disk before it is answered `503`.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A new history id: 16 hex digits, different on every call.
pub(crate) fn new_history() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The embedded store (see the module docs).
#[derive(Debug)]
pub struct EmbeddedStore {
    store: Arc<Store>,
    path: Option<PathBuf>,
    /// The registrations generation the state file holds.
    durable: tokio::sync::watch::Sender<u64>,
    /// The last write error, until a write succeeds.
    write_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    expiry_interval: Duration,
}

impl EmbeddedStore {
    /// Opens the store: the static `records`, plus the registrations of the
    /// state file at `path` when given (see the module docs for the history).
    pub(crate) fn open(
        records: Vec<HostRecord>,
        path: Option<PathBuf>,
        history_limit: usize,
        expiry_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> EmbeddedStore {
        let loaded = match &path {
            Some(p) => state::load(p, now_unix_ms()),
            None => state::Loaded::default(),
        };
        if loaded.corrupt.is_some() {
            metrics.store_error("corrupt");
        }
        let history = match (&loaded.history, loaded.clean) {
            (Some(h), true) => h.clone(),
            _ => new_history(),
        };
        if let Some(p) = &path {
            if loaded.version > 0 {
                tracing::info!(
                    path = %p.display(),
                    restored = loaded.leases.len(),
                    expired = loaded.expired,
                    history,
                    same_history = loaded.clean && loaded.history.is_some(),
                    "registrations restored from the state file"
                );
            }
        }
        // Continue after the saved version: a replica of the previous run
        // at that version gets `410` (its delta would have to start before
        // what this run knows), never a delta.
        let store =
            Store::with_registrations(records, loaded.leases, loaded.version + 1, history_limit)
                .with_history(history.clone());
        let store = Arc::new(store);
        if let Some(p) = &path {
            // Marks the file as belonging to a running (not clean) run
            // before anything is served, so a crash from here on starts a new
            // history next time.
            if let Err(e) = state::save(p, &history, store.version(), false, store.registrations())
            {
                metrics.store_error("write");
                tracing::error!(path = %p.display(), error = %e, "cannot write the state file");
            }
        }
        let generation = *store.subscribe_registrations().borrow();
        EmbeddedStore {
            store,
            path,
            durable: tokio::sync::watch::channel(generation).0,
            write_error: Mutex::new(None),
            metrics,
            expiry_interval,
        }
    }

    /// The in-memory store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Waits until the state file holds every registration change made so far.
    async fn durable(&self) -> Result<(), StoreError> {
        if self.path.is_none() {
            return Ok(());
        }
        let target = *self.store.subscribe_registrations().borrow();
        let mut rx = self.durable.subscribe();
        let done = tokio::time::timeout(DURABLE_TIMEOUT, async {
            rx.wait_for(|g| *g >= target).await.is_ok()
        })
        .await;
        match done {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable {
                reason: self
                    .write_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| "the state file write is late".into()),
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    fn save_blocking(&self, clean: bool) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let snapshot = self.store.snapshot();
        state::save(
            path,
            &snapshot.history,
            snapshot.version,
            clean,
            self.store.registrations(),
        )
    }
}

impl RegistryStore for EmbeddedStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.subscribe()
    }

    fn changes_since(&self, since: u64) -> Result<Delta, Gone> {
        self.store.changes_since(since)
    }

    fn registration_count(&self) -> usize {
        self.store.registration_count()
    }

    fn register(&self, r: Registration) -> BoxFuture<'_, Result<Ack, StoreError>> {
        Box::pin(async move {
            let change = self
                .store
                .register(r.ip, r.record, r.lease_seconds, now_unix_ms());
            let version = change.map_or_else(|| self.store.version(), |c| c.version);
            self.durable().await?;
            Ok(Ack { version })
        })
    }

    fn renew(
        &self,
        ip: IpAddr,
        lease_seconds: Option<u64>,
    ) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let Some(lease) = self.store.renew(ip, lease_seconds, now_unix_ms()) else {
                return Ok(None);
            };
            self.durable().await?;
            Ok(Some(lease))
        })
    }

    fn deregister(&self, ip: IpAddr) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let (was, _) = self.store.deregister(ip);
            if was {
                self.durable().await?;
            }
            Ok(was)
        })
    }

    fn replace_static(
        &self,
        records: Vec<HostRecord>,
    ) -> BoxFuture<'_, Result<StaticOutcome, StoreError>> {
        Box::pin(async move {
            let before = self.store.static_count();
            let change = self.store.replace_all(records);
            Ok(StaticOutcome {
                before,
                after: self.store.static_count(),
                version: change.map(|c| c.version),
            })
        })
    }

    fn health(&self) -> Health {
        match &*self.write_error.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Health::Stale {
                reason: format!("cannot write the state file: {e}"),
            },
            None => Health::Ok,
        }
    }

    fn start(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let interval = me.expiry_interval.max(Duration::from_millis(10));
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (expired, change) = me.store.expire(now_unix_ms());
                if !expired.is_empty() {
                    me.metrics.expiries.inc_by(expired.len() as u64);
                    if let Some(c) = change {
                        tracing::info!(
                            expired = expired.len(),
                            version = c.version,
                            "leases expired"
                        );
                    }
                }
            }
        }));
        if self.path.is_some() {
            let me = self;
            tasks.push(tokio::spawn(async move {
                let mut changed = me.store.subscribe_registrations();
                loop {
                    let target = *changed.borrow_and_update();
                    if target <= *me.durable.borrow() {
                        if changed.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // One write for everything changed up to `target`: the
                    // registrations that arrive meanwhile share the next one.
                    let writer = me.clone();
                    let result =
                        tokio::task::spawn_blocking(move || writer.save_blocking(false)).await;
                    match result {
                        Ok(Ok(())) => {
                            *me.write_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            me.durable.send_replace(target);
                        }
                        Ok(Err(e)) => {
                            me.metrics.store_error("write");
                            tracing::error!(error = %e, "cannot write the state file; retrying");
                            *me.write_error.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(e.to_string());
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "state writer failed");
                            return;
                        }
                    }
                }
            }));
        }
        tasks
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = tokio::task::block_in_place(|| self.save_blocking(true)) {
                tracing::error!(error = %e, "cannot write the state file at shutdown");
            }
        })
    }
}
