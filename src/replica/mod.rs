//! Replica mode: the whole registry in memory, synced by snapshot plus
//! long-polled deltas (see ARCHITECTURE.md, "Where is that IP").
//!
//! [`Replica`] and its lookups and stats are here; [`ReplicaBuilder`] (the
//! settings and the start), the sync thread, the cache file, the
//! protection against mass deletion and [`ReplicaView`] each have a file
//! of their own.
//!
//! A [`Replica`] fetches `GET /v1/registry` once, then asks
//! `GET /v1/registry?since=N&wait=S` in a loop on one background thread
//! (a plain `std::thread`: no async runtime, the library is loaded into
//! JVMs). Lookups never touch the network: they run a longest-prefix match
//! on an immutable [`ReplicaView`] (exact IP first, then the narrowest
//! CIDR). Each delta is applied to a *copy* of the current view and the copy
//! is swapped in with one atomic pointer store ([`arc_swap::ArcSwap`]), so
//! readers never block, never wait for the sync thread, and never see a
//! half-applied delta: a lookup sees version N or version N+1, nothing in
//! between.
//!
//! * Connection settings come from the [`ServiceConfig`]; what it leaves
//!   unset defaults larger than for the lookup client, since a snapshot is
//!   the whole registry: `per_phase` 10 s (also the slack added to a long
//!   poll's wait), response cap 256 MiB.
//! * Requests start at least `min_poll_interval` apart (default 200 ms), so
//!   one replica's load on the service is bounded by that rate however fast
//!   the registry changes; changes within the interval arrive as one delta.
//! * `410 Gone` (the replica fell behind the service's retained history):
//!   the whole registry is fetched again.
//! * Any error: the replica keeps serving the last view it has, counts the
//!   error, and retries after a jittered, capped exponential backoff
//!   (default 100 ms doubling to 30 s; endpoints are tried in turn).
//! * With a [`cache_file`](ReplicaBuilder::cache_file), the view served is
//!   written atomically (a temporary file in the same directory, fsync,
//!   rename) after the first sync and every fetched snapshot, at most every
//!   `cache_write_interval` after deltas, and at least every
//!   `cache_interval` (default 5 min) while syncs succeed, even when nothing
//!   changed, so a stable registry still leaves a fresh file. When the
//!   service is unreachable at start, the replica starts from that file, so
//!   a restart during an outage still answers. Its age is
//!   [`ReplicaStats::cache_age`]; a missing, corrupt or unreadable file is
//!   reported as such ([`ReplicaStats::cache`], [`Replica::last_error`],
//!   [`ClientError::NoReplicaData`] when nothing else gave data).
//! * **Protection against mass deletion.** The replica remembers its
//!   *normal* record count: the largest count the service gave it within
//!   `protection_window` (default 6 h), kept as the largest count of each
//!   of 36 buckets (10 min by default): an instantaneous maximum, so a
//!   deploy that doubles the fleet and then halves it does not double the
//!   normal count. When
//!   what the service says would leave fewer than `enter` × normal records
//!   (default 0.35), the replica is *protected*: it keeps serving its last
//!   healthy view plus every new or changed record, and holds the deletes
//!   ([`ReplicaStats::protected`], [`ReplicaStats::held_deletes`],
//!   [`ReplicaStats::protected_since`]). A delta and a whole snapshot (after
//!   `410`, a restarted service) are judged alike. When the service's count
//!   is back to at least `leave` × normal (default 0.75), the replica serves
//!   the service's view again: the held deletes still deleted then are
//!   applied, the others were re-added meanwhile. A collapse that outlasts
//!   the window becomes the new normal and is applied. Registries whose
//!   normal count is below `protection_min_records` (default 10) are never
//!   protected; [`ReplicaBuilder::protection`] `(false)` turns it off.
//! * Dropping the [`Replica`] stops the thread: it is woken from a backoff
//!   sleep at once, and a long poll in flight ends within `poll_wait`. The
//!   drop waits at most 250 ms for the thread and otherwise lets it finish
//!   its last request on its own (it touches nothing once stopped).
//!
//! ```no_run
//! use envid::client::ServiceConfig;
//! use envid::replica::Replica;
//! let config = ServiceConfig::builder()
//!     .endpoint("http://envsvc.cn0.example:7070")
//!     .build()?;
//! let replica = Replica::builder(config)
//!     .cache_file("/var/cache/envid/registry.json")
//!     .build()?;
//! if let Some(rec) = replica.lookup("10.1.2.3".parse().unwrap()) {
//!     println!("{} {}", rec.env, rec.idc);
//! }
//! let stats = replica.stats();
//! println!("replica at version {}", stats.version);
//! if stats.protected {
//!     println!("holding {} deletes since {:?}", stats.held_deletes, stats.protected_since);
//! }
//! # Ok::<(), envid::client::ClientError>(())
//! ```

mod builder;
mod cache_file;
pub(crate) mod follow;
pub(crate) mod protection;
mod settings;
mod sync;
mod view;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

pub(crate) use builder::http_transport;
pub use builder::ReplicaBuilder;
pub(crate) use settings::Settings;
pub use view::ReplicaView;

use crate::client::{ClientError, ServiceConfig};
use crate::protocol::HostRecord;
use sync::Syncer;

/// Counters and state of a [`Replica`], read with [`Replica::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// The registry version being served (0 before any data).
    pub version: u64,
    /// Records being served.
    pub records: usize,
    /// Time since the last successful exchange with the service (a
    /// snapshot, a delta or an empty long poll); `None` when there has been
    /// none yet (for example, serving from the cache file during an outage).
    pub age: Option<Duration>,
    /// Successful exchanges with the service.
    pub syncs: u64,
    /// Whole-registry fetches (the first one, after `410 Gone`, after the cache file).
    pub snapshots: u64,
    /// Non-empty deltas applied.
    pub deltas: u64,
    /// Failed requests to the service (each followed by a backoff).
    pub sync_errors: u64,
    /// Whether the data being served came from the cache file (no successful
    /// sync with the service since start).
    pub from_cache: bool,
    /// Cache files that could not be read or written.
    pub cache_errors: u64,
    /// Whether the replica is protecting its view against a mass deletion
    /// (see the [module documentation](self)).
    pub protected: bool,
    /// Deletes held back while protected (records still served that the
    /// service no longer has); 0 when not protected.
    pub held_deletes: usize,
    /// When the current protection started; `None` when not protected.
    pub protected_since: Option<SystemTime>,
    /// The recent normal record count protection compares with (the
    /// largest count within the protection window).
    pub normal_records: usize,
    /// The state of the cache file.
    pub cache: CacheFileStatus,
    /// How old the cache file's content is (since it was written, by this
    /// replica or, when started from it, by an earlier one); `None` when
    /// there is no usable file.
    pub cache_age: Option<Duration>,
}

/// The state of a replica's cache file, in [`ReplicaStats::cache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheFileStatus {
    /// No cache file is configured.
    #[default]
    Unused,
    /// The file is not there yet (the service gave data before the first
    /// write, or it could not be read at start because it does not exist).
    Missing,
    /// The file was there at start but is not a replica cache (it was
    /// ignored).
    Corrupt,
    /// The file could not be read or written (permissions, disk full).
    Unusable,
    /// The file holds a view of the registry ([`ReplicaStats::cache_age`] says how old).
    Present,
}

impl CacheFileStatus {
    /// A lowercase word for it (`unused`, `missing`, `corrupt`,
    /// `unusable`, `present`), as the CLI, C and Java print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheFileStatus::Unused => "unused",
            CacheFileStatus::Missing => "missing",
            CacheFileStatus::Corrupt => "corrupt",
            CacheFileStatus::Unusable => "unusable",
            CacheFileStatus::Present => "present",
        }
    }
}

impl std::fmt::Display for CacheFileStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`ReplicaStats`] says of protection and the cache file, kept by the
/// sync thread (read under a short lock by `stats()`, never by lookups).
#[derive(Clone, Copy, Debug, Default)]
struct Status {
    protected_since: Option<SystemTime>,
    held_deletes: usize,
    normal_records: usize,
    cache: CacheFileStatus,
    cache_written: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    snapshots: AtomicU64,
    deltas: AtomicU64,
    sync_errors: AtomicU64,
    cache_errors: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    view: ArcSwap<ReplicaView>,
    counters: Counters,
    from_cache: AtomicBool,
    last_sync: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    status: Mutex<Status>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            view: ArcSwap::from_pointee(ReplicaView::default()),
            counters: Counters::default(),
            from_cache: AtomicBool::new(false),
            last_sync: Mutex::new(None),
            last_error: Mutex::new(None),
            status: Mutex::new(Status::default()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps up to `d`; returns `true` when stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        while !*stop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stop = self
                .wake
                .wait_timeout(stop, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn synced(&self) {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.from_cache.store(false, Ordering::Relaxed);
        *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

/// A local, in-memory copy of the registry kept in sync in the background.
/// Lookups are lock-free and never touch the network. Share one per process;
/// dropping it stops the sync thread. See the [module documentation](self).
pub struct Replica {
    shared: Arc<Shared>,
    /// The sync state when there is no background thread.
    sync: Option<Mutex<Syncer>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A builder over `config`, with the defaults of the module documentation.
    pub fn builder(config: ServiceConfig) -> ReplicaBuilder {
        ReplicaBuilder::new(config)
    }

    /// The most specific record for `ip` (exact address, else the narrowest
    /// range), or `None` when the registry has none. Never blocks.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<HostRecord>> {
        self.shared.view.load().lookup(ip).cloned()
    }

    /// The current view, for several lookups against one consistent version.
    pub fn view(&self) -> Arc<ReplicaView> {
        self.shared.view.load_full()
    }

    /// The registry version being served.
    pub fn version(&self) -> u64 {
        self.shared.view.load().version
    }

    /// The counters and state so far.
    pub fn stats(&self) -> ReplicaStats {
        let c = &self.shared.counters;
        let view = self.shared.view.load();
        let status = *self.shared.status();
        ReplicaStats {
            version: view.version,
            records: view.len(),
            age: self
                .shared
                .last_sync
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|t| t.elapsed()),
            syncs: c.syncs.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            deltas: c.deltas.load(Ordering::Relaxed),
            sync_errors: c.sync_errors.load(Ordering::Relaxed),
            from_cache: self.shared.from_cache.load(Ordering::Relaxed),
            cache_errors: c.cache_errors.load(Ordering::Relaxed),
            protected: status.protected_since.is_some(),
            held_deletes: status.held_deletes,
            protected_since: status.protected_since,
            normal_records: status.normal_records,
            cache: status.cache,
            cache_age: status
                .cache_written
                .map(|t| SystemTime::now().duration_since(t).unwrap_or_default()),
        }
    }

    /// The last sync or cache file problem, as a sentence (kept after recovery).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Without a background thread ([`ReplicaBuilder::background_sync`]
    /// `false`): one exchange with the service now (a snapshot if needed,
    /// else a long poll of at most `poll_wait`). With a thread it does
    /// nothing and returns `Ok`.
    pub fn sync_once(&self) -> Result<(), ClientError> {
        match &self.sync {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).step(),
            None => Ok(()),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // Bounded: a long poll in flight cannot be interrupted; the thread
            // then ends on its own when it returns, touching nothing.
            let deadline = Instant::now() + Duration::from_millis(250);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_wakes_on_stop() {
        let shared = Arc::new(Shared::new());
        assert!(!shared.sleep(Duration::from_millis(10)));
        let s2 = shared.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        *shared.stop.lock().unwrap() = true;
        shared.wake.notify_all();
        assert!(t.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
