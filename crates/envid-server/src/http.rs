//! The HTTP API (DESIGN.md, "The IP lookup protocol": lookups, replication,
//! registration), the bearer token checks, load shedding, the registration
//! rate limit and the Prometheus metrics.

// Handlers' helpers return the ready error `Response` as `Err`: a cold path,
// so its size does not matter, and boxing would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use envid::protocol::{HostRecord, LookupRequest, RecordKey};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use crate::store::{now_unix_ms, Store};
use crate::Config;

/// Labels of `envid_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    endpoint: &'static str,
    status: u16,
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

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    ips_looked_up: Counter,
    pub(crate) reloads: Family<ReloadLabels, Counter>,
    version: Gauge,
    records: Gauge,
    registrations: Counter,
    renewals: Counter,
    deregistrations: Counter,
    pub(crate) expiries: Counter,
    rate_limited: Family<LimitLabels, Counter>,
    long_polls: Gauge,
    registered: Gauge,
    connections_open: Gauge,
    connections_closed: Family<ConnLabels, Counter>,
    connections_evicted: Counter,
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
            "Registry file reloads by result (ok, error)",
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
        Metrics {
            registry,
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

    fn limited(&self, reason: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { reason })
            .inc();
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }
}

/// (app, IP): what the registration limit counts per.
type WindowKey = (Option<String>, IpAddr);

/// Load shedding and the registration rate limit.
#[derive(Debug)]
pub(crate) struct Limits {
    register_limit: usize,
    register_window: Duration,
    /// Accepted registrations per (app, IP) within the window, oldest first.
    windows: Mutex<HashMap<WindowKey, VecDeque<Instant>>>,
    last_prune: Mutex<Instant>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    long_polls: AtomicUsize,
    max_long_polls: usize,
    max_wait: Duration,
    poll_coalesce: Duration,
    request_timeout: Duration,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Limits {
        Limits {
            register_limit: config.register_limit,
            register_window: config.register_window,
            windows: Mutex::default(),
            last_prune: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: config.max_in_flight.max(1),
            long_polls: AtomicUsize::new(0),
            max_long_polls: config.max_long_polls,
            max_wait: config.max_wait,
            poll_coalesce: config.poll_coalesce,
            request_timeout: config.request_timeout,
        }
    }

    /// Records a registration of (app, ip), or says how long until the
    /// window has room (and records nothing). A limit of 0 means no limit.
    fn admit_registration(&self, app: Option<&str>, ip: IpAddr) -> Result<(), Duration> {
        if self.register_limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let q = windows.entry((app.map(str::to_owned), ip)).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.register_window)
        {
            q.pop_front();
        }
        if q.len() >= self.register_limit {
            let oldest = q[q.len() - self.register_limit];
            return Err(self
                .register_window
                .saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }

    /// Forgets (app, IP) pairs with no registration in the window (at most
    /// once a second).
    pub(crate) fn prune(&self) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < Duration::from_secs(1) {
                return;
            }
            *last = Instant::now();
        }
        let window = self.register_window;
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < window));
    }
}

/// Takes one slot of a counter capped at `max`, released on drop (also when
/// the request is cancelled).
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(counter);
        (before < max).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) registrar_token: Option<Arc<str>>,
    pub(crate) max_batch: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) limits: Arc<Limits>,
    /// Turns true when the service starts draining (ends long polls early).
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// The encoded body of the last snapshot served, by version.
    pub(crate) snapshot_cache: Arc<Mutex<Option<(u64, Bytes)>>>,
}

/// The router: lookups, replication and `/metrics` behind the read token,
/// registration behind the registrar token (each when set), `/healthz`
/// always open, JSON errors everywhere, load shedding and metrics on every
/// request.
pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let protected = Router::new()
        .route("/v1/hosts/lookup", post(lookup))
        .route(
            "/v1/hosts/{ip}",
            get(get_host).put(register).delete(deregister),
        )
        .route("/v1/hosts/{ip}/renew", post(renew))
        .route("/v1/registry", get(registry))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), shed_load))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// `429` + `Retry-After` (whole seconds, at least 1).
fn too_many(code: &str, message: impl Into<String>, retry_after: Duration) -> Response {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// Sheds requests past `max_in_flight` with `429`. Not counted: `/healthz`
/// (an orchestrator must not kill a busy service) and replication deltas
/// (`/v1/registry?since=…`), whose waiting long polls hold no work and are
/// capped separately by `max_long_polls`, so replicas waiting never shed
/// lookups.
async fn shed_load(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A body declared too large is refused before any of it is read (the
    // body limit alone would wait for it, for up to the request timeout).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return closing(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body is {} bytes; at most {} are accepted",
                declared.unwrap_or_default(),
                state.max_body_bytes
            ),
        ));
    }
    let path = req.uri().path();
    let exempt = path == "/healthz"
        || (path == "/v1/registry"
            && req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("since="))));
    if exempt {
        return next.run(req).await;
    }
    let limits = state.limits.clone();
    let Some(_slot) = Slot::take(&limits.in_flight, limits.max_in_flight) else {
        state.metrics.limited("overload");
        return too_many(
            "overloaded",
            format!(
                "the service is handling {} requests at once; retry later",
                limits.max_in_flight
            ),
            Duration::from_secs(1),
        );
    };
    // Bounds a request whose body trickles in (or never comes): it would
    // hold an in-flight slot and a connection for as long as the client likes.
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => closing(error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not complete within {:?}",
                limits.request_timeout
            ),
        )),
    }
}

/// Ends the connection after this response: the rest of the request body
/// was never read, so the connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A JSON error response: `{"error": {"code": "...", "message": "..."}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        code: &'a str,
        message: String,
    }
    let body = Body {
        error: Inner {
            code,
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

async fn count_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = match req.extensions().get::<MatchedPath>().map(|p| p.as_str()) {
        Some("/v1/hosts/{ip}") => match *req.method() {
            Method::PUT => "register",
            Method::DELETE => "deregister",
            _ => "get_host",
        },
        Some("/v1/hosts/{ip}/renew") => "renew",
        Some("/v1/registry") => "registry",
        Some("/v1/hosts/lookup") => "lookup",
        Some("/healthz") => "healthz",
        Some("/metrics") => "metrics",
        _ => "other",
    };
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { endpoint, status })
        .inc();
    response
}

/// Is this a registration request (registrar token) rather than a read?
fn is_registration(req: &Request) -> bool {
    match req.extensions().get::<MatchedPath>().map(|p| p.as_str()) {
        Some("/v1/hosts/{ip}") => matches!(*req.method(), Method::PUT | Method::DELETE),
        Some("/v1/hosts/{ip}/renew") => true,
        _ => false,
    }
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = if is_registration(&req) {
        &state.registrar_token
    } else {
        &state.token
    };
    if let Some(token) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let (code, message) = match given {
            None => (
                "unauthorized",
                "missing bearer token (Authorization: Bearer <token>)",
            ),
            Some(given) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                ("unauthorized", "wrong bearer token")
            }
            Some(_) => return next.run(req).await,
        };
        let mut response = error(StatusCode::UNAUTHORIZED, code, message);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses an IP, or the `400 invalid_ip` response naming it.
fn parse_ip(s: &str) -> Result<IpAddr, Box<Response>> {
    s.trim().parse::<IpAddr>().map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            format!("invalid IP address {s:?}"),
        ))
    })
}

async fn get_host(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(raw) = match path {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_ip", e.body_text()),
    };
    let ip = match parse_ip(&raw) {
        Ok(ip) => ip,
        Err(r) => return *r,
    };
    state.metrics.ips_looked_up.inc();
    let snapshot = state.store.snapshot();
    match snapshot.lookup(ip) {
        Some(record) => Json(&**record).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no record for {ip}"),
        ),
    }
}

/// `{"hosts": {...}}` in request order, each IP once.
struct Hosts<'a>(Vec<(&'a str, Option<&'a HostRecord>)>);

impl Serialize for Hosts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Map<'a, 'b>(&'b [(&'a str, Option<&'a HostRecord>)]);
        impl Serialize for Map<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (ip, record) in self.0 {
                    m.serialize_entry(ip, record)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("hosts", &Map(&self.0))?;
        m.end()
    }
}

/// The request body, or the `413`/`400` response.
fn body_or_error(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Response> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body is larger than the limit of {} bytes",
                state.max_body_bytes
            ),
        )),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, "bad_body", e.body_text())),
    }
}

async fn lookup(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_error(&state, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: LookupRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("invalid JSON body (expected {{\"ips\": [\"10.0.0.1\", ...]}}): {e}"),
            )
        }
    };
    if request.ips.len() > state.max_batch {
        return error(
            StatusCode::BAD_REQUEST,
            "too_many_ips",
            format!(
                "too many IPs: {} in one request, at most {} allowed; split the batch",
                request.ips.len(),
                state.max_batch
            ),
        );
    }
    let mut ips = Vec::with_capacity(request.ips.len());
    let mut bad = Vec::new();
    for (i, raw) in request.ips.iter().enumerate() {
        match raw.trim().parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => bad.push(format!("{raw:?} at index {i}")),
        }
    }
    if !bad.is_empty() {
        // Name them all (up to a screenful): a caller fixing one at a time
        // would otherwise need as many round trips as it has typos.
        const SHOWN: usize = 20;
        let more = bad.len().saturating_sub(SHOWN);
        let mut message = format!(
            "{} invalid IP address{} of {}: {}",
            bad.len(),
            if bad.len() == 1 { "" } else { "es" },
            request.ips.len(),
            bad[..bad.len().min(SHOWN)].join(", ")
        );
        if more > 0 {
            message.push_str(&format!(" and {more} more"));
        }
        return error(StatusCode::BAD_REQUEST, "invalid_ip", message);
    }
    state.metrics.ips_looked_up.inc_by(ips.len() as u64);
    let snapshot = state.store.snapshot();
    let mut seen = HashSet::with_capacity(ips.len());
    let hosts = request
        .ips
        .iter()
        .zip(&ips)
        .filter(|(raw, _)| seen.insert(raw.as_str()))
        .map(|(raw, ip)| (raw.as_str(), snapshot.lookup(*ip).map(|r| &**r)))
        .collect();
    Json(Hosts(hosts)).into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let snapshot = state.store.snapshot();
    Json(serde_json::json!({
        "status": "ok",
        "version": snapshot.version,
        "records": snapshot.records.len(),
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.store.snapshot();
    let m = &state.metrics;
    m.version.set(snapshot.version as i64);
    m.records.set(snapshot.records.len() as i64);
    m.registered.set(state.store.registration_count() as i64);
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding metrics: {e}"),
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

// ---------------------------------------------------------------------------
// Replication: GET /v1/registry[?since=N&wait=S]
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct RegistryQuery {
    since: Option<u64>,
    wait: Option<u64>,
}

/// `GET /v1/registry` body (the fields of [`envid::protocol::RegistrySnapshot`]).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u64,
    records: Vec<&'a HostRecord>,
}

/// `GET /v1/registry?since=N` body (the fields of [`envid::protocol::RegistryDelta`]).
#[derive(Serialize)]
struct DeltaOut<'a> {
    version: u64,
    upserts: Vec<&'a HostRecord>,
    deletes: &'a [RecordKey],
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes")
}

/// Does `If-None-Match` name this entity tag (weak comparison, `*` too)?
fn none_match(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.to_str().unwrap_or_default();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

async fn registry(
    State(state): State<AppState>,
    query: Result<Query<RegistryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!(
                    "{} (expected ?since=N&wait=SECONDS, both whole numbers)",
                    e.body_text()
                ),
            )
        }
    };
    match query.since {
        None => registry_snapshot(&state, &headers),
        Some(since) => {
            let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(state.limits.max_wait);
            registry_delta(&state, since, wait).await
        }
    }
}

fn registry_snapshot(state: &AppState, headers: &HeaderMap) -> Response {
    let snapshot = state.store.snapshot();
    let tag = etag(snapshot.version);
    if none_match(headers, &tag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    let cached = state
        .snapshot_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|(v, _)| *v == snapshot.version)
        .map(|(_, b)| b.clone());
    let body = match cached {
        Some(b) => b,
        None => {
            let out = SnapshotOut {
                version: snapshot.version,
                records: snapshot.records.values().map(|r| &**r).collect(),
            };
            let bytes = Bytes::from(serde_json::to_vec(&out).expect("records always encode"));
            let mut cache = state
                .snapshot_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if cache.as_ref().is_none_or(|(v, _)| *v < snapshot.version) {
                *cache = Some((snapshot.version, bytes.clone()));
            }
            bytes
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, tag),
        ],
        Body::from(body),
    )
        .into_response()
}

async fn registry_delta(state: &AppState, since: u64, wait: Duration) -> Response {
    // Subscribe before looking, so a change landing in between still wakes us.
    let mut changes = state.store.subscribe();
    let mut delta = state.store.changes_since(since);
    if matches!(&delta, Ok(d) if d.upserts.is_empty() && d.deletes.is_empty()) && !wait.is_zero() {
        let limits = state.limits.clone();
        let Some(_slot) = Slot::take(&limits.long_polls, limits.max_long_polls) else {
            state.metrics.limited("long_polls");
            return too_many(
                "too_many_long_polls",
                format!(
                    "{} long polls are already waiting; retry later",
                    limits.max_long_polls
                ),
                Duration::from_secs(1),
            );
        };
        state.metrics.long_polls.inc();
        let mut shutdown = state.shutdown.clone();
        let changed = tokio::select! {
            _ = changes.wait_for(|v| *v > since) => true,
            _ = tokio::time::sleep(wait) => false,
            _ = shutdown.wait_for(|d| *d) => false,
        };
        if changed && !limits.poll_coalesce.is_zero() {
            // Changes come in bursts (a deploy wave): gather the rest of the
            // burst so every waiting replica gets it in one delta.
            tokio::select! {
                _ = tokio::time::sleep(limits.poll_coalesce) => {}
                _ = shutdown.wait_for(|d| *d) => {}
            }
        }
        state.metrics.long_polls.dec();
        delta = state.store.changes_since(since);
    }
    match delta {
        Ok(d) => {
            let out = DeltaOut {
                version: d.version,
                upserts: d.upserts.iter().map(|r| &**r).collect(),
                deletes: &d.deletes,
            };
            ([(header::ETAG, etag(d.version))], Json(out)).into_response()
        }
        Err(gone) => error(
            StatusCode::GONE,
            "gone",
            format!("{gone}; fetch the whole registry (GET /v1/registry)"),
        ),
    }
}

// ---------------------------------------------------------------------------
// Registration: PUT/DELETE /v1/hosts/{ip}, POST /v1/hosts/{ip}/renew
// ---------------------------------------------------------------------------

/// The IP in the path (IPv4-mapped IPv6 as IPv4), or the `400` response.
fn path_ip(path: Result<Path<String>, PathRejection>) -> Result<IpAddr, Response> {
    let Path(raw) =
        path.map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_ip", e.body_text()))?;
    parse_ip(&raw).map(|ip| ip.to_canonical()).map_err(|r| *r)
}

/// The path's IP and the parsed body of a registration call, or the error
/// response (`400` naming the IP or the field, `413` past the body limit).
fn ip_and_body<T>(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(IpAddr, &[u8]) -> Result<T, crate::registration_body::RegistrationBodyError>,
) -> Result<(IpAddr, T), Response> {
    let ip = path_ip(path)?;
    let body = body_or_error(state, body)?;
    let parsed = parse(ip, &body).map_err(|e| error(StatusCode::BAD_REQUEST, e.code, e.message))?;
    Ok((ip, parsed))
}

async fn register(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (ip, (record, lease)) = match ip_and_body(
        &state,
        path,
        body,
        crate::registration_body::parse_registration_body,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(retry_after) = state.limits.admit_registration(record.app.as_deref(), ip) {
        state.metrics.limited("registration");
        return too_many(
            "rate_limited",
            format!(
                "more than {} registrations of {ip} (app {}) within {:?}; renew instead of re-registering",
                state.limits.register_limit,
                record.app.as_deref().unwrap_or("-"),
                state.limits.register_window
            ),
            retry_after,
        );
    }
    let change = state.store.register(ip, record, lease, now_unix_ms());
    state.metrics.registrations.inc();
    Json(serde_json::json!({
        "ip": ip,
        "lease_seconds": lease,
        "version": change.map_or_else(|| state.store.version(), |c| c.version),
    }))
    .into_response()
}

async fn renew(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // An optional body `{"lease_seconds": N}` changes the lease length.
    let (ip, lease) = match ip_and_body(&state, path, body, |_, b| {
        crate::registration_body::parse_renewal_body(b)
    }) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state.store.renew(ip, lease, now_unix_ms()) {
        Some(lease) => {
            state.metrics.renewals.inc();
            Json(serde_json::json!({"ip": ip, "lease_seconds": lease})).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "not_registered",
            format!("{ip} is not registered (its lease may have ended); register it again"),
        ),
    }
}

async fn deregister(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let ip = match path_ip(path) {
        Ok(ip) => ip,
        Err(r) => return r,
    };
    let (was_registered, _) = state.store.deregister(ip);
    if was_registered {
        state.metrics.deregistrations.inc();
    }
    StatusCode::NO_CONTENT.into_response()
}
