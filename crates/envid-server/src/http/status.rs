//! The console's facts as JSON, for scripts: `GET /v1/changes?limit=N`
//! (the recent joins, leaves and changes), `GET /v1/refusals?limit=N`
//! (recent registration refusals and their counts by reason) and
//! `GET /v1/status` (the store, the protections, the last reload, the
//! signing keys, the version and history). Behind the read token like the
//! other reads. The console renders these same structures, so a page and
//! its JSON never disagree.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;

use super::state::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::leases::Preserving;
use crate::protection::RefusedReload;
use crate::recent::{RefusalView, Reload};
use crate::store::{Change, Health, StoreStatus};

/// `limit` when the query has none.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` (the refusals kept are fewer; the changes kept are
/// the store's `history_limit`).
pub(crate) const MAX_LIMIT: usize = 1000;
/// Keys listed per kind in one change: a reload can change every record,
/// and the page must stay small; the counts are always whole.
pub(crate) const KEYS_SHOWN: usize = 100;

/// `limit=N` of a query (1..=1000, default 50), or `400 invalid_query`.
pub(crate) fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("limit="))
    else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be a whole number from 1 to {MAX_LIMIT}, not {raw:?}"),
        )),
    }
}

/// One record a change added or replaced.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChangedRecord {
    /// Its key (IP or CIDR).
    pub(crate) key: String,
    pub(crate) app: Option<String>,
    pub(crate) env: String,
    pub(crate) idc: String,
}

/// One change, as the Changes page and `/v1/changes` show it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChangeView {
    pub(crate) version: u64,
    pub(crate) at_unix_ms: u64,
    /// How many keys joined, changed and left (whole counts).
    pub(crate) joins: usize,
    pub(crate) changes: usize,
    pub(crate) leaves: usize,
    /// The first [`KEYS_SHOWN`] of each.
    pub(crate) joined: Vec<ChangedRecord>,
    pub(crate) changed: Vec<ChangedRecord>,
    pub(crate) left: Vec<String>,
    /// Some keys were left out of the lists.
    pub(crate) truncated: bool,
}

impl ChangeView {
    fn of(c: &Change) -> ChangeView {
        let record = |r: &std::sync::Arc<envid::protocol::HostRecord>| ChangedRecord {
            key: r.key().map(|k| k.to_string()).unwrap_or_default(),
            app: r.app.clone(),
            env: r.env.clone(),
            idc: r.idc.clone(),
        };
        let joins = c.joins.min(c.upserts.len());
        let (joined, changed) = c.upserts.split_at(joins);
        ChangeView {
            version: c.version,
            at_unix_ms: c.at_unix_ms,
            joins,
            changes: changed.len(),
            leaves: c.deletes.len(),
            joined: joined.iter().take(KEYS_SHOWN).map(record).collect(),
            changed: changed.iter().take(KEYS_SHOWN).map(record).collect(),
            left: c
                .deletes
                .iter()
                .take(KEYS_SHOWN)
                .map(|k| k.to_string())
                .collect(),
            truncated: joined.len().max(changed.len()).max(c.deletes.len()) > KEYS_SHOWN,
        }
    }
}

/// `GET /v1/changes`: the current version and the last changes, newest first.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChangesView {
    pub(crate) history: String,
    pub(crate) version: u64,
    pub(crate) changes: Vec<ChangeView>,
}

/// The last `limit` changes the store retains, newest first.
pub(crate) fn changes(state: &AppState, limit: usize) -> ChangesView {
    let records = state.store.records();
    let snapshot = records.snapshot();
    ChangesView {
        history: snapshot.history.to_string(),
        version: snapshot.version,
        changes: records
            .recent_changes(limit)
            .iter()
            .map(|c| ChangeView::of(c))
            .collect(),
    }
}

/// The protections, in force or not, and how they are set.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProtectionView {
    /// The reload refused as a mass deletion, while one is.
    pub(crate) reload_refused: Option<RefusedReload>,
    /// `--allow-mass-delete`: such reloads are applied.
    pub(crate) mass_delete_allowed: bool,
    /// Lease self-preservation, while it holds leases.
    pub(crate) lease_self_preservation: Option<Preserving>,
    /// Lease self-preservation is on (not `--no-lease-preservation`).
    pub(crate) lease_preservation_enabled: bool,
}

/// One key of the served key set.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct KeyView {
    pub(crate) kid: String,
    /// It signs new identities (the others only verify older ones).
    pub(crate) signing: bool,
}

/// `GET /v1/status`: what the Health page shows.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StatusView {
    /// `ok`, `stale` or `starting`, as `/healthz` says.
    pub(crate) status: &'static str,
    /// Why not `ok`.
    pub(crate) reason: Option<String>,
    /// The service's build.
    pub(crate) service_version: &'static str,
    pub(crate) started_unix_ms: u64,
    pub(crate) version: u64,
    pub(crate) history: String,
    pub(crate) records: usize,
    pub(crate) static_records: usize,
    pub(crate) registrations: usize,
    /// `closed`, `apps` or `insecure_open`.
    pub(crate) registration: &'static str,
    pub(crate) store: StoreStatus,
    pub(crate) protection: ProtectionView,
    /// The last registry reload since start, if any.
    pub(crate) last_reload: Option<Reload>,
    pub(crate) keys: Vec<KeyView>,
    pub(crate) identity_lifetime_seconds: u64,
}

/// What the Health page and `/v1/status` show.
pub(crate) fn status(state: &AppState) -> StatusView {
    let records = state.store.records();
    let snapshot = records.snapshot();
    let (status, reason) = match state.store.health() {
        Health::Ok => ("ok", None),
        Health::Stale { reason } => ("stale", Some(reason)),
        Health::Starting { reason } => ("starting", Some(reason)),
    };
    let signing = state.identity.signing_kid();
    StatusView {
        status,
        reason,
        service_version: env!("CARGO_PKG_VERSION"),
        started_unix_ms: state.recent.started_unix_ms,
        version: snapshot.version,
        history: snapshot.history.to_string(),
        records: snapshot.records.len(),
        static_records: records.static_count(),
        registrations: records.registration_count(),
        registration: state.registration.as_str(),
        store: state.store.status(),
        protection: ProtectionView {
            reload_refused: state.reload_refusal.get(),
            mass_delete_allowed: state.allow_mass_delete,
            lease_self_preservation: state.preservation.get(),
            lease_preservation_enabled: state.lease_preservation,
        },
        last_reload: state.recent.last_reload(),
        keys: state
            .identity
            .key_set()
            .keys
            .iter()
            .map(|k| KeyView {
                kid: k.kid.clone(),
                signing: signing == Some(k.kid.as_str()),
            })
            .collect(),
        identity_lifetime_seconds: state.identity.lifetime_secs(),
    }
}

/// The refusals the console shows.
pub(crate) fn refusals(state: &AppState, limit: usize) -> RefusalView {
    state.recent.refusals(limit)
}

/// `GET /v1/changes?limit=N`.
pub(crate) async fn changes_json(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ChangesView>, ApiError> {
    Ok(Json(changes(&state, limit(query.as_deref())?)))
}

/// `GET /v1/refusals?limit=N`.
pub(crate) async fn refusals_json(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<RefusalView>, ApiError> {
    Ok(Json(refusals(&state, limit(query.as_deref())?)))
}

/// `GET /v1/status`.
pub(crate) async fn status_json(State(state): State<AppState>) -> Json<StatusView> {
    Json(status(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("x=1")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("x=1&limit=7")).unwrap(), 7);
        assert!(limit(Some("limit=0")).is_err());
        assert!(limit(Some("limit=1001")).is_err());
        assert!(limit(Some("limit=ten")).is_err());
    }
}
