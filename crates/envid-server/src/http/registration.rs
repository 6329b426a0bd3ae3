//! Registration: `PUT`/`DELETE /v1/hosts/{ip}`, `POST /v1/hosts/{ip}/renew`,
//! and the per-(app, IP) registration rate limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{path_ip, read_body, AppState};
use crate::error::{ApiError, ErrorCode};
use crate::registration_body::{
    parse_registration_body, parse_renewal_body, RegistrationBodyError,
};
use crate::store::Registration;

/// (app, IP): what the registration limit counts per.
type WindowKey = (Option<String>, IpAddr);

/// At most `limit` accepted registrations per (app, IP) within a sliding
/// `window`.
#[derive(Debug)]
pub(crate) struct RegistrationLimit {
    limit: usize,
    window: Duration,
    /// Accepted registrations per (app, IP) within the window, oldest first.
    windows: Mutex<HashMap<WindowKey, VecDeque<Instant>>>,
    last_prune: Mutex<Instant>,
}

impl RegistrationLimit {
    pub(crate) fn new(limit: usize, window: Duration) -> RegistrationLimit {
        RegistrationLimit {
            limit,
            window,
            windows: Mutex::default(),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Records a registration of (app, ip), or says how long until the
    /// window has room (and records nothing). A limit of 0 means no limit.
    fn admit(&self, app: Option<&str>, ip: IpAddr) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let q = windows.entry((app.map(str::to_owned), ip)).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.limit {
            let oldest = q[q.len() - self.limit];
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
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
        let window = self.window;
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < window));
    }
}

/// The IP in the path, IPv4-mapped IPv6 as IPv4: one registration per host
/// however its address is written.
fn canonical_path_ip(path: Result<Path<String>, PathRejection>) -> Result<IpAddr, ApiError> {
    path_ip(path).map(|ip| ip.to_canonical())
}

/// The path's IP and the parsed body of a registration call, or the error
/// (`400` naming the IP or the field, `413` past the body limit).
fn ip_and_body<T>(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(IpAddr, &[u8]) -> Result<T, RegistrationBodyError>,
) -> Result<(IpAddr, T), ApiError> {
    let ip = canonical_path_ip(path)?;
    let body = read_body(state, body)?;
    Ok((ip, parse(ip, &body)?))
}

pub(crate) async fn register(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (ip, (record, lease)) = ip_and_body(&state, path, body, parse_registration_body)?;
    let limit = &state.limits.registration;
    if let Err(retry_after) = limit.admit(record.app.as_deref(), ip) {
        state.metrics.limited("registration");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "more than {} registrations of {ip} (app {}) within {:?}; renew instead of re-registering",
                limit.limit,
                record.app.as_deref().unwrap_or("-"),
                limit.window
            ),
        )
        .retry_after(retry_after));
    }
    let owner = record.app.clone();
    // Answered only once the store made the registration durable.
    let ack = state
        .store
        .register(Registration {
            ip,
            record,
            lease_seconds: lease,
            owner,
        })
        .await?;
    state.metrics.registrations.inc();
    Ok(Json(serde_json::json!({
        "ip": ip,
        "lease_seconds": ack.lease_seconds,
        "version": ack.version,
    }))
    .into_response())
}

pub(crate) async fn renew(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // An optional body `{"lease_seconds": N}` changes the lease length.
    let (ip, lease) = ip_and_body(&state, path, body, |_, b| parse_renewal_body(b))?;
    match state.store.renew(ip, lease).await? {
        Some(lease) => {
            state.metrics.renewals.inc();
            Ok(Json(serde_json::json!({"ip": ip, "lease_seconds": lease})).into_response())
        }
        None => Err(ApiError::new(
            ErrorCode::NotRegistered,
            format!("{ip} is not registered (its lease may have ended); register it again"),
        )),
    }
}

pub(crate) async fn deregister(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let ip = canonical_path_ip(path)?;
    let was_registered = state.store.deregister(ip).await?;
    if was_registered {
        state.metrics.deregistrations.inc();
    }
    Ok(StatusCode::NO_CONTENT)
}
