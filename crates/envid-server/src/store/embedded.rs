//! The embedded store: one machine, the records in memory (a [`Store`]),
//! the registrations in a local state file (see `state.rs`).
//!
//! **Durable acknowledgements by group commit.** A write is applied in
//! memory and queued as a log entry (under one lock, so the log's order is
//! memory's order); one writer task appends whatever is queued to
//! `<state>.log` and fsyncs it, then acknowledges every write it held. The
//! writes that arrive while one append runs share the next fsync: a durable
//! write costs a fraction of an fsync, whatever the registry's size. When
//! the log outgrows the state file, the state file is rewritten whole
//! (atomically, see `envid::atomic_file`) and the log emptied: O(n) once
//! per O(n) entries. A home-made log on the library's atomic file rather
//! than redb or fjall: registrations are one small table rewritten whole,
//! and need neither a page cache nor an LSM's compaction, nor their
//! dependencies in every service build.
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
    now_unix_ms, Ack, BoxFuture, Delta, Gone, Health, Lease, Registration, RegistryStore, Snapshot,
    StaticOutcome, Store, StoreError,
};
use crate::metrics::Metrics;
use crate::state::{self, LogEntry};

/// Log entries waiting for the writer, numbered.
#[derive(Debug, Default)]
struct Queue {
    entries: Vec<LogEntry>,
    /// The number of the last entry queued (1 for the first).
    last: u64,
}

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
    /// The number of the last log entry on disk.
    durable: tokio::sync::watch::Sender<u64>,
    queue: Mutex<Queue>,
    queued: tokio::sync::Notify,
    /// The last write error, until a write succeeds.
    write_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl EmbeddedStore {
    /// Opens the store: the static `records`, plus the registrations of the
    /// state file at `path` when given (see the module docs for the history).
    pub(crate) fn open(
        records: Vec<HostRecord>,
        path: Option<PathBuf>,
        history_limit: usize,
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
            // history next time; the log it took in is emptied.
            let saved = state::save(p, &history, store.version(), false, store.registrations())
                .and_then(|()| state::truncate_log(p));
            if let Err(e) = saved {
                metrics.store_error("write");
                tracing::error!(path = %p.display(), error = %e, "cannot write the state file");
            }
        }
        EmbeddedStore {
            store,
            path,
            durable: tokio::sync::watch::channel(0).0,
            queue: Mutex::new(Queue::default()),
            queued: tokio::sync::Notify::new(),
            write_error: Mutex::new(None),
            metrics,
        }
    }

    /// The in-memory store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// [`Store::lease_due`] (for the expiry sweep and self-preservation).
    pub(crate) fn lease_due(&self, now_ms: u64) -> (usize, usize, u64) {
        self.store.lease_due(now_ms)
    }

    /// [`Store::expire`], logged (not waited for: nobody is answered).
    pub(crate) fn expire(&self, now_ms: u64) -> (Vec<IpAddr>, Option<Arc<super::Change>>) {
        self.logged(|s| {
            let (expired, change) = s.expire(now_ms);
            let entries = expired
                .iter()
                .map(|ip| LogEntry::Delete { ip: *ip })
                .collect();
            ((expired, change), entries)
        })
        .0
    }

    /// Runs the in-memory write `f` and queues the log entries it returns,
    /// under one lock (so the log's order is memory's order). Returns the
    /// number to wait for.
    fn logged<T>(&self, f: impl FnOnce(&Store) -> (T, Vec<LogEntry>)) -> (T, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (out, entries) = f(&self.store);
        if self.path.is_none() || entries.is_empty() {
            return (out, 0);
        }
        q.last += entries.len() as u64;
        q.entries.extend(entries);
        let last = q.last;
        drop(q);
        self.queued.notify_one();
        (out, last)
    }

    /// Waits until log entry `n` is on disk.
    async fn durable(&self, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let mut rx = self.durable.subscribe();
        let done = tokio::time::timeout(DURABLE_TIMEOUT, async {
            rx.wait_for(|d| *d >= n).await.is_ok()
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
                    .unwrap_or_else(|| "the state log write is late".into()),
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// The writer: appends what is queued (one fsync per batch), and
    /// rewrites the state file when the log has grown past it.
    async fn write_loop(self: Arc<Self>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut log_bytes = 0u64;
        let mut state_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        loop {
            let (entries, last) = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                (std::mem::take(&mut q.entries), q.last)
            };
            if entries.is_empty() {
                self.queued.notified().await;
                continue;
            }
            let p = path.clone();
            let written = tokio::task::spawn_blocking(move || {
                state::append(&p, &entries).map_err(|e| (e, entries))
            })
            .await;
            match written {
                Ok(Ok(n)) => {
                    *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.durable.send_replace(last);
                    log_bytes += n;
                }
                Ok(Err((e, entries))) => {
                    self.metrics.store_error("write");
                    tracing::error!(error = %e, "cannot append to the state log; retrying");
                    *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(e.to_string());
                    // Put them back in front, in order.
                    {
                        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                        let later = std::mem::replace(&mut q.entries, entries);
                        q.entries.extend(later);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "state writer failed");
                    return;
                }
            }
            if log_bytes > (4 * state_bytes).max(1 << 20) {
                // Everything the log holds is in memory: the state file
                // takes it in, then the log starts over. A crash between the
                // two replays the old log over the new file: entries are
                // absolute states, and none later than the file is lost.
                let me = self.clone();
                let p = path.clone();
                let compacted = tokio::task::spawn_blocking(move || {
                    me.save_blocking(false)?;
                    state::truncate_log(&p)?;
                    Ok::<u64, std::io::Error>(std::fs::metadata(&p).map_or(0, |m| m.len()))
                })
                .await;
                match compacted {
                    Ok(Ok(size)) => {
                        state_bytes = size;
                        log_bytes = 0;
                    }
                    Ok(Err(e)) => {
                        self.metrics.store_error("write");
                        tracing::error!(error = %e, "cannot rewrite the state file");
                    }
                    Err(_) => return,
                }
            }
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

    fn static_deletions(&self, records: &[HostRecord]) -> (usize, usize) {
        self.store.static_deletions(records)
    }

    fn registration_count(&self) -> usize {
        self.store.registration_count()
    }

    fn register(&self, r: Registration) -> BoxFuture<'_, Result<Ack, StoreError>> {
        Box::pin(async move {
            let now = now_unix_ms();
            let ip = r.ip.to_canonical();
            let mut record = r.record;
            record.ip = Some(ip);
            record.cidr = None;
            let lease = Lease {
                record: record.clone(),
                lease_seconds: r.lease_seconds,
                expires_unix_ms: now.saturating_add(r.lease_seconds.saturating_mul(1000)),
            };
            let (change, n) = self.logged(|s| {
                (
                    s.register(ip, record, r.lease_seconds, now),
                    vec![LogEntry::Put {
                        lease: Box::new(lease),
                    }],
                )
            });
            let version = change.map_or_else(|| self.store.version(), |c| c.version);
            self.durable(n).await?;
            Ok(Ack {
                version,
                lease_seconds: r.lease_seconds,
            })
        })
    }

    fn renew<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let ip = ip.to_canonical();
            let now = now_unix_ms();
            let (lease, n) = self.logged(|s| {
                let lease = s.renew_owned(ip, owner, now);
                let entries = match &lease {
                    Ok(Some(l)) => vec![LogEntry::Renew {
                        ip,
                        lease_seconds: *l,
                        expires_unix_ms: now.saturating_add(l.saturating_mul(1000)),
                    }],
                    _ => Vec::new(),
                };
                (lease, entries)
            });
            let lease = lease.map_err(StoreError::NotOwner)?;
            self.durable(n).await?;
            Ok(lease)
        })
    }

    fn deregister<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let ip = ip.to_canonical();
            let (was, n) = self.logged(|s| match s.deregister_owned(ip, owner) {
                Ok((true, _)) => (Ok(true), vec![LogEntry::Delete { ip }]),
                Ok((false, _)) => (Ok(false), Vec::new()),
                Err(theirs) => (Err(StoreError::NotOwner(theirs)), Vec::new()),
            });
            let was = was?;
            self.durable(n).await?;
            Ok(was)
        })
    }

    fn static_record(&self, ip: IpAddr) -> Option<Arc<HostRecord>> {
        self.store.static_record(ip)
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
        if self.path.is_some() {
            tasks.push(tokio::spawn(self.write_loop()));
        }
        tasks
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Everything in memory goes to the state file, marked clean; the
            // log it supersedes is emptied.
            let saved = tokio::task::block_in_place(|| {
                self.save_blocking(true)?;
                match &self.path {
                    Some(p) => state::truncate_log(p),
                    None => Ok(()),
                }
            });
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot write the state file at shutdown");
            }
        })
    }
}
