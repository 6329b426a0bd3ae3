//! The sync loop of a replica: a snapshot, then long-polled deltas, each
//! judged by the protection against mass deletion and swapped in whole; on
//! one background thread, or step by step through `Replica::sync_once`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::builder::Settings;
use super::protection::{Protection, Verdict};
use super::view::ReplicaView;
use super::{cache_file, CacheFileStatus, Shared};
use crate::client::{decode, not_found, ClientError, Method, Request, Transport};
use crate::protocol::{registry_poll_path, RegistryDelta, RegistrySnapshot, REGISTRY_PATH};

/// The sync loop's state (owned by the sync thread, or by the replica when
/// there is no thread).
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
    pub(super) transport: Arc<dyn Transport>,
    /// The config's endpoints, tried in turn.
    pub(super) endpoints: Vec<String>,
    pub(super) settings: Settings,
    /// Index of the endpoint in use.
    pub(super) endpoint: usize,
    pub(super) need_snapshot: bool,
    /// Deltas applied since the cache file was last written.
    pub(super) dirty: bool,
    pub(super) last_cache_write: Instant,
    pub(super) protection: Protection,
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
    /// The sync thread: steps until the replica is dropped, pausing
    /// `min_poll_interval` after a success and backing off after an error.
    pub(super) fn run(mut self) {
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
    pub(super) fn step(&mut self) -> Result<(), ClientError> {
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
                    if delta.version != current.version || self.protection.actual.is_some() {
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
        match &self.protection.actual {
            Some(a) => a.clone(),
            None => self.shared.view.load_full(),
        }
    }

    /// Applies what the service said, lets protection decide whether to
    /// serve it or to keep the view served, and swaps the served view in.
    fn publish(&mut self, said: Said) -> Result<(), String> {
        let base = self.actual();
        let (actual, delta) = match said {
            Said::Snapshot(view) => (Arc::new(view), None),
            Said::Delta(d) => {
                let next = base.apply(d.version, d.upserts.clone(), &d.deletes)?;
                (Arc::new(next), Some(d))
            }
        };
        let served_before = self.shared.view.load_full();
        match self
            .protection
            .judge(&actual, delta, &served_before, &self.settings)?
        {
            Verdict::Trust => self.shared.view.store(actual),
            Verdict::Protect { served, entering } => {
                if entering {
                    self.shared.error(format!(
                        "protecting the view against a mass deletion: the service has {} records, \
                         the normal count is {}; holding {} deletes",
                        actual.len(),
                        self.protection.normal(),
                        self.protection.held.len()
                    ));
                }
                self.shared.view.store(served);
            }
        }
        let mut status = self.shared.status();
        status.protected_since = self.protection.since;
        status.held_deletes = self.protection.held.len();
        status.normal_records = self.protection.normal();
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
        match cache_file::write(&path, &self.shared.view.load(), written) {
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
