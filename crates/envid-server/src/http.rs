//! The HTTP API (DESIGN.md, "The IP lookup protocol", lookups), the bearer
//! token check and the Prometheus metrics.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use envid::registry::{HostRecord, LookupRequest};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::store::Store;

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

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    ips_looked_up: Counter,
    pub(crate) reloads: Family<ReloadLabels, Counter>,
    version: Gauge,
    records: Gauge,
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
        Metrics {
            registry,
            requests,
            ips_looked_up,
            reloads,
            version,
            records,
        }
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) max_batch: usize,
    pub(crate) max_body_bytes: usize,
}

/// The router: lookups and `/metrics` behind the token (when one is set),
/// `/healthz` always open, JSON errors everywhere, metrics on every request.
pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let protected = Router::new()
        .route("/v1/hosts/lookup", post(lookup))
        .route("/v1/hosts/{ip}", get(get_host))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
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
        Some("/v1/hosts/{ip}") => "get_host",
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

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
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

async fn lookup(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "request body is larger than the limit of {} bytes",
                    state.max_body_bytes
                ),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", e.body_text()),
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
    for raw in &request.ips {
        match parse_ip(raw) {
            Ok(ip) => ips.push(ip),
            Err(r) => return *r,
        }
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
