//! The embedded store: one machine, the records in memory (a [`Records`]),
//! the registrations in a local state file.
//!
//! **Durable acknowledgements by group commit** (`group_commit.rs`): a
//! write is answered once its log entry is fsynced, and the writes that
//! arrive during one fsync share the next. A home-made log on the library's
//! atomic file rather than redb or fjall: registrations are one small table
//! rewritten whole, and need neither a page cache nor an LSM's compaction,
//! nor their dependencies in every service build. `state.rs` holds the
//! files' format: the state file, its log, and loading them at start.
//!
//! **Versions never lie.** A change is visible (to lookups and long polls)
//! before it is written, so a crash can lose versions a replica has seen.
//! The file names its history and whether the run that wrote it shut down
//! cleanly; after a crash or a corrupt file the store starts a new history,
//! and a replica's `since=N` from the old one gets `410`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use envid::protocol::{canonical_ip, HostRecord};

use self::group_commit::GroupCommit;
use self::state::LogEntry;
use crate::metrics::Metrics;
use crate::store::records::{Change, Lease, LeaseDue, Records};
use crate::store::{
    now_unix_ms, Ack, BoxFuture, Durable, Health, Owns, Registration, RegistryStore, Renewed,
    StaticOutcome, StoreErrorNote, StoreStatus,
};

mod group_commit;
mod state;

/// A new history id: 16 hex digits, different on every call.
fn new_history() -> String {
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
    records: Arc<Records>,
    /// The state file and its log.
    log: Arc<GroupCommit>,
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
            Records::with_registrations(records, loaded.leases, loaded.version + 1, history_limit)
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
            records: store,
            log: Arc::new(GroupCommit::new(path, metrics)),
        }
    }

    /// [`GroupCommit::logged`] on this store's records.
    fn logged<T>(&self, f: impl FnOnce(&Records) -> (T, Vec<LogEntry>)) -> (T, u64) {
        self.log.logged(&self.records, f)
    }
}

impl RegistryStore for EmbeddedStore {
    fn records(&self) -> Arc<Records> {
        self.records.clone()
    }

    fn register(&self, r: Registration) -> Durable<'_, Ack> {
        Box::pin(async move {
            let now = now_unix_ms();
            let ip = canonical_ip(r.ip);
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
            let version = change.map_or_else(|| self.records.version(), |c| c.version);
            self.log.durable(n).await?;
            Ok(Ack {
                version,
                lease_seconds: r.lease_seconds,
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
            let ip = canonical_ip(ip);
            let now = now_unix_ms();
            let (renewed, n) = self.logged(|s| {
                // The record comes out of the same locked step as the
                // renewal: it is the registration renewed, not whatever the
                // IP holds by the time the caller signs.
                let owner = owner.map(|o| o as &dyn Fn(&HostRecord) -> bool);
                let renewed = s.renew_owned(ip, owner, registration, now);
                let entries = match &renewed {
                    Ok(Some((l, _))) => vec![LogEntry::Renew {
                        ip,
                        lease_seconds: *l,
                        expires_unix_ms: now.saturating_add(l.saturating_mul(1000)),
                    }],
                    _ => Vec::new(),
                };
                (renewed, entries)
            });
            let renewed = renewed?;
            self.log.durable(n).await?;
            Ok(renewed.map(|(lease_seconds, record)| Renewed {
                lease_seconds,
                record,
            }))
        })
    }

    fn deregister<'a>(
        &'a self,
        ip: IpAddr,
        owner: Option<Owns<'a>>,
        registration: Option<&'a str>,
    ) -> Durable<'a, bool> {
        Box::pin(async move {
            let ip = canonical_ip(ip);
            let (was, n) = self.logged(|s| {
                let owner = owner.map(|o| o as &dyn Fn(&HostRecord) -> bool);
                match s.deregister_owned(ip, owner, registration) {
                    Ok((true, _)) => (Ok(true), vec![LogEntry::Delete { ip }]),
                    Ok((false, _)) => (Ok(false), Vec::new()),
                    Err(e) => (Err(e), Vec::new()),
                }
            });
            let was = was?;
            self.log.durable(n).await?;
            Ok(was)
        })
    }

    fn replace_static(&self, records: Vec<HostRecord>) -> Durable<'_, StaticOutcome> {
        Box::pin(async move {
            let before = self.records.static_count();
            let change = self.records.replace_all(records);
            Ok(StaticOutcome {
                before,
                after: self.records.static_count(),
                version: change.map(|c| c.version),
            })
        })
    }

    fn lease_due(&self, now_ms: u64) -> LeaseDue {
        self.records.lease_due(now_ms)
    }

    /// Logged, but not waited for: nobody is answered.
    fn expire(&self, now_ms: u64) -> (Vec<IpAddr>, Option<Arc<Change>>) {
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

    fn health(&self) -> Health {
        match self.log.write_error() {
            Some(e) => Health::Stale {
                reason: format!("cannot write the state file: {e}"),
            },
            None => Health::Ok,
        }
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            kind: "embedded",
            persistent: Some(self.log.is_on()),
            last_error: self.log.write_error().map(|e| StoreErrorNote {
                message: format!("cannot write the state file: {e}"),
                at_unix_ms: None,
            }),
            ..StoreStatus::default()
        }
    }

    fn start(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if self.log.is_on() {
            let log = self.log.clone();
            tasks.push(tokio::spawn(log.write_loop(self.records.clone())));
        }
        tasks
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Everything in memory goes to the state file, marked clean; the
            // log it supersedes is emptied.
            let saved = tokio::task::block_in_place(|| self.log.close(&self.records));
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot write the state file at shutdown");
            }
        })
    }
}
