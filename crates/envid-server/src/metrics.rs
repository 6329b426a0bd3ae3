//! The service's Prometheus metrics (the list is in the crate docs and the
//! README, "Metrics"): counters and gauges, their labels, and the
//! OpenMetrics text encoding served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `envid_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) endpoint: &'static str,
    pub(crate) status: u16,
}

/// Labels of `envid_registry_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    result: &'static str,
}

/// Labels of `envid_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnLabels {
    reason: &'static str,
}

/// Labels of `envid_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LimitLabels {
    reason: &'static str,
}

/// Labels of `envid_registration_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    reason: &'static str,
}

/// Labels of the per-credential series: the app and the credential's
/// label (never the token).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CredentialLabels {
    pub(crate) app: String,
    pub(crate) credential: String,
}

/// Labels of `envid_store_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreErrorLabels {
    kind: &'static str,
}

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Errors of the store by kind (etcd, decode, write, corrupt).
    pub(crate) store_errors: Family<StoreErrorLabels, Counter>,
    /// Seconds per etcd request that succeeded.
    // Registered in every build (dashboards need no feature check); only
    // the etcd store sets it.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) etcd_round_trip: Histogram,
    /// Revisions the view is behind etcd (as of the last probe).
    // Registered in every build (dashboards need no feature check); only
    // the etcd store sets it.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) watch_lag: Gauge,
    /// 1 while the view is served stale (the backing store unreachable).
    // Registered in every build (dashboards need no feature check); only
    // the etcd store sets it.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) stale: Gauge,
    registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) ips_looked_up: Counter,
    pub(crate) reloads: Family<ReloadLabels, Counter>,
    version: Gauge,
    records: Gauge,
    pub(crate) registrations: Counter,
    pub(crate) renewals: Counter,
    pub(crate) deregistrations: Counter,
    pub(crate) expiries: Counter,
    pub(crate) rate_limited: Family<LimitLabels, Counter>,
    pub(crate) long_polls: Gauge,
    /// The fan-out window of the last long poll answered after waiting.
    pub(crate) poll_window: Gauge<f64, AtomicU64>,
    registered: Gauge,
    connections_open: Gauge,
    connections_closed: Family<ConnLabels, Counter>,
    connections_evicted: Counter,
    reload_refused: Gauge,
    lease_preservation: Gauge,
    leases_held: Gauge,
    refusals: Family<RefusalLabels, Counter>,
    apps_reloads: Family<ReloadLabels, Counter>,
    registration_open: Gauge,
    /// Accepted registrations by (app, credential label).
    credential_registrations: Family<CredentialLabels, Counter>,
    /// When each credential last registered or renewed (Unix seconds).
    credential_last_used: Family<CredentialLabels, Gauge>,
    /// 1 while the apps file on disk is not the one in use.
    pub(crate) apps_file_stale: Gauge,
    /// Replication requests whose `since` names no history.
    pub(crate) since_without_history: Counter,
    /// etcd credentials (certificates, password file) swapped in, or
    /// refused, after a change on disk.
    // Registered in every build; only the etcd store counts.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    etcd_credential_reloads: Family<ReloadLabels, Counter>,
    /// The etcd client certificate's notAfter (Unix seconds), so an alert
    /// can fire before it expires.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) etcd_client_cert_not_after: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let ips_looked_up = Counter::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let version = Gauge::default();
        let records = Gauge::default();
        registry.register(
            "envid_http_requests",
            "HTTP requests by endpoint and status code",
            requests.clone(),
        );
        registry.register(
            "envid_ips_looked_up",
            "IP addresses looked up (single and batch, valid requests only)",
            ips_looked_up.clone(),
        );
        registry.register(
            "envid_registry_reloads",
            "Registry file reloads by result (ok, error, refused)",
            reloads.clone(),
        );
        registry.register(
            "envid_registry_version",
            "Version of the registry being served",
            version.clone(),
        );
        registry.register(
            "envid_registry_records",
            "Records in the registry being served",
            records.clone(),
        );
        let registrations = Counter::default();
        let renewals = Counter::default();
        let deregistrations = Counter::default();
        let expiries = Counter::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let long_polls = Gauge::default();
        let poll_window = Gauge::<f64, AtomicU64>::default();
        let registered = Gauge::default();
        registry.register(
            "envid_registrations",
            "Accepted registrations (PUT /v1/hosts/{ip})",
            registrations.clone(),
        );
        registry.register(
            "envid_renewals",
            "Lease renewals of registered IPs",
            renewals.clone(),
        );
        registry.register(
            "envid_deregistrations",
            "Registrations removed by DELETE /v1/hosts/{ip} (absent IPs not counted)",
            deregistrations.clone(),
        );
        registry.register(
            "envid_lease_expiries",
            "Registrations dropped because their lease ended",
            expiries.clone(),
        );
        registry.register(
            "envid_rate_limited",
            "Requests answered 429 by reason (registration, overload, long_polls)",
            rate_limited.clone(),
        );
        registry.register(
            "envid_long_polls_in_flight",
            "Replication long polls waiting for a change",
            long_polls.clone(),
        );
        registry.register(
            "envid_long_poll_window_seconds",
            "How long the last long poll a change woke gathered more before its answer (20 ms, or (polls waiting) / --fanout-rate when longer)",
            poll_window.clone(),
        );
        registry.register(
            "envid_registry_registrations",
            "Registered (dynamic) records",
            registered.clone(),
        );
        let connections_open = Gauge::default();
        let connections_closed = Family::<ConnLabels, Counter>::default();
        registry.register(
            "envid_connections_open",
            "TCP connections being served (at most max_connections)",
            connections_open.clone(),
        );
        registry.register(
            "envid_connections_closed",
            "TCP connections closed, by reason (done, header_timeout, evicted, error)",
            connections_closed.clone(),
        );
        let connections_evicted = Counter::default();
        registry.register(
            "envid_connections_evicted",
            "Idle connections closed to make room at max_connections",
            connections_evicted.clone(),
        );
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "envid_store_errors",
            "Store errors by kind (etcd, decode, write, corrupt)",
            store_errors.clone(),
        );
        let etcd_round_trip = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
        ]);
        registry.register(
            "envid_etcd_round_trip_seconds",
            "Time of successful etcd requests",
            etcd_round_trip.clone(),
        );
        let watch_lag = Gauge::default();
        registry.register(
            "envid_watch_lag_revisions",
            "Revisions the in-memory view is behind etcd (last probe)",
            watch_lag.clone(),
        );
        let stale = Gauge::default();
        registry.register(
            "envid_store_stale",
            "1 while reads are served from a view the store cannot refresh (etcd unreachable)",
            stale.clone(),
        );
        let reload_refused = Gauge::default();
        registry.register(
            "envid_registry_reload_refused",
            "1 while the registry file on disk is refused (it would delete most static records)",
            reload_refused.clone(),
        );
        let lease_preservation = Gauge::default();
        registry.register(
            "envid_lease_self_preservation",
            "1 while leases are kept past their end because renewals collapsed",
            lease_preservation.clone(),
        );
        let leases_held = Gauge::default();
        registry.register(
            "envid_leases_held",
            "Leases past their end kept by self-preservation",
            leases_held.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "envid_registration_refusals",
            "Registration requests (PUT, renew, DELETE) refused, by reason",
            refusals.clone(),
        );
        let apps_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "envid_apps_reloads",
            "Apps file (credentials) reloads by result (ok, error)",
            apps_reloads.clone(),
        );
        let registration_open = Gauge::default();
        registry.register(
            "envid_registration_open",
            "1 when registration is open to anyone (--insecure-open-registration)",
            registration_open.clone(),
        );
        let credential_registrations = Family::<CredentialLabels, Counter>::default();
        registry.register(
            "envid_registrations_by_credential",
            "Accepted registrations by app and credential label (which credentials are in use)",
            credential_registrations.clone(),
        );
        let credential_last_used = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "envid_credential_last_used_seconds",
            "When each credential last registered or renewed (Unix time): one unused for a \
             lease period is safe to remove",
            credential_last_used.clone(),
        );
        let apps_file_stale = Gauge::default();
        registry.register(
            "envid_apps_file_stale",
            "1 while the apps file on disk is refused and an older one is in use",
            apps_file_stale.clone(),
        );
        let since_without_history = Counter::default();
        registry.register(
            "envid_replication_since_without_history",
            "Replication requests whose since names no history (replicas before histories)",
            since_without_history.clone(),
        );
        let etcd_credential_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "envid_etcd_credential_reloads",
            "etcd certificate or password file changes by result (ok: in use; error: \
             kept the previous ones)",
            etcd_credential_reloads.clone(),
        );
        let etcd_client_cert_not_after = Gauge::default();
        registry.register(
            "envid_etcd_client_cert_not_after_seconds",
            "When the etcd client certificate in use expires (Unix time; 0 without one)",
            etcd_client_cert_not_after.clone(),
        );
        Metrics {
            credential_registrations,
            credential_last_used,
            apps_file_stale,
            since_without_history,
            etcd_credential_reloads,
            etcd_client_cert_not_after,
            store_errors,
            etcd_round_trip,
            watch_lag,
            stale,
            refusals,
            apps_reloads,
            registration_open,
            registry,
            reload_refused,
            lease_preservation,
            leases_held,
            requests,
            ips_looked_up,
            reloads,
            version,
            records,
            registrations,
            renewals,
            deregistrations,
            expiries,
            rate_limited,
            long_polls,
            poll_window,
            registered,
            connections_open,
            connections_closed,
            connections_evicted,
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An idle connection is being closed to make room (counted as closed
    /// when its task ends).
    pub(crate) fn evicted(&self) {
        self.connections_evicted.inc();
    }

    pub(crate) fn connection_closed(&self, reason: &'static str) {
        self.connections_open.dec();
        self.connections_closed
            .get_or_create(&ConnLabels { reason })
            .inc();
    }

    pub(crate) fn limited(&self, reason: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { reason })
            .inc();
    }

    /// The OpenMetrics text of every metric, the registry gauges set first
    /// to the registry being served.
    pub(crate) fn encode(
        &self,
        version: u64,
        records: usize,
        registrations: usize,
    ) -> Result<String, std::fmt::Error> {
        self.version.set(version as i64);
        self.records.set(records as i64);
        self.registered.set(registrations as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    pub(crate) fn store_error(&self, kind: &'static str) {
        self.store_errors
            .get_or_create(&StoreErrorLabels { kind })
            .inc();
    }

    /// A registration request refused for `reason`.
    pub(crate) fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// A credential was used: `registered` for an accepted `PUT`, else a
    /// renewal.
    pub(crate) fn credential_used(&self, app: &str, credential: &str, registered: bool) {
        let labels = CredentialLabels {
            app: app.to_string(),
            credential: credential.to_string(),
        };
        if registered {
            self.credential_registrations.get_or_create(&labels).inc();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.credential_last_used
            .get_or_create(&labels)
            .set(now as i64);
    }

    /// Sets `envid_registration_open`.
    pub(crate) fn set_registration_open(&self, open: bool) {
        self.registration_open.set(i64::from(open));
    }

    pub(crate) fn apps_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.apps_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn etcd_credentials_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.etcd_credential_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        if ok {
            self.reload_refused.set(0);
        }
    }

    /// A reload refused as a mass deletion (`result="refused"`).
    pub(crate) fn reload_refused(&self) {
        self.reloads
            .get_or_create(&ReloadLabels { result: "refused" })
            .inc();
        self.reload_refused.set(1);
    }

    /// Lease self-preservation: whether in force, and the leases it holds.
    pub(crate) fn preservation(&self, on: bool, held: usize) {
        self.lease_preservation.set(i64::from(on));
        self.leases_held.set(held as i64);
    }
}
