//! Replica mode: the whole registry in memory, synced by snapshot plus
//! long-polled deltas (see ARCHITECTURE.md, "Where is that IP").
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
//! use envid::lookup::Replica;
//! use envid::client::ServiceConfig;
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::client::{
    decode, not_found, CacheProblem, ClientError, HttpTransport, Method, Request, ServiceConfig,
    Transport,
};
use crate::prefix::PrefixTable;
use crate::protocol::{
    registry_poll_path, HostRecord, RecordKey, RegistryDelta, RegistrySnapshot, REGISTRY_PATH,
};

/// One consistent version of the registry, as held by a [`Replica`].
/// Immutable: a new version is a new view.
#[derive(Clone, Debug, Default)]
pub struct ReplicaView {
    version: u64,
    /// The history `version` belongs to (see [`RegistrySnapshot::history`]).
    history: Option<String>,
    records: HashMap<RecordKey, Arc<HostRecord>>,
    table: PrefixTable<Arc<HostRecord>>,
}

impl ReplicaView {
    /// Builds a view from whole-registry records; a record with neither
    /// `ip` nor `cidr` is refused.
    pub(crate) fn from_records(
        version: u64,
        records: Vec<HostRecord>,
    ) -> Result<ReplicaView, String> {
        let mut view = ReplicaView {
            version,
            ..ReplicaView::default()
        };
        for rec in records {
            view.upsert(rec)?;
        }
        Ok(view)
    }

    fn upsert(&mut self, rec: HostRecord) -> Result<(), String> {
        let key = rec
            .key()
            .ok_or_else(|| "a record has neither `ip` nor `cidr`".to_string())?;
        let rec = Arc::new(rec);
        self.table.insert(key, rec.clone());
        self.records.insert(key, rec);
        Ok(())
    }

    /// A copy of this view with a delta applied (deletes, then upserts).
    pub(crate) fn apply(
        &self,
        version: u64,
        upserts: Vec<HostRecord>,
        deletes: &[RecordKey],
    ) -> Result<ReplicaView, String> {
        let mut next = self.clone();
        next.version = version;
        for key in deletes {
            next.table.remove(key);
            next.records.remove(key);
        }
        for rec in upserts {
            next.upsert(rec)?;
        }
        Ok(next)
    }

    /// The registry version this view is.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The history [`ReplicaView::version`] belongs to, when the service
    /// names one (see [`RegistrySnapshot::history`]).
    pub fn history(&self) -> Option<&str> {
        self.history.as_deref()
    }

    /// Number of records (single IPs and ranges).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The most specific record for `ip`: the exact address, else the
    /// narrowest range containing it.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<HostRecord>> {
        self.table.lookup(ip)
    }

    /// The record stored under exactly `key`.
    pub fn get(&self, key: &RecordKey) -> Option<&Arc<HostRecord>> {
        self.records.get(key)
    }

    /// Every record, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = &Arc<HostRecord>> {
        self.records.values()
    }
}

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

/// A replica's default `per_phase` timeout: a snapshot is the whole registry.
const REPLICA_PER_PHASE_TIMEOUT: Duration = Duration::from_secs(10);
/// A replica's default response cap.
const REPLICA_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// The sync settings of a replica (the connection settings are its
/// [`ServiceConfig`]).
#[derive(Clone, Debug)]
struct Settings {
    poll_wait: Duration,
    min_poll_interval: Duration,
    backoff: Duration,
    max_backoff: Duration,
    cache_file: Option<PathBuf>,
    cache_write_interval: Duration,
    cache_interval: Duration,
    require_initial_sync: bool,
    background_sync: bool,
    protection: bool,
    protection_enter: f64,
    protection_leave: f64,
    protection_window: Duration,
    protection_min_records: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_wait: Duration::from_secs(10),
            min_poll_interval: Duration::from_millis(200),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            cache_file: None,
            cache_write_interval: Duration::from_secs(10),
            cache_interval: Duration::from_secs(300),
            require_initial_sync: true,
            background_sync: true,
            protection: true,
            protection_enter: 0.35,
            protection_leave: 0.75,
            protection_window: Duration::from_secs(6 * 3600),
            protection_min_records: 10,
        }
    }
}

/// Builds a [`Replica`] from a [`ServiceConfig`]: the sync and cache file
/// settings.
#[derive(Clone, Debug)]
pub struct ReplicaBuilder {
    config: ServiceConfig,
    settings: Settings,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.settings.$name = v;
            self
        }
    };
}

impl ReplicaBuilder {
    /// Where the last snapshot is kept, for starts during an outage.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.cache_file = Some(path.into());
        self
    }
    setter!(/// How long the service may hold a long poll open when nothing
        /// changed (default 10 s, sent as whole seconds, at least 1). It also
        /// bounds how long the sync thread outlives a dropped replica.
        poll_wait: Duration);
    setter!(/// Least time between the starts of two requests of the sync
        /// thread (default 200 ms). Under churn this caps one replica at
        /// 1 / `min_poll_interval` requests a second, whatever the change
        /// rate, and batches the changes of that interval into one delta; a
        /// change after a quiet spell still arrives at once, since the
        /// long poll is already waiting.
        min_poll_interval: Duration);
    setter!(/// First backoff after an error, doubled on each further error,
        /// jittered ×0.5–1.5 (default 100 ms).
        backoff: Duration);
    setter!(/// Longest backoff (default 30 s).
        max_backoff: Duration);
    setter!(/// Least time between cache file writes after deltas (default 10 s;
        /// snapshots are always written).
        cache_write_interval: Duration);
    setter!(/// Longest time between two cache file writes while syncs succeed
        /// (default 5 min): the file is rewritten even when nothing changed,
        /// so its age says how recently the registry was seen.
        cache_interval: Duration);
    setter!(/// Whether the replica protects its view against mass deletion
        /// (default `true`; see the [module documentation](super::replica)).
        protection: bool);
    setter!(/// How far back the normal record count reaches (default 6 h).
        protection_window: Duration);
    setter!(/// Below this normal record count the replica is never protected
        /// (default 10): fractions of a handful of records mean nothing.
        protection_min_records: usize);

    /// The fractions of the normal record count under which protection
    /// starts (default 0.35) and at or above which it ends (default 0.75).
    /// `enter` is clamped to 0..=1 and `leave` to `enter`..=1.
    pub fn protection_thresholds(mut self, enter: f64, leave: f64) -> Self {
        let enter = if enter.is_nan() {
            0.0
        } else {
            enter.clamp(0.0, 1.0)
        };
        let leave = if leave.is_nan() {
            enter
        } else {
            leave.clamp(enter, 1.0)
        };
        self.settings.protection_enter = enter;
        self.settings.protection_leave = leave;
        self
    }

    setter!(/// Whether [`build`](Self::build) fails when neither the service
        /// nor the cache file gives data (default `true`). With `false` the
        /// replica starts empty (answering `None`) and keeps trying.
        require_initial_sync: bool);
    setter!(/// Whether a background thread keeps the replica in sync (default
        /// `true`). With `false` the replica is the one snapshot taken by
        /// `build` (or the cache file), refreshed only by [`Replica::sync_once`].
        background_sync: bool);

    /// Fetches the registry (or reads the cache file when the service is
    /// unreachable) and starts the sync thread, over the [`HttpTransport`]
    /// of the config.
    pub fn build(self) -> Result<Replica, ClientError> {
        let transport = HttpTransport::with_defaults(
            &self.config,
            REPLICA_PER_PHASE_TIMEOUT,
            REPLICA_MAX_RESPONSE_BYTES,
        );
        self.build_with_transport(Arc::new(transport))
    }

    /// [`build`](Self::build) over another transport (the config's
    /// endpoints are still the ones asked, in turn).
    pub fn build_with_transport(
        self,
        transport: Arc<dyn Transport>,
    ) -> Result<Replica, ClientError> {
        let shared = Arc::new(Shared::new());
        if self.settings.cache_file.is_some() {
            shared.status().cache = CacheFileStatus::Missing;
        }
        let sync = Syncer {
            shared: shared.clone(),
            transport,
            endpoints: self.config.endpoints().to_vec(),
            settings: self.settings,
            endpoint: 0,
            need_snapshot: true,
            dirty: false,
            last_cache_write: Instant::now(),
            guard: Guard::default(),
        };
        let mut replica = Replica {
            shared,
            sync: None,
            thread: None,
        };
        let mut sync = sync;
        // The first snapshot: every endpoint once, then the cache file.
        let mut first_error = None;
        for _ in 0..sync.endpoints.len() {
            match sync.step() {
                Ok(()) => {
                    first_error = None;
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            let mut problem = None;
            if let Some(path) = sync.settings.cache_file.clone() {
                match read_cache(&path) {
                    Ok((view, written)) => {
                        // The file's count is the normal one until the service says more.
                        sync.guard.observe(view.len(), &sync.settings);
                        let mut status = replica.shared.status();
                        status.cache = CacheFileStatus::Present;
                        status.cache_written = Some(written);
                        status.normal_records = sync.guard.normal();
                        drop(status);
                        replica.shared.view.store(Arc::new(view));
                        replica.shared.from_cache.store(true, Ordering::Relaxed);
                    }
                    Err(p) => {
                        if !matches!(p, CacheProblem::Missing) {
                            replica
                                .shared
                                .counters
                                .cache_errors
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        replica.shared.status().cache = match p {
                            CacheProblem::Missing => CacheFileStatus::Missing,
                            CacheProblem::Corrupt(_) => CacheFileStatus::Corrupt,
                            CacheProblem::Unreadable(_) => CacheFileStatus::Unusable,
                        };
                        replica
                            .shared
                            .error(format!("ignoring cache file {}: {p}", path.display()));
                        problem = Some((path, p));
                    }
                }
            }
            if sync.settings.require_initial_sync
                && !replica.shared.from_cache.load(Ordering::Relaxed)
            {
                return Err(match problem {
                    Some((path, problem)) => ClientError::NoReplicaData {
                        service: Box::new(e),
                        path: path.display().to_string(),
                        problem,
                    },
                    None => e,
                });
            }
        }
        if sync.settings.background_sync {
            let thread = std::thread::Builder::new()
                .name("envid-replica".into())
                .spawn(move || sync.run())
                .map_err(|e| ClientError::Io {
                    endpoint: String::new(),
                    message: format!("cannot start the replica thread: {e}"),
                })?;
            replica.thread = Some(thread);
        } else {
            replica.sync = Some(Mutex::new(sync));
        }
        Ok(replica)
    }
}

/// The sync loop's state (owned by the sync thread, or by the replica when
/// there is no thread).
struct Syncer {
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    /// The config's endpoints, tried in turn.
    endpoints: Vec<String>,
    settings: Settings,
    /// Index of the endpoint in use.
    endpoint: usize,
    need_snapshot: bool,
    /// Deltas applied since the cache file was last written.
    dirty: bool,
    last_cache_write: Instant,
    guard: Guard,
}

/// Protection against mass deletion: the recent normal count, and while
/// protected, the service's own view beside the one served.
#[derive(Default)]
struct Guard {
    /// (bucket start, largest count seen in it), oldest first.
    buckets: VecDeque<(Instant, usize)>,
    /// While protected: the service's view (the served one holds more).
    actual: Option<Arc<ReplicaView>>,
    /// While protected: keys served that the service deleted.
    held: HashSet<RecordKey>,
    since: Option<SystemTime>,
}

impl Guard {
    /// Records a count the service gave; forgets buckets past the window.
    fn observe(&mut self, count: usize, s: &Settings) {
        let now = Instant::now();
        let bucket = (s.protection_window / 36).max(Duration::from_millis(1));
        match self.buckets.back_mut() {
            Some((start, max)) if now.duration_since(*start) < bucket => *max = (*max).max(count),
            _ => self.buckets.push_back((now, count)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| now.duration_since(*start) > s.protection_window)
            && self.buckets.len() > 1
        {
            self.buckets.pop_front();
        }
    }

    /// The largest count within the window.
    fn normal(&self) -> usize {
        self.buckets.iter().map(|b| b.1).max().unwrap_or(0)
    }
}

/// What the service said: a new whole view, or a delta to the last one.
enum Said {
    Snapshot(ReplicaView),
    Delta(RegistryDelta),
}

enum Fetched {
    Snapshot(ReplicaView),
    Delta(RegistryDelta),
    Gone,
}

impl Syncer {
    fn run(mut self) {
        let mut backoff = self.settings.backoff;
        while !self.shared.stopped() {
            let started = Instant::now();
            match self.step() {
                Ok(()) => {
                    backoff = self.settings.backoff;
                    let pause = self
                        .settings
                        .min_poll_interval
                        .saturating_sub(started.elapsed());
                    if !pause.is_zero() && self.shared.sleep(pause) {
                        break;
                    }
                }
                Err(_) => {
                    let pause = backoff
                        .mul_f64(0.5 + fastrand::f64())
                        .min(self.settings.max_backoff);
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    if self.shared.sleep(pause) {
                        break;
                    }
                }
            }
        }
    }

    /// One exchange with the current endpoint: a snapshot or a long poll.
    /// On error moves to the next endpoint (the caller backs off).
    fn step(&mut self) -> Result<(), ClientError> {
        let endpoint = self.endpoints[self.endpoint % self.endpoints.len()].clone();
        let fetched = if self.need_snapshot {
            self.fetch_snapshot(&endpoint).map(Fetched::Snapshot)
        } else {
            let view = self.shared.view.load();
            self.poll(&endpoint, view.version, view.history.as_deref())
        };
        if self.shared.stopped() {
            return Ok(());
        }
        let outcome = fetched.and_then(|f| self.install(&endpoint, f));
        match &outcome {
            Ok(()) => {
                let since = self.last_cache_write.elapsed();
                if (self.dirty && since >= self.settings.cache_write_interval)
                    || since >= self.settings.cache_interval
                {
                    self.write_cache();
                }
            }
            Err(e) => {
                self.shared
                    .counters
                    .sync_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.error(e.to_string());
                self.endpoint = self.endpoint.wrapping_add(1);
            }
        }
        outcome
    }

    fn install(&mut self, endpoint: &str, fetched: Fetched) -> Result<(), ClientError> {
        let invalid = |message: String| ClientError::Decode {
            endpoint: endpoint.to_string(),
            message,
        };
        match fetched {
            Fetched::Snapshot(view) => {
                self.publish(Said::Snapshot(view)).map_err(invalid)?;
                self.shared
                    .counters
                    .snapshots
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.synced();
                self.need_snapshot = false;
                self.write_cache();
            }
            Fetched::Gone => {
                // Behind the retained history: the whole registry again, now.
                self.need_snapshot = true;
                self.shared.synced();
            }
            Fetched::Delta(delta) => {
                let current = self.actual();
                if delta.history.is_some() && delta.history != current.history {
                    // A delta against another history (a service that forgot
                    // ours): never applied; start over from a snapshot.
                    self.need_snapshot = true;
                } else if delta.version < current.version {
                    // The service went back in time (restarted from its file):
                    // our version means nothing to it any more.
                    self.need_snapshot = true;
                } else if delta.is_empty() {
                    // While protected, an empty poll is judged again too, so a
                    // collapse that outlasts the window ends without a change.
                    if delta.version != current.version || self.guard.actual.is_some() {
                        self.publish(Said::Delta(delta)).map_err(invalid)?;
                    }
                } else {
                    self.publish(Said::Delta(delta)).map_err(invalid)?;
                    self.shared.counters.deltas.fetch_add(1, Ordering::Relaxed);
                    self.dirty = true;
                }
                self.shared.synced();
            }
        }
        Ok(())
    }

    /// The service's view as far as the replica knows it (the served one
    /// unless protected).
    fn actual(&self) -> Arc<ReplicaView> {
        match &self.guard.actual {
            Some(a) => a.clone(),
            None => self.shared.view.load_full(),
        }
    }

    /// Applies what the service said, deciding whether to serve it or to
    /// protect the view served, and swaps the served view in.
    fn publish(&mut self, said: Said) -> Result<(), String> {
        let base = self.actual();
        let (actual, delta) = match said {
            Said::Snapshot(view) => (Arc::new(view), None),
            Said::Delta(d) => {
                let next = base.apply(d.version, d.upserts.clone(), &d.deletes)?;
                (Arc::new(next), Some(d))
            }
        };
        let s = &self.settings;
        self.guard.observe(actual.len(), s);
        let normal = self.guard.normal();
        let guarded = s.protection && normal >= s.protection_min_records.max(1);
        let count = actual.len() as f64;
        let protect = guarded
            && if self.guard.actual.is_some() {
                count < s.protection_leave * normal as f64
            } else {
                count < s.protection_enter * normal as f64
            };
        let served_before = self.shared.view.load_full();
        if !protect {
            self.guard.since = None;
            self.guard.actual = None;
            self.guard.held.clear();
            self.shared.view.store(actual.clone());
        } else {
            let entering = self.guard.actual.is_none();
            // The served view: the last one plus every new or changed
            // record; what the service deleted stays, held.
            let served = match (delta, entering) {
                (Some(d), false) => {
                    for k in &d.deletes {
                        if served_before.get(k).is_some() {
                            self.guard.held.insert(*k);
                        }
                    }
                    for r in &d.upserts {
                        if let Some(k) = r.key() {
                            self.guard.held.remove(&k);
                        }
                    }
                    served_before.apply(d.version, d.upserts, &[])?
                }
                _ => {
                    let mut next = served_before.apply(
                        actual.version,
                        actual.records().map(|r| (**r).clone()).collect(),
                        &[],
                    )?;
                    next.version = actual.version;
                    self.guard.held = served_before
                        .records
                        .keys()
                        .filter(|k| actual.get(k).is_none())
                        .copied()
                        .collect();
                    next
                }
            };
            if entering {
                self.guard.since = Some(SystemTime::now());
                self.shared.error(format!(
                    "protecting the view against a mass deletion: the service has {} records, \
                     the normal count is {normal}; holding {} deletes",
                    actual.len(),
                    self.guard.held.len()
                ));
            }
            self.guard.actual = Some(actual);
            self.shared.view.store(Arc::new(served));
        }
        let mut status = self.shared.status();
        status.protected_since = self.guard.since;
        status.held_deletes = self.guard.held.len();
        status.normal_records = normal;
        Ok(())
    }

    fn fetch_snapshot(&self, endpoint: &str) -> Result<ReplicaView, ClientError> {
        let bytes = self
            .transport
            .send(&Request::new(Method::Get, endpoint, REGISTRY_PATH))?
            .ok_or_else(|| not_found(endpoint))?;
        let body: RegistrySnapshot = decode(endpoint, &bytes)?;
        let mut view =
            ReplicaView::from_records(body.version, body.records).map_err(|message| {
                ClientError::Decode {
                    endpoint: endpoint.to_string(),
                    message,
                }
            })?;
        view.history = body.history;
        Ok(view)
    }

    fn poll(
        &self,
        endpoint: &str,
        since: u64,
        history: Option<&str>,
    ) -> Result<Fetched, ClientError> {
        let wait = self.settings.poll_wait.as_secs().max(1);
        let path = registry_poll_path(since, wait, history);
        let request =
            Request::new(Method::Get, endpoint, &path).long_poll(Duration::from_secs(wait));
        match self.transport.send(&request) {
            Ok(Some(bytes)) => Ok(Fetched::Delta(decode(endpoint, &bytes)?)),
            Ok(None) => Err(not_found(endpoint)),
            Err(ClientError::Status { status: 410, .. }) => Ok(Fetched::Gone),
            Err(e) => Err(e),
        }
    }

    fn write_cache(&mut self) {
        let Some(path) = self.settings.cache_file.clone() else {
            return;
        };
        self.last_cache_write = Instant::now();
        self.dirty = false;
        let written = SystemTime::now();
        match write_cache(&path, &self.shared.view.load(), written) {
            Ok(()) => {
                let mut status = self.shared.status();
                status.cache = CacheFileStatus::Present;
                status.cache_written = Some(written);
            }
            Err(e) => {
                self.shared
                    .counters
                    .cache_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.status().cache = CacheFileStatus::Unusable;
                self.shared
                    .error(format!("cannot write cache file {}: {e}", path.display()));
            }
        }
    }
}

/// The cache file: the snapshot's shape plus a format marker.
#[derive(Serialize)]
struct CacheOut<'a> {
    format: &'static str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    /// When it was written: its age survives copies that lose the mtime.
    written_unix_ms: u64,
    records: Vec<&'a HostRecord>,
}

#[derive(Deserialize)]
struct CacheIn {
    format: String,
    version: u64,
    #[serde(default)]
    history: Option<String>,
    written_unix_ms: Option<u64>,
    records: Vec<HostRecord>,
}

const CACHE_FORMAT: &str = "envid-replica-1";

/// Writes `view` to `path` (see [`crate::atomic_file`]).
fn write_cache(path: &Path, view: &ReplicaView, written: SystemTime) -> std::io::Result<()> {
    let out = CacheOut {
        format: CACHE_FORMAT,
        version: view.version,
        history: view.history.as_deref(),
        written_unix_ms: written
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        records: view.records.values().map(|r| &**r).collect(),
    };
    crate::atomic_file::write(path, |w| {
        serde_json::to_writer(w, &out).map_err(std::io::Error::other)
    })
}

/// Reads a cache file written by [`write_cache`]: the view and when it was
/// written (else the file's mtime).
fn read_cache(path: &Path) -> Result<(ReplicaView, SystemTime), CacheProblem> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CacheProblem::Missing,
        _ => CacheProblem::Unreadable(e.to_string()),
    })?;
    let file: CacheIn = serde_json::from_slice(&bytes)
        .map_err(|e| CacheProblem::Corrupt(format!("not a replica cache: {e}")))?;
    if file.format != CACHE_FORMAT {
        return Err(CacheProblem::Corrupt(format!(
            "unknown format {:?} (expected {CACHE_FORMAT:?})",
            file.format
        )));
    }
    let written = match file.written_unix_ms {
        Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        None => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now()),
    };
    let mut view =
        ReplicaView::from_records(file.version, file.records).map_err(CacheProblem::Corrupt)?;
    view.history = file.history;
    Ok((view, written))
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
        ReplicaBuilder {
            config,
            settings: Settings::default(),
        }
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

    fn rec(key: &str, env: &str) -> HostRecord {
        let mut r: HostRecord =
            serde_json::from_value(serde_json::json!({"env": env, "idc": "cn0"})).unwrap();
        match key.parse::<RecordKey>().unwrap() {
            RecordKey::Ip(ip) => r.ip = Some(ip),
            RecordKey::Net(n) => r.cidr = Some(n),
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn view_longest_prefix_and_delta() {
        let v1 = ReplicaView::from_records(
            1,
            vec![
                rec("10.0.0.0/8", "prod"),
                rec("10.1.0.0/16", "beta"),
                rec("10.1.2.3", "dev"),
            ],
        )
        .unwrap();
        assert_eq!(v1.lookup(ip("10.1.2.3")).unwrap().env, "dev");
        assert_eq!(v1.lookup(ip("10.1.9.9")).unwrap().env, "beta");
        assert_eq!(v1.lookup(ip("10.9.9.9")).unwrap().env, "prod");
        assert!(v1.lookup(ip("11.0.0.1")).is_none());

        let v2 = v1
            .apply(
                3,
                vec![rec("10.1.2.4", "fat"), rec("10.0.0.0/8", "uat")],
                &["10.1.2.3".parse().unwrap(), "10.1.0.0/16".parse().unwrap()],
            )
            .unwrap();
        assert_eq!(v2.version(), 3);
        assert_eq!(v2.len(), 2);
        assert_eq!(v2.lookup(ip("10.1.2.3")).unwrap().env, "uat");
        assert_eq!(v2.lookup(ip("10.1.2.4")).unwrap().env, "fat");
        // The old view is untouched.
        assert_eq!(v1.lookup(ip("10.1.2.3")).unwrap().env, "dev");
        assert_eq!(v1.len(), 3);
    }

    #[test]
    fn view_refuses_keyless_record() {
        let mut r = rec("10.0.0.1", "prod");
        r.ip = None;
        assert!(ReplicaView::from_records(1, vec![r]).is_err());
    }

    #[test]
    fn cache_file_round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("envid-replica-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache.json");
        let view = ReplicaView::from_records(
            7,
            vec![rec("10.0.0.0/8", "prod"), rec("2001:db8::1", "beta")],
        )
        .unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write_cache(&path, &view, at).unwrap();
        write_cache(&path, &view, at).unwrap(); // replacing works too
        let (back, written) = read_cache(&path).unwrap();
        assert_eq!(written, at);
        assert_eq!(back.version(), 7);
        assert_eq!(back.len(), 2);
        assert_eq!(back.lookup(ip("2001:db8::1")).unwrap().env, "beta");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        std::fs::write(&path, b"{\"format\": \"envid-replica-1\", \"vers").unwrap();
        let err = read_cache(&path).unwrap_err();
        assert!(
            matches!(&err, CacheProblem::Corrupt(m) if m.contains("not a replica cache")),
            "{err}"
        );
        std::fs::write(
            &path,
            b"{\"format\": \"other\", \"version\": 1, \"records\": []}",
        )
        .unwrap();
        assert!(read_cache(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown format"));
        assert_eq!(
            read_cache(&dir.join("absent.json")).unwrap_err(),
            CacheProblem::Missing
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn normal_count_is_the_largest_within_the_window() {
        let s = Settings {
            protection_window: Duration::from_millis(360),
            ..Settings::default()
        };
        let mut g = Guard::default();
        g.observe(100, &s);
        g.observe(40, &s);
        g.observe(200, &s);
        g.observe(100, &s);
        // The largest count, not an accumulation of what was seen.
        assert_eq!(g.normal(), 200);
        std::thread::sleep(Duration::from_millis(400));
        g.observe(40, &s);
        assert_eq!(g.normal(), 40, "older buckets left the window");
    }

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
