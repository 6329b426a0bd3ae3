//! Replication: `GET /v1/registry` (the whole registry, with an `ETag`) and
//! `GET /v1/registry?since=N&wait=S` (the changes after N, long-polled).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use envid::protocol::{HostRecord, RecordKey};
use serde::{Deserialize, Serialize};

use super::{AppState, Slot};
use crate::error::{ApiError, ErrorCode};

#[derive(Deserialize)]
pub(crate) struct RegistryQuery {
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

pub(crate) async fn registry(
    State(state): State<AppState>,
    query: Result<Query<RegistryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!(
                "{} (expected ?since=N&wait=SECONDS, both whole numbers)",
                e.body_text()
            ),
        )
    })?;
    match query.since {
        None => Ok(registry_snapshot(&state, &headers)),
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

async fn registry_delta(
    state: &AppState,
    since: u64,
    wait: Duration,
) -> Result<Response, ApiError> {
    // Subscribe before looking, so a change landing in between still wakes us.
    let mut changes = state.store.subscribe();
    let mut delta = state.store.changes_since(since);
    if matches!(&delta, Ok(d) if d.upserts.is_empty() && d.deletes.is_empty()) && !wait.is_zero() {
        let limits = state.limits.clone();
        let Some(_slot) = Slot::take(&limits.long_polls, limits.max_long_polls) else {
            state.metrics.limited("long_polls");
            return Err(ApiError::new(
                ErrorCode::TooManyLongPolls,
                format!(
                    "{} long polls are already waiting; retry later",
                    limits.max_long_polls
                ),
            )
            .retry_after(Duration::from_secs(1)));
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
    let d = delta.map_err(|gone| {
        ApiError::new(
            ErrorCode::Gone,
            format!("{gone}; fetch the whole registry (GET /v1/registry)"),
        )
    })?;
    let out = DeltaOut {
        version: d.version,
        upserts: d.upserts.iter().map(|r| &**r).collect(),
        deletes: &d.deletes,
    };
    Ok(([(header::ETAG, etag(d.version))], Json(out)).into_response())
}
