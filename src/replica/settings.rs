//! The sync, cache file and protection settings of a replica (and of
//! what follows the registry as one does: `events`), apart from the
//! builder that sets them, so the stream and protection read them without
//! depending on the builder.

use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use crate::client::ServiceConfig;

/// The sync settings of a replica (the connection settings are its
/// [`ServiceConfig`]).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) poll_wait: Duration,
    pub(crate) min_poll_interval: Duration,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) cache_file: Option<PathBuf>,
    pub(crate) cache_write_interval: Duration,
    pub(crate) cache_interval: Duration,
    pub(crate) require_initial_sync: bool,
    pub(crate) background_sync: bool,
    pub(crate) protection: bool,
    pub(crate) protection_enter: f64,
    pub(crate) protection_leave: f64,
    pub(crate) protection_window: Duration,
    pub(crate) protection_min_records: usize,
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
