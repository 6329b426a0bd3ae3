//! What the handlers share: the state ([`AppState`]) and the request
//! helpers every handler uses.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::Path;

use super::auth;
use super::limits::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::identity::Identity;
use crate::leases::Preservation;
use crate::metrics::Metrics;
use crate::protection::ReloadRefusal;
use crate::recent::Recent;
use crate::store::{RegistryStore, StoreError};

/// What the handlers share, behind one `Arc`: every request clones it
/// once per middleware layer and once for its handler, and a clone of the
/// fields themselves (20 `Arc`s and more) was 8% of the service's CPU
/// with 10,000 replicas polling (perf, the fleet bench).
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`]. Holds no token: only the read token's digest.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) metrics: Arc<Metrics>,
    /// The registry reload refused as a mass deletion, if any.
    pub(crate) reload_refusal: Arc<ReloadRefusal>,
    /// Whether lease self-preservation holds the leases.
    pub(crate) preservation: Arc<Preservation>,
    /// SHA-256 of the read token, when one is required.
    pub(crate) token_digest: Option<auth::TokenDigest>,
    /// Who may register.
    pub(crate) registration: auth::RegistrationMode,
    /// Registering loopback addresses is allowed (tests, development).
    pub(crate) allow_loopback_registration: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Arc<[ipnet::IpNet]>,
    pub(crate) max_batch: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) limits: Arc<Limits>,
    /// The renewal and removal limits.
    pub(crate) write_limits: Arc<super::write_limits::WriteLimits>,
    /// Turns true when the service starts draining (ends long polls early).
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// The encoded body of the last snapshot served, by version.
    pub(crate) snapshot_cache: Arc<Mutex<Option<(u64, Bytes)>>>,
    /// The encoded deltas at the current version, one per `since` asked.
    pub(crate) delta_cache: Arc<Mutex<Vec<DeltaCache>>>,
    /// Signing keys and the served key set (`issue_identity`).
    pub(crate) identity: Arc<Identity>,
    /// Recent refusals and the last reload (the console, `/v1/status`).
    pub(crate) recent: Arc<Recent>,
    /// The service speaks TLS (the console's cookie is `Secure` then).
    pub(crate) tls: bool,
    /// Reloads deleting most static records are applied (the console says).
    pub(crate) allow_mass_delete: bool,
    /// Lease self-preservation is on (the console says).
    pub(crate) lease_preservation: bool,
}

/// A delta encoded for the replicas at one version (see `replication.rs`).
#[derive(Debug)]
pub(crate) struct DeltaCache {
    /// The version the delta starts after.
    pub(super) since: u64,
    /// The store's version when it was computed.
    pub(super) at: u64,
    pub(super) history: Arc<str>,
    /// The version the delta brings a replica to.
    pub(super) version: u64,
    /// The encoded answer.
    pub(super) body: Bytes,
}

/// The request body, or the `413`/`400` error, or `408` (closing the
/// connection) when it has not all arrived within `body_read_timeout`.
///
/// Handlers take the body unread ([`Body`]) and call this only once the
/// caller is authenticated: a request refused on its token alone never
/// waits for its body, so bodies that never come hold no slot.
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let deadline = state.limits.body_read_timeout;
    let read = axum::body::to_bytes(body, state.max_body_bytes);
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "request body is larger than the limit of {} bytes",
                        state.max_body_bytes
                    ),
                ))
            } else {
                Err(ApiError::new(
                    ErrorCode::BadBody,
                    format!("failed to read the request body: {e}"),
                ))
            }
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            format!("the request body did not arrive within {deadline:?}"),
        )
        .closing()),
    }
}

/// The IP in the path, or the `400 invalid_ip` error naming it.
pub(crate) fn path_ip(path: Result<Path<String>, PathRejection>) -> Result<IpAddr, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::new(ErrorCode::InvalidIp, e.body_text()))?;
    raw.trim()
        .parse::<IpAddr>()
        .map_err(|_| ApiError::invalid_ip(&raw))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable { retry_after, .. } => {
                ApiError::new(ErrorCode::Unavailable, e.to_string()).retry_after(retry_after)
            }
            // The handlers turn it into the refusal naming the owner first.
            StoreError::NotOwner(_) => ApiError::new(ErrorCode::Internal, e.to_string()),
            StoreError::RegistrationChanged(_) => {
                ApiError::new(ErrorCode::RegistrationChanged, e.to_string())
            }
        }
    }
}
