//! The read-only console at `/ui/`: what is registered (Registry), what
//! changed (Changes), what was refused (Refusals) and whether the registry
//! is healthy (Health), as server-rendered HTML on the service's own
//! listener (so under its TLS), with one stylesheet and one small script
//! embedded in the binary. The same facts are JSON at `/v1/changes`,
//! `/v1/refusals` and `/v1/status` ([`super::status`]).
//!
//! Safe by construction: templates escape every value (`pages.rs`), every
//! answer carries a strict `Content-Security-Policy` (no inline script or
//! style, nothing from elsewhere, no framing) and `nosniff`, and nothing
//! here writes to the registry: every route is `GET` but the login.
//!
//! With a read token set, the console asks for it once (`POST /ui/login`)
//! and keeps a signed session cookie instead (`session.rs`, which says
//! why); a request with `Authorization: Bearer <token>` is let in too.
//! Failed logins count toward the per-address limit on failed
//! authentications, like a wrong token anywhere.

mod format;
mod pages;
mod registry;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use maud::Markup;
use serde::Deserialize;

use self::registry::Filter;
use self::session::{cookie, SessionKey, COOKIE, SESSION_SECONDS};
use super::auth;
use super::state::AppState;
use super::status;
use crate::error::ApiError;

/// Every console answer's policy: nothing but this origin's stylesheet,
/// script and images; forms post only here; never framed.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The console's routes (mounted by the router beside the API, outside
/// the read-token middleware: the console asks for the token itself).
pub(super) fn routes(state: AppState) -> Router<AppState> {
    let key = Arc::new(SessionKey::random());
    let pages = Router::new()
        .route("/ui/", get(registry_page))
        .route("/ui/registry", get(registry_page))
        .route("/ui/changes", get(changes_page))
        .route("/ui/refusals", get(refusals_page))
        .route("/ui/health", get(health_page))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
        .route("/ui/assets/favicon.svg", get(favicon))
        .merge(pages)
        .layer(Extension(key))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // login form, which the login's origin check must then refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Embedded in the binary: they change only with it.
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON)
}

fn now_secs() -> u64 {
    pages::now() / 1000
}

/// Whether the request may see the console: no read token set, a valid
/// session cookie, or the read token as a bearer token.
fn admitted(state: &AppState, key: Option<&SessionKey>, headers: &HeaderMap) -> Admission {
    let Some(expected) = &state.token_digest else {
        return Admission::In;
    };
    if let Some(given) = auth::bearer(headers) {
        return if auth::token_matches(given, expected) {
            Admission::In
        } else {
            Admission::WrongToken
        };
    }
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie(h, COOKIE));
    match (session, key) {
        (Some(value), Some(key)) if key.verify(value, now_secs()) => Admission::In,
        _ => Admission::Out,
    }
}

enum Admission {
    In,
    /// No (valid) session: the prompt. Not a failed authentication: a
    /// browser's first visit, or a session that ended.
    Out,
    /// A bearer token that is not the read token: counted as a failure.
    WrongToken,
}

fn peer_of(req_peer: Option<&ConnectInfo<SocketAddr>>) -> SocketAddr {
    req_peer.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// Lets a page through, or answers `401` with the token prompt (and no
/// data).
async fn require_session(
    State(state): State<AppState>,
    Extension(key): Extension<Arc<Option<SessionKey>>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match admitted(&state, key.as_ref().as_ref(), req.headers()) {
        Admission::In => Ok(next.run(req).await),
        Admission::Out => {
            let next_path = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_string();
            Ok(prompt(StatusCode::UNAUTHORIZED, &next_path, None))
        }
        Admission::WrongToken => {
            let peer = peer_of(req.extensions().get::<ConnectInfo<SocketAddr>>());
            let client = auth::client_of(peer, req.headers(), &state.trusted_proxies)?;
            let failures = &state.limits.auth_failures;
            if let Some(wait) = failures.blocked(client) {
                state.metrics.limited("auth_failures");
                return Err(failures.error(wait));
            }
            failures.failed(client);
            tracing::warn!(peer = %peer, client = %client, path = req.uri().path(), reason = "wrong bearer token", "console read refused");
            Ok(prompt(
                StatusCode::UNAUTHORIZED,
                "/ui/",
                Some("That is not the read token."),
            ))
        }
    }
}

fn prompt(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let mut response = (status, Html(pages::login(next, problem).into_string())).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // Scripts get the usual answer; a browser shows the page.
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Where a login may send the browser back to: a console page, never
/// another site (`//evil`) or the API, and only as visible ASCII (it
/// becomes a `Location` header, which must not carry a line break).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/ui/",
    }
}

async fn login_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if state.token_digest.is_none() {
        return Redirect::to("/ui/").into_response();
    }
    let next = format::query_pairs(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v);
    prompt(StatusCode::OK, safe_next(next.as_deref()), None)
}

/// The login form. The token is only compared (as a digest, in constant
/// time), never kept, logged or echoed.
#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Extension(key): Extension<Arc<Option<SessionKey>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.token_digest else {
        return Ok(Redirect::to("/ui/").into_response());
    };
    // SameSite keeps other sites' pages from sending the cookie; this
    // keeps them from posting a login (login CSRF) where browsers send
    // an Origin.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host {
            return Ok(prompt(
                StatusCode::FORBIDDEN,
                "/ui/",
                Some("The login came from another site's page."),
            ));
        }
    }
    let Ok(Form(form)) = form else {
        return Ok(prompt(
            StatusCode::BAD_REQUEST,
            "/ui/",
            Some("The form was not sent as a form."),
        ));
    };
    let next = safe_next(form.next.as_deref()).to_string();
    let client = auth::client_of(peer, &headers, &state.trusted_proxies)?;
    let failures = &state.limits.auth_failures;
    if let Some(wait) = failures.blocked(client) {
        state.metrics.limited("auth_failures");
        let message = format!(
            "Too many failed attempts from this address; try again in {} s.",
            wait.as_secs().max(1)
        );
        return Ok(prompt(StatusCode::TOO_MANY_REQUESTS, &next, Some(&message)));
    }
    if !auth::token_matches(form.token.trim(), expected) {
        failures.failed(client);
        tracing::warn!(peer = %peer, client = %client, reason = "wrong token", "console login refused");
        return Ok(prompt(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not the read token."),
        ));
    }
    let Some(key) = key.as_ref() else {
        return Ok(prompt(
            StatusCode::SERVICE_UNAVAILABLE,
            &next,
            Some("The service has no randomness for a session key; send the token as Authorization: Bearer instead."),
        ));
    };
    let expiry = now_secs() + SESSION_SECONDS;
    let secure = if state.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{secure}",
        key.issue(expiry)
    );
    tracing::info!(peer = %peer, client = %client, "console login");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of ASCII"),
    );
    Ok(response)
}

/// An HTML answer with how long the server took (`Server-Timing`, which
/// the browser's Performance API shows: the 100k test reads it).
fn html(started: Instant, markup: Markup) -> Response {
    let body = markup.into_string();
    let dur = started.elapsed().as_secs_f64() * 1000.0;
    let mut response = Html(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("render;dur={dur:.1}")) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

fn banner_of(state: &AppState) -> (String, u64, String, usize) {
    let snapshot = state.store.snapshot();
    let status = match state.store.health() {
        crate::store::Health::Ok => "ok",
        crate::store::Health::Stale { .. } => "stale",
        crate::store::Health::Starting { .. } => "starting",
    };
    let status = if state.reload_refusal.get().is_some() || state.preservation.get().is_some() {
        "protected"
    } else {
        status
    };
    (
        status.to_string(),
        snapshot.version,
        snapshot.history.to_string(),
        snapshot.records.len(),
    )
}

macro_rules! banner {
    ($state:expr, $b:ident) => {
        let parts = banner_of($state);
        let $b = pages::Banner {
            status: &parts.0,
            version: parts.1,
            history: &parts.2,
            records: parts.3,
        };
    };
}

async fn registry_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let filter = Filter::parse(query.as_deref());
    let records = state.store.records();
    let snapshot = records.snapshot();
    // A pass over the whole registry: off the async workers.
    let page = tokio::task::block_in_place(|| {
        let registered = records.registered_ips();
        registry::query(&snapshot, &registered, &filter, |keys| {
            records.details(keys)
        })
    });
    banner!(&state, b);
    html(started, pages::registry(&b, &filter, &page, pages::now()))
}

async fn changes_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let limit = status::limit(query.as_deref()).unwrap_or(status::DEFAULT_LIMIT);
    let v = status::changes(&state, limit);
    banner!(&state, b);
    html(started, pages::changes(&b, &v))
}

async fn refusals_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let limit = status::limit(query.as_deref()).unwrap_or(status::DEFAULT_LIMIT);
    let v = status::refusals(&state, limit);
    banner!(&state, b);
    html(started, pages::refusals(&b, &v))
}

async fn health_page(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let v = status::status(&state);
    banner!(&state, b);
    html(started, pages::health(&b, &v, pages::now()))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn logins_return_only_to_console_pages() {
        assert_eq!(safe_next(Some("/ui/health")), "/ui/health");
        assert_eq!(safe_next(Some("/ui/registry?app=x")), "/ui/registry?app=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(Some("https://evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("/v1/registry")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\r\nSet-Cookie: x=1")), "/ui/");
        assert_eq!(safe_next(Some("/ui/ü")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
