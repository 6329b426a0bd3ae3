//! Replication: `GET /v1/registry` (the whole registry, with an `ETag`) and
//! `GET /v1/registry?since=N&wait=S` (the changes after N, long-polled).
//!
//! Versions belong to a history (the store's: an etcd cluster id, or an id
//! made when an embedded store was created). Snapshots and deltas name it
//! (`history`, and the `ETag` `"H:N"`); a replica sends it back
//! (`&history=H`, or `since=H:N`) and a `since` of another history is `410`,
//! never a delta. A `since` without a history (an older replica) is taken
//! as one of the current history, as before.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use envid::protocol::{HostRecord, RecordKey};
use serde::{Deserialize, Serialize};

use super::auth;
use super::limits::Slot;
use super::state::{AppState, DeltaCache};
use crate::conn::Connection;
use crate::error::{ApiError, ErrorCode};

#[derive(Deserialize)]
pub(crate) struct RegistryQuery {
    /// `N` or `H:N`.
    since: Option<String>,
    wait: Option<u64>,
    history: Option<String>,
}

/// `GET /v1/registry` body (the fields of [`envid::protocol::RegistrySnapshot`]).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    history: &'a str,
    records: Vec<&'a HostRecord>,
}

/// `GET /v1/registry?since=N` body (the fields of [`envid::protocol::RegistryDelta`]).
#[derive(Serialize)]
struct DeltaOut<'a> {
    version: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    history: &'a str,
    upserts: Vec<&'a HostRecord>,
    deletes: &'a [RecordKey],
}

fn etag(history: &str, version: u64) -> HeaderValue {
    let tag = if history.is_empty() {
        format!("\"{version}\"")
    } else {
        format!("\"{history}:{version}\"")
    };
    HeaderValue::from_str(&tag).expect("hex digits, digits and quotes")
}

/// Does `If-None-Match` name this entity tag (weak comparison, `*` too)?
/// The tag without its history (`"N"`, what services before histories sent)
/// matches too: a replica holding it has the same version.
fn none_match(headers: &HeaderMap, tag: &HeaderValue, version: u64) -> bool {
    let tag = tag.to_str().unwrap_or_default();
    let bare = format!("\"{version}\"");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| {
            let t = t.trim_start_matches("W/");
            t == "*" || t == tag || t == bare
        })
}

pub(crate) async fn registry(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    conn: Option<Extension<Connection>>,
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
        Some(raw) => {
            let (history, since) = match raw.split_once(':') {
                Some((h, n)) => (Some(h.to_string()), n),
                None => (query.history.clone(), raw.as_str()),
            };
            if history.as_deref().is_none_or(str::is_empty) {
                // The compatibility path (a replica before histories):
                // counted, so an operator sees when it can go.
                state.metrics.since_without_history.inc();
            }
            let since: u64 = since.trim().parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!(
                        "since={raw:?} (expected ?since=N or ?since=HISTORY:N, N a whole number)"
                    ),
                )
            })?;
            let current = state.store.snapshot();
            if let Some(h) = history.filter(|h| !h.is_empty()) {
                if *h != *current.history {
                    return Err(ApiError::new(
                        ErrorCode::Gone,
                        format!(
                            "version {since} is of history {h}, this registry is history {}; fetch the whole registry (GET /v1/registry)",
                            if current.history.is_empty() { "(none)" } else { &current.history }
                        ),
                    ));
                }
            }
            if since > current.version {
                state.store.catch_up(since).await;
            }
            let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(state.limits.max_wait);
            // Long polls are counted per client address: a bad forwarded
            // header counts against the peer.
            let client = auth::client_of(peer, &headers, &state.trusted_proxies)
                .unwrap_or_else(|_| peer.ip().to_canonical());
            let poller = Poller {
                client,
                conn: conn.map(|c| c.0),
            };
            registry_delta(&state, since, wait, poller).await
        }
    }
}

fn registry_snapshot(state: &AppState, headers: &HeaderMap) -> Response {
    let snapshot = state.store.snapshot();
    let tag = etag(&snapshot.history, snapshot.version);
    if none_match(headers, &tag, snapshot.version) {
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
                history: &snapshot.history,
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

/// Who is long-polling: the client address its slot is counted against,
/// and its connection, which the accept loop may need back.
struct Poller {
    client: IpAddr,
    conn: Option<Connection>,
}

async fn registry_delta(
    state: &AppState,
    since: u64,
    wait: Duration,
    poller: Poller,
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
        let Some(_client_slot) = limits.long_polls_per_client.take(poller.client) else {
            state.metrics.limited("long_polls");
            return Err(ApiError::new(
                ErrorCode::TooManyLongPolls,
                format!(
                    "{} has {} long polls waiting, the most one client address may; retry later",
                    poller.client, limits.long_polls_per_client.max
                ),
            )
            .retry_after(Duration::from_secs(1)));
        };
        state.metrics.long_polls.inc();
        let mut shutdown = state.shutdown.clone();
        let _polling = poller.conn.as_ref().map(Connection::long_poll);
        let preempted = async {
            match &poller.conn {
                Some(c) => c.preempted().await,
                None => std::future::pending().await,
            }
        };
        // Preempted: the accept loop needs the connection. Answered as if
        // the wait had run out (the replica polls again at once), and closed.
        let (changed, closing) = tokio::select! {
            _ = changes.wait_for(|v| *v > since) => (true, false),
            _ = tokio::time::sleep(wait) => (false, false),
            _ = shutdown.wait_for(|d| *d) => (false, false),
            () = preempted => (false, true),
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
        // Every poll a change woke asks the same question: answered once.
        let current = state.store.snapshot();
        let cached = state
            .delta_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|c| {
                c.since == since && c.at == current.version && *c.history == *current.history
            })
            .map(|c| (c.version, c.body.clone()));
        if let Some((version, body)) = cached {
            return Ok(close_if(
                closing,
                delta_response(&current.history, version, body),
            ));
        }
        delta = state.store.changes_since(since);
        if let Ok(d) = &delta {
            let body = encode_delta(&current.history, d);
            *state.delta_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(DeltaCache {
                since,
                at: current.version,
                history: current.history.clone(),
                version: d.version,
                body: body.clone(),
            });
            return Ok(close_if(
                closing,
                delta_response(&current.history, d.version, body),
            ));
        }
    }
    let d = delta.map_err(|gone| {
        ApiError::new(
            ErrorCode::Gone,
            format!("{gone}; fetch the whole registry (GET /v1/registry)"),
        )
    })?;
    let history = state.store.snapshot().history.clone();
    let body = encode_delta(&history, &d);
    Ok(delta_response(&history, d.version, body))
}

fn encode_delta(history: &str, d: &crate::store::Delta) -> Bytes {
    let out = DeltaOut {
        version: d.version,
        history,
        upserts: d.upserts.iter().map(|r| &**r).collect(),
        deletes: &d.deletes,
    };
    Bytes::from(serde_json::to_vec(&out).expect("records always encode"))
}

/// `response`, with `Connection: close` when `closing`.
fn close_if(closing: bool, mut response: Response) -> Response {
    if closing {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn delta_response(history: &str, version: u64, body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag(history, version)),
        ],
        Body::from(body),
    )
        .into_response()
}
