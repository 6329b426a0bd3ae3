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
//! The file is read by the bounded reader ([`crate::registry_file::load`]'s):
//! a FIFO, a device or a directory put in its place, or a file over
//! [`crate::registry_file::MAX_REGISTRY_FILE_BYTES`], fails the reload like
//! a broken file, and never blocks the poller.
//! A file that parses but would delete more than half of the static
//! records (an empty or truncated file) is refused the same way, unless
//! `allow_mass_delete` is set (see [`crate::guard`]).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::guard::{is_mass_delete, Guard, RefusedReload};
use crate::metrics::Metrics;
use crate::registry_file;
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

pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
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
        // Bounded and non-blocking: a FIFO or a device put in the file's
        // place is refused, where a plain read would hang this poller.
        let bytes = match registry_file::read(&self.path) {
            Ok(b) => b,
            Err(e) => return self.fail(e.to_string()),
        };
        let hash = content_hash(&bytes);
        if self.last_hash == Some(hash) {
            return;
        }
        self.last_hash = Some(hash);
        let records = match registry_file::parse_bytes(&bytes, &self.path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn reloader(path: PathBuf) -> Reloader {
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(EmbeddedStore::open(Vec::new(), None, 10, metrics.clone()));
        Reloader::new(path, store, metrics, b"", Arc::default(), false)
    }

    /// The poll runs on a thread and must come back: a plain read of a FIFO
    /// without a writer would wait forever.
    fn poll_within_a_second(mut r: Reloader) -> Reloader {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            r.poll();
            let _ = tx.send(r);
        });
        rx.recv_timeout(Duration::from_secs(1))
            .expect("the poll blocked")
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_place_of_the_registry_fails_the_reload_without_blocking() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let r = poll_within_a_second(reloader(path.clone()));
        assert_eq!(
            r.last_error.as_deref(),
            Some(
                format!(
                    "invalid registry {}: not a regular file: it is a FIFO",
                    path.display()
                )
                .as_str()
            )
        );
    }

    #[test]
    fn an_oversized_registry_fails_the_reload_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        // Sparse: as large as the cap says, without writing it.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(registry_file::MAX_REGISTRY_FILE_BYTES + 1)
            .unwrap();
        let r = poll_within_a_second(reloader(path.clone()));
        assert_eq!(
            r.last_error,
            Some(format!(
                "invalid registry {}: larger than {} bytes",
                path.display(),
                registry_file::MAX_REGISTRY_FILE_BYTES
            ))
        );
    }
}
