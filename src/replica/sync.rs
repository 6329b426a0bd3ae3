//! The replica's side of the stream: each step of [`Follow`] (the snapshot,
//! then long-polled deltas, judged by protection) is swapped in for the
//! readers, counted and written to the cache file; on one background
//! thread, or step by step through `Replica::sync_once`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::follow::{Exchange, Follow};
use super::{cache_file, CacheFileStatus, Shared};
use crate::client::ClientError;

/// The sync loop's state (owned by the sync thread, or by the replica when
/// there is no thread).
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
    pub(super) follow: Follow,
    /// Deltas applied since the cache file was last written.
    pub(super) dirty: bool,
    pub(super) last_cache_write: Instant,
}

impl Syncer {
    /// The sync thread: steps until the replica is dropped, pausing
    /// `min_poll_interval` after a success and backing off after an error.
    pub(super) fn run(mut self) {
        while !self.shared.stopped() {
            let started = Instant::now();
            let ok = self.step().is_ok();
            let pause = self.follow.pause(ok, started);
            if !pause.is_zero() && self.shared.sleep(pause) {
                break;
            }
        }
    }

    /// One exchange with the service: a snapshot or a long poll.
    pub(super) fn step(&mut self) -> Result<(), ClientError> {
        let shared = self.shared.clone();
        // Whole seconds on the wire, at least one: a replica always waits.
        let wait = Duration::from_secs(self.follow.settings.poll_wait.as_secs().max(1));
        let outcome = self.follow.step(wait, &|| shared.stopped());
        if self.shared.stopped() {
            return Ok(());
        }
        match outcome {
            Ok(step) => {
                if step.changed.is_some() {
                    self.shared.view.store(self.follow.view().clone());
                }
                if step.entered_protection {
                    let p = &self.follow.protection;
                    self.shared.error(format!(
                        "protecting the view against a mass deletion: the service has {} records, \
                         the normal count is {}; holding {} deletes",
                        p.actual.as_ref().map_or(0, |a| a.len()),
                        p.normal(),
                        p.held.len()
                    ));
                }
                {
                    let p = &self.follow.protection;
                    let mut status = self.shared.status();
                    status.protected_since = p.since;
                    status.held_deletes = p.held.len();
                    status.normal_records = p.normal();
                }
                let counters = &self.shared.counters;
                match step.exchange {
                    Exchange::Snapshot => {
                        counters.snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    Exchange::Delta => {
                        counters.deltas.fetch_add(1, Ordering::Relaxed);
                        self.dirty = true;
                    }
                    Exchange::Empty | Exchange::Gone => {}
                }
                self.shared.synced();
                let since = self.last_cache_write.elapsed();
                if step.exchange == Exchange::Snapshot
                    || (self.dirty && since >= self.follow.settings.cache_write_interval)
                    || since >= self.follow.settings.cache_interval
                {
                    self.write_cache();
                }
                Ok(())
            }
            Err(e) => {
                self.shared
                    .counters
                    .sync_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.error(e.to_string());
                Err(e)
            }
        }
    }

    fn write_cache(&mut self) {
        let Some(path) = self.follow.settings.cache_file.clone() else {
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
