//! The etcd store's view (an informer): list the prefix at a revision,
//! watch from the next one, resume from the revision the watch reached or
//! list again after a compaction, and probe etcd for `/healthz` and the
//! watch lag. Every change it sees is applied to the view's [`Records`] at
//! the revision that made it.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envid::protocol::HostRecord;
use etcd_client::{Client, EventType, GetOptions, WatchOptions};

use super::{
    reason, unavailable, EtcdStore, StaticSet, Stored, MAX_MESSAGE, OPERATION_DEADLINE,
    PROBE_INTERVAL,
};
use crate::store::etcd_connect::settings::REQUEST_TIMEOUT;
use crate::store::records::{Lease, Records};
use crate::store::StoreError;

impl EtcdStore {
    /// Lists the prefix; returns the revision, the cluster id, the static
    /// records and the registered ones.
    async fn list(&self) -> Result<(u64, u64, Vec<HostRecord>, Vec<HostRecord>), StoreError> {
        let resp = etcd!(self, |c| c
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(
                self.config.prefix.as_bytes(),
                Some(GetOptions::new().with_prefix())
            ))?;
        let header = resp.header().ok_or_else(|| unavailable("no header"))?;
        let (revision, cluster) = (header.revision() as u64, header.cluster_id());
        let mut statics = Vec::new();
        let mut registered = Vec::new();
        let static_key = self.key("static");
        let hosts = self.key("hosts/");
        for kv in resp.kvs() {
            if kv.key() == static_key.as_bytes() {
                match serde_json::from_slice::<StaticSet>(kv.value()) {
                    Ok(s) => statics = s.records,
                    Err(e) => {
                        self.metrics.store_error("decode");
                        tracing::error!(error = %e, "etcd holds a static set that does not parse");
                    }
                }
            } else if kv.key().starts_with(hosts.as_bytes()) {
                if let Some(r) = self.decode_host(kv.key(), kv.value()) {
                    registered.push(r);
                }
            }
        }
        Ok((revision, cluster, statics, registered))
    }

    fn decode_host(&self, key: &[u8], value: &[u8]) -> Option<HostRecord> {
        let ip = self.host_ip(key)?;
        match serde_json::from_slice::<Stored>(value) {
            Ok(s) => {
                let mut r = s.record;
                r.ip = Some(ip);
                Some(r)
            }
            Err(e) => {
                self.metrics.store_error("decode");
                tracing::error!(%ip, error = %e, "etcd holds a registration that does not parse");
                None
            }
        }
    }

    fn host_ip(&self, key: &[u8]) -> Option<IpAddr> {
        let hosts = self.key("hosts/");
        // Canonical: a key an older instance wrote as `::ffff:a.b.c.d`
        // is the host a.b.c.d.
        std::str::from_utf8(key.strip_prefix(hosts.as_bytes())?)
            .ok()?
            .parse()
            .ok()
            .map(envid::protocol::canonical_ip)
    }

    /// The watch loop: list, watch, resume or re-list, forever.
    pub(super) async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut resume_from: Option<u64> = None;
        loop {
            // Subscribed before the client is taken: a rotation after this
            // point moves the watch to the new client.
            let mut rotation = self.rotation.subscribe();
            let mut client = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    self.wait_out(&reason(&e), &mut backoff).await;
                    continue;
                }
            };
            if resume_from.is_none() {
                // Reconcile the file first, so the list shows it.
                let pending = self
                    .statics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some(records) = pending {
                    match self.reconcile(&records).await {
                        Ok(_) => {
                            *self.statics.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                        Err(e) => {
                            self.wait_out(&reason(&e), &mut backoff).await;
                            continue;
                        }
                    }
                }
                match self.list().await {
                    Ok((revision, cluster, statics, registered)) => {
                        self.install(revision, cluster, statics, registered);
                        resume_from = Some(revision);
                    }
                    Err(e) => {
                        self.wait_out(&reason(&e), &mut backoff).await;
                        continue;
                    }
                }
            }
            let from = resume_from.expect("listed");
            match self.watch(&mut client, from, &mut rotation).await {
                WatchEnd::Rotated(at) => {
                    // The same revision on the new client: no event lost.
                    resume_from = Some(at);
                    continue;
                }
                WatchEnd::Compacted => {
                    tracing::warn!(
                        revision = from,
                        "the watch revision was compacted; listing again"
                    );
                    resume_from = None;
                }
                WatchEnd::Broken(e, at) => {
                    resume_from = Some(at);
                    self.wait_out(&e, &mut backoff).await;
                    continue;
                }
            }
            backoff = Duration::from_millis(100);
        }
    }

    /// `why`, or the TLS refusal behind it (see
    /// [`EtcdSettings::diagnose_tls`]).
    async fn explain(&self, why: String) -> String {
        match self.settings().diagnose_tls().await {
            Some(cause) => format!("etcd: {cause}"),
            None => why,
        }
    }

    async fn wait_out(&self, why: &str, backoff: &mut Duration) {
        let why = &self.explain(why.to_string()).await;
        if self.status().ready {
            self.trouble(Some(why.to_string()));
        } else {
            let mut status = self.status();
            if status.trouble.as_deref() != Some(why) {
                tracing::warn!(reason = %why, endpoints = ?self.config.endpoints, "waiting for etcd");
                status.trouble = Some(why.to_string());
            }
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    /// Installs a list: the first one becomes the view; later ones (after a
    /// compaction) are applied as one change, so the deltas stay right.
    fn install(
        &self,
        revision: u64,
        cluster: u64,
        statics: Vec<HostRecord>,
        registered: Vec<HostRecord>,
    ) {
        let history = format!("{cluster:016x}");
        let first = !self.status().ready;
        let same_history = *self.store().snapshot().history == *history;
        if first || !same_history {
            let leases = registered
                .into_iter()
                .map(|record| Lease {
                    record,
                    lease_seconds: 0,
                    expires_unix_ms: u64::MAX,
                })
                .collect();
            let store = Records::with_registrations(statics, leases, revision, self.history_limit)
                .with_history(history);
            *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(store);
        } else {
            let store = self.store();
            store.at_version(revision, |s| s.reset(statics, registered));
        }
        self.seen.send_modify(|s| *s = (*s).max(revision));
        {
            let mut status = self.status();
            status.ready = true;
        }
        self.trouble(None);
        tracing::info!(revision, cluster = %format!("{cluster:016x}"), records = self.store().snapshot().records.len(), "view listed from etcd");
    }

    async fn watch(
        &self,
        client: &mut Client,
        from: u64,
        rotation: &mut tokio::sync::watch::Receiver<u64>,
    ) -> WatchEnd {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from as i64 + 1)
            .with_progress_notify();
        let mut stream = match self
            .timed(
                client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE)
                    .watch(self.config.prefix.as_bytes(), Some(options)),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return WatchEnd::Broken(reason(&e), from),
        };
        let mut at = from;
        let store = self.store();
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = rotation.changed() => return WatchEnd::Rotated(at),
                _ = self.progress.notified() => {
                    if let Err(e) = stream.request_progress().await {
                        return WatchEnd::Broken(self.classify(&e).to_string(), at);
                    }
                    continue;
                }
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return WatchEnd::Broken("the watch stream ended".into(), at),
                Err(e) => return WatchEnd::Broken(self.classify(&e).to_string(), at),
            };
            if resp.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if resp.canceled() {
                return WatchEnd::Broken(format!("watch canceled: {}", resp.cancel_reason()), at);
            }
            self.trouble(None);
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision() as u64;
                self.apply(&store, event.event_type(), kv.key(), kv.value(), revision);
                at = at.max(revision);
            }
            if resp.events().is_empty() && !resp.created() {
                // A progress report (sent only once the watcher is in sync):
                // nothing of ours changed up to its revision.
                if let Some(h) = resp.header() {
                    at = at.max(h.revision() as u64);
                }
            }
            self.seen.send_modify(|s| *s = (*s).max(at));
        }
    }

    fn apply(&self, store: &Records, kind: EventType, key: &[u8], value: &[u8], revision: u64) {
        if key == self.key("static").as_bytes() {
            let records = match kind {
                EventType::Put => match serde_json::from_slice::<StaticSet>(value) {
                    Ok(s) => s.records,
                    Err(e) => {
                        self.metrics.store_error("decode");
                        tracing::error!(error = %e, "etcd holds a static set that does not parse");
                        return;
                    }
                },
                EventType::Delete => Vec::new(),
            };
            store.at_version(revision, |s| s.replace_all(records));
        } else if let Some(ip) = self.host_ip(key) {
            match kind {
                EventType::Put => {
                    if let Some(r) = self.decode_host(key, value) {
                        store.at_version(revision, |s| s.register(ip, r, 0, 0));
                    }
                }
                EventType::Delete => {
                    store.at_version(revision, |s| s.deregister(ip));
                }
            }
        }
    }

    /// Probes etcd with a quorum read: health, round trip, watch lag.
    pub(super) async fn probe(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.status().ready {
                continue;
            }
            let key = self.key("static-hash");
            match etcd!(&*self, |c| c.get(key.clone(), None)) {
                Ok(resp) => {
                    let r = resp.header().map_or(0, |h| h.revision() as u64);
                    self.etcd_revision.store(r, Ordering::Relaxed);
                    let seen = *self.seen.borrow();
                    self.metrics.watch_lag.set(r.saturating_sub(seen) as i64);
                    if r > seen {
                        self.progress.notify_one();
                    }
                    self.trouble(None);
                }
                Err(e) => {
                    let why = self.explain(reason(&e)).await;
                    self.trouble(Some(why))
                }
            }
        }
    }
}

enum WatchEnd {
    /// New credentials are in use: watch again on the new client from the
    /// revision.
    Rotated(u64),
    Compacted,
    /// The stream failed; resume after the revision.
    Broken(String, u64),
}
