//! Rotation of the etcd credentials: the CA, the client certificate and
//! key, and the password file are polled; new content is loaded, a client
//! is built from it and put through the start probe, and only then swapped
//! in (the watch moves to it from its revision). Content that does not
//! load, or that etcd refuses, keeps the client in use and is shown on
//! `/healthz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::runtime::Handle;

use super::{refine, EtcdStore, PREFLIGHT_DEADLINE};
use crate::poll::Poll;
use crate::store::etcd_connect::refusal::Failure;
use crate::store::etcd_connect::settings::{fingerprint, now_secs, utc, EtcdSettings};
use crate::store::etcd_connect::EtcdAccess;

/// How long credentials etcd refused are left before they are tried again
/// (unless the files change): each try makes etcd check a password, which
/// costs it a bcrypt.
const REFUSED_RETRY: Duration = Duration::from_secs(10);

/// The credentials' poller (see the module docs), run by [`crate::poll`].
struct Rotation {
    store: Arc<EtcdStore>,
    access: EtcdAccess,
    /// The fingerprint of the files the client in use was built from
    /// (taken at the first check).
    applied: Option<u64>,
    /// Files etcd refused, and when.
    refused: Option<(u64, Instant)>,
}

impl Rotation {
    fn new(store: Arc<EtcdStore>) -> Rotation {
        let access = store.settings().access().clone();
        Rotation {
            store,
            access,
            applied: None,
            refused: None,
        }
    }
}

impl Poll for Rotation {
    const NAME: &'static str = "etcd credentials reloader";
    // An expired client certificate is named from the start.
    const AT_ONCE: bool = true;

    /// When the files' content changed, a client built from them is tried
    /// (the same probe as at start) and swapped in, and the watch moves to
    /// it. Files that do not load, or that etcd refuses, keep the client in
    /// use; `/healthz` and the log say why, and the next poll tries again.
    fn poll(&mut self) {
        let applied = *self
            .applied
            .get_or_insert_with(|| fingerprint(&self.access));
        let store = &self.store;
        store.check_expiry();
        let now = fingerprint(&self.access);
        let resting = self
            .refused
            .is_some_and(|(f, at)| f == now && at.elapsed() < REFUSED_RETRY);
        if now == applied || resting {
            return;
        }
        let loaded =
            EtcdSettings::load(&store.config.endpoints, &store.config.prefix, &self.access);
        let settings = match loaded {
            Ok(s) => s,
            Err(e) => {
                return store.credentials_failed(format!(
                    "new etcd credentials do not load, keeping the previous ones: {e}"
                ))
            }
        };
        match Handle::current().block_on(store.try_client(&settings)) {
            Ok(client) => {
                Handle::current().block_on(store.swap_in(settings, client));
                self.applied = Some(now);
                self.refused = None;
            }
            Err(failure) => {
                self.refused = Some((now, Instant::now()));
                store.credentials_failed(format!(
                    "etcd refused the new credentials, keeping the previous ones: {failure}"
                ))
            }
        }
    }
}

impl EtcdStore {
    /// Starts polling the credentials' files (every `reload_interval`).
    pub(super) fn rotate_credentials(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        crate::poll::spawn(self.config.reload_interval, Rotation::new(self))
    }

    /// A client on `settings` that passed the start probe.
    async fn try_client(&self, settings: &EtcdSettings) -> Result<Client, Failure> {
        let tried = async {
            let mut client = self.connect(settings).await?;
            tokio::time::timeout(PREFLIGHT_DEADLINE, self.check(&mut client))
                .await
                .map_err(|_| Failure::Transient("no answer within the deadline".into()))?
                .map_err(|e| settings.classify(&e))?;
            Ok::<Client, Failure>(client)
        };
        refine(settings, tried.await).await
    }

    /// Puts `client` (built from `settings`) in use; the watch moves to it.
    async fn swap_in(&self, settings: EtcdSettings, client: Client) {
        if let Some(t) = settings.not_after() {
            self.metrics.etcd_client_cert_not_after.set(t);
        }
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
        *self.client.lock().await = Some(client);
        {
            let mut c = self.credentials();
            c.reloads += 1;
            c.error = None;
        }
        self.metrics.etcd_credentials_reload(true);
        self.rotation.send_modify(|g| *g += 1);
        tracing::info!(
            not_after = ?self.settings().not_after().map(utc),
            "etcd credentials reloaded; the new client is in use"
        );
        self.check_expiry();
    }

    fn credentials_failed(&self, why: String) {
        let mut c = self.credentials();
        if c.error.as_deref() != Some(why.as_str()) {
            tracing::warn!(reason = %why, "etcd credentials reload failed");
            self.metrics.etcd_credentials_reload(false);
            c.error = Some(why);
        }
    }

    /// A client certificate in use that has expired is named, before etcd
    /// refuses the next connection made with it.
    fn check_expiry(&self) {
        let settings = self.settings();
        let Some(until) = settings.not_after() else {
            return;
        };
        if now_secs() > until {
            let why = format!(
                "the client certificate --etcd-cert {} expired on {}; etcd refuses new \
                 connections made with it",
                settings
                    .access()
                    .cert
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                utc(until)
            );
            self.credentials_failed(why);
        }
    }
}
