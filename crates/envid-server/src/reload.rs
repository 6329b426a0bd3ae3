//! Reloading the registry file when it changes: polled (see [`crate::poll`]
//! for why and how a change is found), read by the bounded reader (a FIFO,
//! a device or a directory put in its place, or a file over
//! [`crate::registry_file::MAX_REGISTRY_FILE_BYTES`], fails the reload like
//! a broken file and never blocks the poller), and only new content is
//! parsed. A file that fails to parse is logged once (a warning) and the old
//! registry keeps serving; the next good file is loaded as usual.
//! A file that parses but would delete more than half of the static
//! records (an empty or truncated file) is refused the same way, unless
//! `allow_mass_delete` is set (see [`crate::protection`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::poll::{FileWatch, Poll};
use crate::protection::{is_mass_delete, RefusedReload, ReloadRefusal};
use crate::recent::Recent;
use crate::registry_file;
use crate::store::{now_unix_ms, RegistryStore};

/// The registry file's poller: a new file that parses replaces the static
/// records.
pub(crate) struct Reloader {
    file: FileWatch,
    store: Arc<dyn RegistryStore>,
    metrics: Arc<Metrics>,
    last_error: Option<String>,
    /// What `/healthz` shows of a refused reload; only this writes it.
    refusal: Arc<ReloadRefusal>,
    allow_mass_delete: bool,
    /// Where the last reload's outcome is told (the console).
    recent: Option<Arc<Recent>>,
}

impl Reloader {
    /// `loaded` is the content the store was built from.
    pub(crate) fn new(
        path: PathBuf,
        store: Arc<dyn RegistryStore>,
        metrics: Arc<Metrics>,
        loaded: &[u8],
        refusal: Arc<ReloadRefusal>,
        allow_mass_delete: bool,
    ) -> Reloader {
        Reloader {
            file: FileWatch::new(
                path,
                |p| registry_file::read(p).map_err(|e| e.to_string()),
                loaded,
            ),
            store,
            metrics,
            last_error: None,
            refusal,
            allow_mass_delete,
            recent: None,
        }
    }

    /// Tells every reload's outcome to `recent` (the console's Health page).
    pub(crate) fn with_recent(mut self, recent: Arc<Recent>) -> Reloader {
        self.recent = Some(recent);
        self
    }

    fn tell(&self, result: &'static str, message: String, version: Option<u64>) {
        if let Some(recent) = &self.recent {
            recent.reloaded(result, message, version);
        }
    }

    fn fail(&mut self, message: String) {
        // Report a failure once, not on every poll.
        if self.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                path = %self.file.path().display(),
                error = %message,
                version = self.store.snapshot().version,
                "registry reload failed; keeping the old registry"
            );
            self.metrics.reload(false);
            self.tell("failed", message.clone(), None);
            self.last_error = Some(message);
        }
    }
}

impl Poll for Reloader {
    const NAME: &'static str = "registry reloader";

    fn poll(&mut self) {
        let bytes = match self.file.changed() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => return self.fail(e),
        };
        let path = self.file.path().display().to_string();
        let records = match registry_file::parse_bytes(&bytes, self.file.path()) {
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
                self.tell("refused", message.clone(), None);
                self.last_error = Some(message.clone());
                self.refusal.set(Some(RefusedReload {
                    message,
                    static_records: statics,
                    would_delete,
                    since_unix_ms: now_unix_ms(),
                }));
                return;
            }
            tracing::warn!(
                path,
                static_records = statics,
                would_delete,
                "registry reload deletes most records; applied (mass deletes allowed)"
            );
        }
        self.refusal.set(None);
        self.last_error = None;
        self.metrics.reload(true);
        let count = records.len();
        // Run off the async workers (spawn_blocking), so waiting here for
        // the store's commit blocks no request.
        let store = self.store.clone();
        let outcome = tokio::runtime::Handle::current().block_on(store.replace_static(records));
        match outcome {
            Ok(o) => match o.version {
                Some(version) => {
                    tracing::info!(
                        path,
                        version,
                        records = count,
                        before = o.before,
                        "registry reloaded"
                    );
                    self.tell(
                        "applied",
                        format!(
                            "{path}: {count} records ({} static records before)",
                            o.before
                        ),
                        Some(version),
                    );
                }
                None => {
                    tracing::info!(
                        path,
                        version = self.store.snapshot().version,
                        "registry reloaded; no record changed"
                    );
                    self.tell(
                        "unchanged",
                        format!("{path}: no served record changed"),
                        None,
                    );
                }
            },
            Err(e) => {
                // Try again on the next poll.
                self.file.forget();
                tracing::warn!(path, error = %e, "registry reload not stored; retrying");
                self.tell("failed", format!("{path}: not stored: {e}"), None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use std::time::Duration;

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
