//! Reloading the registry file when it changes.
//!
//! The file is *polled* (every `reload_interval`) rather than watched with
//! inotify: polling works on every filesystem (NFS, overlay, FUSE) and with
//! Kubernetes ConfigMap volumes, where an update swaps a `..data` symlink and
//! the watched inode never changes. Each poll compares the file's
//! (mtime, length); when they differ, or when the mtime is so recent that a
//! same-size rewrite within one timestamp tick could hide (the "racy" window
//! git also guards against), the content is read and hashed, and only a new
//! hash is parsed. A file that fails to parse is logged once (a warning) and
//! the old registry keeps serving; the next good file is loaded as usual.
//! A file that parses but would delete more than half of the static
//! records (an empty or truncated file) is refused the same way, unless
//! `allow_mass_delete` is set (see [`crate::guard`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::registry_file::parse_registry;

use crate::guard::{is_mass_delete, Guard, RefusedReload};
use crate::hash::content_hash;
use crate::metrics::Metrics;
use crate::store::{now_unix_ms, RegistryStore};

/// Within this age of the file's mtime, the content is re-checked on every poll.
const RACY_WINDOW: Duration = Duration::from_secs(2);

pub(crate) struct Reloader {
    path: PathBuf,
    store: Arc<dyn RegistryStore>,
    metrics: Arc<Metrics>,
    last_stamp: Option<(Option<SystemTime>, u64)>,
    last_hash: Option<u64>,
    last_error: Option<String>,
    guard: Arc<Guard>,
    allow_mass_delete: bool,
}

impl Reloader {
    /// `loaded` is the content the store was built from.
    pub(crate) fn new(
        path: PathBuf,
        store: Arc<dyn RegistryStore>,
        metrics: Arc<Metrics>,
        loaded: &[u8],
        guard: Arc<Guard>,
        allow_mass_delete: bool,
    ) -> Reloader {
        Reloader {
            path,
            store,
            metrics,
            last_stamp: None,
            last_hash: Some(content_hash(loaded)),
            last_error: None,
            guard,
            allow_mass_delete,
        }
    }

    fn fail(&mut self, message: String) {
        // Report a failure once, not on every poll.
        if self.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                path = %self.path.display(),
                error = %message,
                version = self.store.snapshot().version,
                "registry reload failed; keeping the old registry"
            );
            self.metrics.reload(false);
            self.last_error = Some(message);
        }
    }

    /// One check of the file; blocking I/O, run it off the async workers.
    pub(crate) fn poll(&mut self) {
        let path = self.path.display().to_string();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return self.fail(format!("{path}: {e}")),
        };
        let stamp = (meta.modified().ok(), meta.len());
        let racy = stamp.0.is_none_or(|m| {
            SystemTime::now()
                .duration_since(m)
                .map_or(true, |age| age < RACY_WINDOW)
        });
        if self.last_stamp == Some(stamp) && !racy {
            return;
        }
        self.last_stamp = Some(stamp);
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => return self.fail(format!("{path}: {e}")),
        };
        let hash = content_hash(&bytes);
        if self.last_hash == Some(hash) {
            return;
        }
        self.last_hash = Some(hash);
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return self.fail(format!("{path}: not valid UTF-8")),
        };
        let records = match parse_registry(&text, &self.path) {
            Ok(r) => r,
            Err(e) => return self.fail(e.to_string()),
        };
        let (statics, would_delete) = self.store.static_deletions(&records);
        if is_mass_delete(statics, would_delete) {
            if !self.allow_mass_delete {
                let message = format!(
                    "{path} would delete {would_delete} of the {statics} static records \
                     (more than half); refused, the old registry keeps serving \
                     (restore the file, or restart with --allow-mass-delete to apply it)"
                );
                tracing::error!(
                    path,
                    static_records = statics,
                    would_delete,
                    version = self.store.snapshot().version,
                    "registry reload refused: it would delete most records"
                );
                self.metrics.reload_refused();
                self.last_error = Some(message.clone());
                *self.guard.refused.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(RefusedReload {
                        message,
                        static_records: statics,
                        would_delete,
                        since_unix_ms: now_unix_ms(),
                    });
                return;
            }
            tracing::warn!(
                path,
                static_records = statics,
                would_delete,
                "registry reload deletes most records; applied (mass deletes allowed)"
            );
        }
        *self.guard.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.last_error = None;
        self.metrics.reload(true);
        let count = records.len();
        // Run off the async workers (spawn_blocking), so waiting here for
        // the store's commit blocks no request.
        let store = self.store.clone();
        let outcome = tokio::runtime::Handle::current().block_on(store.replace_static(records));
        match outcome {
            Ok(o) => match o.version {
                Some(version) => tracing::info!(
                    path,
                    version,
                    records = count,
                    before = o.before,
                    "registry reloaded"
                ),
                None => tracing::info!(
                    path,
                    version = self.store.snapshot().version,
                    "registry reloaded; no record changed"
                ),
            },
            Err(e) => {
                // Try again on the next poll.
                self.last_hash = None;
                tracing::warn!(path, error = %e, "registry reload not stored; retrying");
            }
        }
    }
}
