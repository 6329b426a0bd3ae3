//! The HTTP API (see ARCHITECTURE.md, "Where is that IP", and the README):
//! the router and the middleware every request passes (bearer-token check,
//! load shedding, request metrics). What the handlers share is in
//! [`state`], the limits on callers in [`limits`]; the handlers live by
//! subject: [`lookup`], [`replication`], [`registration`], [`keys`],
//! [`status`] (the console's facts as JSON) and [`console`] (the read-only
//! console at `/ui/`).

pub(crate) mod auth;
mod console;
mod keys;
pub(crate) mod limits;
mod lookup;
mod registration;
mod replication;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod write_limits;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use self::limits::Slot;
use self::lookup::{get_host, lookup};
use self::registration::{deregister, register, renew};
use self::replication::registry;
use self::state::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::RequestLabels;
use crate::store::Health;

/// The router: lookups, replication and `/metrics` behind the read token
/// (when set), registration behind the apps file's tokens (its handlers
/// authenticate: see `registration`), `/healthz`
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
        .route("/v1/changes", get(status::changes_json))
        .route("/v1/refusals", get(status::refusals_json))
        .route("/v1/status", get(status::status_json))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit_read));
    Router::new()
        .route("/healthz", get(healthz))
        // Public keys need no token: any server verifies identities.
        .route("/v1/keys", get(keys::keys))
        .merge(protected)
        // The console asks for the read token itself (a prompt, not a 401
        // JSON body), so it is outside `require_token`.
        .merge(console::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One layer each for every request and for the protected routes:
        // a waiting long poll holds every layer's boxed future, and two
        // fewer were 2 KiB less per waiting replica (BENCHMARKS.md).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_and_shed,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Sheds requests past `max_in_flight` with `429`. Not counted: `/healthz`
/// (an orchestrator must not kill a busy service) and replication deltas
/// (`/v1/registry?since=…`), whose waiting long polls hold no work and are
/// capped separately by `max_long_polls`, so replicas waiting never shed
/// lookups.
async fn shed_load(state: &AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    // A body declared too large is refused before any of it is read (the
    // body limit alone would wait for it, for up to the request timeout).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > state.max_body_bytes as u64) {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "the body is {n} bytes; at most {} are accepted",
                state.max_body_bytes
            ),
        )
        .closing());
    }
    let path = req.uri().path();
    let exempt = path == "/healthz"
        || (path == "/v1/registry"
            && req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("since="))));
    if exempt {
        return Ok(next.run(req).await);
    }
    let limits = state.limits.clone();
    // A request with a body may wait for it (up to `body_read_timeout`):
    // those never take the last eighth of the slots, which stays for
    // lookups by path.
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let cap = if has_body {
        limits.max_in_flight_with_body
    } else {
        limits.max_in_flight
    };
    let Some(_slot) = Slot::take(&limits.in_flight, cap) else {
        state.metrics.limited("overload");
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the service is handling {} requests at once; retry later",
                limits.max_in_flight
            ),
        )
        .retry_after(Duration::from_secs(1)));
    };
    // One address never takes every slot (a bad forwarded header counts
    // against the peer; the handler refuses it).
    let peer = peer_of(&req);
    let client = auth::client_of(peer, req.headers(), &state.trusted_proxies)
        .unwrap_or_else(|_| peer.ip().to_canonical());
    let Some(_client_slot) = limits.in_flight_per_client.take(client) else {
        state.metrics.limited("overload");
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "{client} has {} requests in flight, the most one client address may; retry later",
                limits.in_flight_per_client.max
            ),
        )
        .retry_after(Duration::from_secs(1)));
    };
    // Bounds a request whose body trickles in (or never comes): it would
    // hold an in-flight slot and a connection for as long as the client likes.
    tokio::time::timeout(limits.request_timeout, next.run(req))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "the request was not complete within {:?}",
                    limits.request_timeout
                ),
            )
            .closing()
        })
}

/// Every request: shed past the limits (see [`shed_load`]) and counted by
/// endpoint and status, refusals included.
async fn count_and_shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
        Some("/v1/keys") => "keys",
        Some("/metrics") => "metrics",
        Some("/v1/changes" | "/v1/refusals" | "/v1/status") => "status",
        Some(p) if p.starts_with("/ui") => "console",
        _ => "other",
    };
    let response = shed_load(&state, req, next).await.into_response();
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { endpoint, status })
        .inc();
    response
}

/// The connection's peer (set by the accept loop on every request).
fn peer_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// Is this a registration request (authenticated by its handler with the
/// apps file's tokens) rather than a read?
fn is_registration(req: &Request) -> bool {
    match req.extensions().get::<MatchedPath>().map(|p| p.as_str()) {
        Some("/v1/hosts/{ip}") => matches!(*req.method(), Method::PUT | Method::DELETE),
        Some("/v1/hosts/{ip}/renew") => true,
        _ => false,
    }
}

/// The protected routes: the read token first (see [`check_read_token`]),
/// then the store's readiness (see [`check_ready`]).
async fn admit_read(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_read_token(&state, &req)?;
    check_ready(&state)?;
    Ok(next.run(req).await)
}

/// The read token: compared by SHA-256 digest in constant time, failures
/// counted per client address (past the limit, `429`). Registrations
/// authenticate in their handlers, with the apps file's tokens.
fn check_read_token(state: &AppState, req: &Request) -> Result<(), ApiError> {
    if is_registration(req) {
        return Ok(());
    }
    let Some(expected) = &state.token_digest else {
        return Ok(());
    };
    let peer = peer_of(req);
    let client = auth::client_of(peer, req.headers(), &state.trusted_proxies)?;
    let failures = &state.limits.auth_failures;
    if let Some(wait) = failures.blocked(client) {
        state.metrics.limited("auth_failures");
        return Err(failures.error(wait));
    }
    let error = match auth::bearer(req.headers()) {
        None => "missing bearer token (Authorization: Bearer <token>)",
        Some(given) if !auth::token_matches(given, expected) => "wrong bearer token",
        Some(_) => return Ok(()),
    };
    failures.failed(client);
    tracing::warn!(peer = %peer, client = %client, path = req.uri().path(), reason = error, "read refused");
    Err(ApiError::new(ErrorCode::Unauthorized, error))
}

/// Until the store has a view (etcd not reached yet) only `/healthz` is
/// answered; every other request is `503` saying why.
fn check_ready(state: &AppState) -> Result<(), ApiError> {
    match state.store.health() {
        Health::Starting { reason } => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("starting: no registry yet ({reason})"),
        )
        .retry_after(Duration::from_secs(1))),
        _ => Ok(()),
    }
}

/// What `/healthz` and the start-up banner say when registration is open.
pub(crate) const OPEN_REGISTRATION_WARNING: &str = "registration is open to anyone \
(--insecure-open-registration): any client can say where any IP runs; never use this in production";

/// How `/healthz` answers a request: whole to the read token's holder (or
/// to anyone when no read token is set), minimal to anyone else.
fn healthz_caller(state: &AppState, req: &Request) -> bool {
    let Some(expected) = &state.token_digest else {
        return true;
    };
    let Some(given) = auth::bearer(req.headers()) else {
        return false;
    };
    let peer = peer_of(req);
    let Ok(client) = auth::client_of(peer, req.headers(), &state.trusted_proxies) else {
        return false;
    };
    let failures = &state.limits.auth_failures;
    if failures.blocked(client).is_some() {
        return false;
    }
    if auth::token_matches(given, expected) {
        return true;
    }
    // A wrong token counts like anywhere else: the whole answer would
    // otherwise tell a guesser when it guessed right.
    failures.failed(client);
    false
}

/// `200 {"status": "ok"}`, `200 {"status": "stale", "reason"}` (reads are
/// served from a view the store cannot refresh; writes are refused) or
/// `503 {"status": "starting", "reason"}` (nothing served yet), with the
/// registration mode, the protections in force and the compatibility paths
/// in use. With a read token configured, a caller without it gets only the
/// status code, `status`, a `reason` class and the `attention` classes: a
/// load balancer needs the code, and nobody else needs the registry's size,
/// history, file paths or counts.
async fn healthz(State(state): State<AppState>, req: Request) -> Response {
    let whole = healthz_caller(&state, &req);
    let snapshot = state.store.snapshot();
    let (status, code, reason, class) = match state.store.health() {
        Health::Ok => ("ok", StatusCode::OK, None, None),
        Health::Stale { reason } => ("stale", StatusCode::OK, Some(reason), Some("store_stale")),
        Health::Starting { reason } => (
            "starting",
            StatusCode::SERVICE_UNAVAILABLE,
            Some(reason),
            Some("store_starting"),
        ),
    };
    let apps_stale = match &state.registration {
        auth::RegistrationMode::Apps(apps) => Some(apps.stale()),
        _ => None,
    };
    if !whole {
        let reload_refused = state.reload_refusal.get().is_some();
        let preserving = state.preservation.get().is_some();
        let attention: Vec<&str> = [
            ("reload_refused", reload_refused),
            ("lease_self_preservation", preserving),
            ("apps_file_stale", matches!(apps_stale, Some(Some(_)))),
            (
                "insecure_open_registration",
                matches!(state.registration, auth::RegistrationMode::Open),
            ),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let mut body = serde_json::json!({"status": status});
        if let Some(class) = class {
            body["reason"] = class.into();
        }
        if !attention.is_empty() {
            body["attention"] = attention.into();
        }
        return (code, Json(body)).into_response();
    }
    let mut body = serde_json::json!({
        "status": status,
        "version": snapshot.version,
        "records": snapshot.records.len(),
        "registration": state.registration.as_str(),
        "reload_refused": state.reload_refusal.get(),
        "lease_self_preservation": state.preservation.get(),
        // Kept for replicas from before histories, which send `since=N`
        // alone: refusing it would send each of them into a snapshot per
        // poll. Such a since is taken as one of the current history.
        "compatibility": {"since_without_history": "accepted"},
    });
    if let Some(stale) = apps_stale {
        body["apps_file"] = match stale {
            Some(s) => serde_json::json!(s),
            None => serde_json::json!({"stale": false}),
        };
    }
    if !snapshot.history.is_empty() {
        body["history"] = serde_json::Value::from(&*snapshot.history);
    }
    if let Some(reason) = reason {
        body["reason"] = serde_json::Value::from(reason);
    }
    if let Some(details) = state.store.health_details() {
        body["etcd"] = details;
    }
    if matches!(state.registration, auth::RegistrationMode::Open) {
        body["warning"] = OPEN_REGISTRATION_WARNING.into();
    }
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.store.snapshot();
    let text = state
        .metrics
        .encode(
            snapshot.version,
            snapshot.records.len(),
            state.store.registration_count(),
        )
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
