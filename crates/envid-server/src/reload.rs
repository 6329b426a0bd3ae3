//! Reloading the registry file when it changes: polled (see [`crate::poll`]
//! for why and how a change is found), and only new content is parsed. A
//! file that fails to parse is logged once (a warning) and the old registry
//! keeps serving; the next good file is loaded as usual.
//! A file that parses but would delete more than half of the static
//! records (an empty or truncated file) is refused the same way, unless
//! `allow_mass_delete` is set (see [`crate::protection`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::registry_file::parse_registry;

use crate::metrics::Metrics;
use crate::poll::{FileWatch, Poll};
use crate::protection::{is_mass_delete, RefusedReload, ReloadRefusal};
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
            file: FileWatch::new(path, loaded),
            store,
            metrics,
            last_error: None,
            refusal,
            allow_mass_delete,
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
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return self.fail(format!("{path}: not valid UTF-8")),
        };
        let records = match parse_registry(&text, self.file.path()) {
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
                self.file.forget();
                tracing::warn!(path, error = %e, "registry reload not stored; retrying");
            }
        }
    }
}
