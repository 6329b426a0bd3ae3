//! [`ReplicaBuilder`]: the sync, cache file and protection settings of a
//! [`Replica`], over the connection settings of a [`ServiceConfig`]; and
//! the start (the first snapshot, else the cache file).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::follow::Follow;
use super::settings::Settings;
use super::sync::Syncer;
use super::{cache_file, CacheFileStatus, Replica, Shared};
use crate::client::setter;
use crate::client::{CacheProblem, ClientError, HttpTransport, ServiceConfig, Transport};

/// A replica's default `per_phase` timeout: a snapshot is the whole registry.
const REPLICA_PER_PHASE_TIMEOUT: Duration = Duration::from_secs(10);
/// A replica's default response cap.
const REPLICA_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// The transport of a replica (and of `events`): a snapshot is the whole
/// registry, so larger default timeouts and response cap.
pub(crate) fn http_transport(config: &ServiceConfig) -> HttpTransport {
    HttpTransport::with_defaults(
        config,
        REPLICA_PER_PHASE_TIMEOUT,
        REPLICA_MAX_RESPONSE_BYTES,
    )
}

/// Builds a [`Replica`] from a [`ServiceConfig`]: the sync and cache file
/// settings.
#[derive(Clone, Debug)]
pub struct ReplicaBuilder {
    config: ServiceConfig,
    settings: Settings,
}

impl ReplicaBuilder {
    pub(super) fn new(config: ServiceConfig) -> ReplicaBuilder {
        ReplicaBuilder {
            config,
            settings: Settings::default(),
        }
    }

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
        /// (default `true`; see the [replica documentation](super)).
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

    /// The connection and sync settings, for what follows the registry as
    /// a replica does (`events`).
    pub(crate) fn into_parts(self) -> (ServiceConfig, Settings) {
        (self.config, self.settings)
    }

    /// The builder of these settings.
    pub(crate) fn from_parts(config: ServiceConfig, settings: Settings) -> ReplicaBuilder {
        ReplicaBuilder { config, settings }
    }

    /// Fetches the registry (or reads the cache file when the service is
    /// unreachable) and starts the sync thread, over the [`HttpTransport`]
    /// of the config.
    pub fn build(self) -> Result<Replica, ClientError> {
        let transport = http_transport(&self.config);
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
            follow: Follow::new(transport, self.config.endpoints().to_vec(), self.settings),
            dirty: false,
            last_cache_write: Instant::now(),
        };
        let mut replica = Replica {
            shared,
            sync: None,
            thread: None,
        };
        let mut sync = sync;
        // The first snapshot: every endpoint once, then the cache file.
        let mut first_error = None;
        for _ in 0..sync.follow.endpoints() {
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
            if let Some(path) = sync.follow.settings.cache_file.clone() {
                match cache_file::read(&path) {
                    Ok((view, written)) => {
                        sync.follow.start_from(view, 0);
                        let mut status = replica.shared.status();
                        status.cache = CacheFileStatus::Present;
                        status.cache_written = Some(written);
                        status.normal_records = sync.follow.protection.normal();
                        drop(status);
                        replica.shared.view.store(sync.follow.view().clone());
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
            if sync.follow.settings.require_initial_sync
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
        if sync.follow.settings.background_sync {
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
