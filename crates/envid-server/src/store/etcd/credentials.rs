//! Rotation of the etcd credentials: the CA, the client certificate and
//! key, and the password file are polled; new content is loaded, a client
//! is built from it and put through the start probe, and only then swapped
//! in (the watch moves to it from its revision). Content that does not
//! load, or that etcd refuses, keeps the client in use and is shown on
//! `/healthz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;

use super::{refine, EtcdStore, PREFLIGHT_DEADLINE};
use crate::store::etcd_connect::{fingerprint, now_secs, utc, EtcdSettings, Failure};

/// How long credentials etcd refused are left before they are tried again
/// (unless the files change): each try makes etcd check a password, which
/// costs it a bcrypt.
const REFUSED_RETRY: Duration = Duration::from_secs(10);

/// The state of the credentials on disk, for `/healthz`.
#[derive(Debug, Default)]
pub(super) struct Credentials {
    /// The fingerprint of the files the client in use was built from.
    applied: u64,
    /// Files etcd refused, and when.
    refused: Option<(u64, Instant)>,
    /// New credentials swapped in since start.
    pub(super) reloads: u64,
    /// Why the files on disk are not in use (or the one in use expired).
    pub(super) error: Option<String>,
}

impl EtcdStore {
    pub(super) fn credentials(&self) -> std::sync::MutexGuard<'_, Credentials> {
        self.credentials.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls the certificates and the password file; when their content
    /// changes, a client built from them is tried (the same probe as at
    /// start) and swapped in, and the watch moves to it. Files that do not
    /// load, or that etcd refuses, keep the client in use; `/healthz` and
    /// the log say why, and the next poll tries again.
    pub(super) async fn watch_credentials(self: Arc<Self>) {
        let interval = self.config.reload_interval.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let access = self.settings().access().clone();
        let first = {
            let access = access.clone();
            tokio::task::spawn_blocking(move || fingerprint(&access))
                .await
                .unwrap_or_default()
        };
        self.credentials().applied = first;
        loop {
            tick.tick().await;
            self.check_expiry();
            let now = {
                let access = access.clone();
                match tokio::task::spawn_blocking(move || fingerprint(&access)).await {
                    Ok(f) => f,
                    Err(_) => continue,
                }
            };
            {
                let c = self.credentials();
                let resting = c
                    .refused
                    .is_some_and(|(f, at)| f == now && at.elapsed() < REFUSED_RETRY);
                if now == c.applied || resting {
                    continue;
                }
            }
            let loaded = {
                let (endpoints, prefix, access) = (
                    self.config.endpoints.clone(),
                    self.config.prefix.clone(),
                    access.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    EtcdSettings::load(&endpoints, &prefix, &access)
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
            };
            let settings = match loaded {
                Ok(s) => s,
                Err(e) => {
                    self.credentials_failed(format!(
                        "new etcd credentials do not load, keeping the previous ones: {e}"
                    ));
                    continue;
                }
            };
            let tried = async {
                let mut client = self.connect(&settings).await?;
                tokio::time::timeout(PREFLIGHT_DEADLINE, self.check(&mut client))
                    .await
                    .map_err(|_| Failure::Transient("no answer within the deadline".into()))?
                    .map_err(|e| settings.classify(&e))?;
                Ok::<Client, Failure>(client)
            };
            match refine(&settings, tried.await).await {
                Ok(client) => {
                    if let Some(t) = settings.not_after() {
                        self.metrics.etcd_client_cert_not_after.set(t);
                    }
                    *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
                    *self.client.lock().await = Some(client);
                    {
                        let mut c = self.credentials();
                        c.applied = now;
                        c.refused = None;
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
                Err(failure) => {
                    self.credentials().refused = Some((now, Instant::now()));
                    self.credentials_failed(format!(
                        "etcd refused the new credentials, keeping the previous ones: {failure}"
                    ))
                }
            }
        }
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
