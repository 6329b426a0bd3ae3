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
            // The head's values are slices of hyper's read buffer: held
            // through the wait they keep it alive, and hyper allocates
            // another for the next read.
            drop(headers);
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
    let current = state.store.snapshot();
    // When thousands wait, a poll is paced even with changes already
    // there: answered at once, a replica back every 200 ms finds changes
    // every time during a wave and is never paced again (at 10,000
    // replicas they all drifted there: 2.6 M answers instead of 1.2 M).
    let pacing = !wait.is_zero() && state.limits.pacing();
    // Asked with changes already there (a replica back between two changes
    // of a wave): most likely the very delta its peers were just sent.
    let pending = match cached_delta(state, &current, since) {
        Some((version, body)) if !pacing => {
            return Ok(delta_response(&current.history, version, body))
        }
        Some(_) => true,
        None => {
            let delta = state.store.changes_since(since).map_err(gone)?;
            let empty = delta.upserts.is_empty() && delta.deletes.is_empty();
            if wait.is_zero() || (!empty && !pacing) {
                let (version, body) = encode_and_keep(state, &current, since, &delta);
                return Ok(delta_response(&current.history, version, body));
            }
            !empty
        }
    };
    drop(current);
    let limits = state.limits.clone();
    let refuse = |message: String| {
        state.metrics.limited("long_polls");
        ApiError::new(ErrorCode::TooManyLongPolls, message).retry_after(Duration::from_secs(1))
    };
    // A poll with changes waiting for it is paced only when there is room:
    // never refused for it.
    let Some(_slot) = Slot::take(&limits.long_polls, limits.max_long_polls) else {
        if pending {
            return delta_now(state, since);
        }
        return Err(refuse(format!(
            "{} long polls are already waiting; retry later",
            limits.max_long_polls
        )));
    };
    let Some(_client_slot) = limits.long_polls_per_client.take(poller.client) else {
        if pending {
            return delta_now(state, since);
        }
        return Err(refuse(format!(
            "{} has {} long polls waiting, the most one client address may; retry later",
            poller.client, limits.long_polls_per_client.max
        )));
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
    let (changed, closing) = if pending {
        (true, false)
    } else {
        tokio::select! {
            _ = changes.wait_for(|v| *v > since) => (true, false),
            _ = tokio::time::sleep(wait) => (false, false),
            _ = shutdown.wait_for(|d| *d) => (false, false),
            () = preempted => (false, true),
        }
    };
    let window = limits.coalesce_window();
    if changed {
        state.metrics.poll_window.set(window.as_secs_f64());
    }
    if changed && !window.is_zero() {
        // Changes come in bursts (a deploy wave): gather the rest of the
        // burst so every waiting replica gets it in one delta, and pace
        // the answers when thousands wait.
        tokio::select! {
            _ = tokio::time::sleep(window) => {}
            _ = shutdown.wait_for(|d| *d) => {}
        }
    }
    state.metrics.long_polls.dec();
    Ok(close_if(closing, delta_now(state, since)?))
}

/// The delta from `since` to the store's current version. Every poll a
/// change woke asks the same question: answered once.
fn delta_now(state: &AppState, since: u64) -> Result<Response, ApiError> {
    let current = state.store.snapshot();
    let (version, body) = match cached_delta(state, &current, since) {
        Some(hit) => hit,
        None => {
            let delta = state.store.changes_since(since).map_err(gone)?;
            encode_and_keep(state, &current, since, &delta)
        }
    };
    Ok(delta_response(&current.history, version, body))
}

fn gone(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::Gone,
        format!("{e}; fetch the whole registry (GET /v1/registry)"),
    )
}

/// Encoded deltas kept: one per `since` asked at the current version.
/// During a release wave the replicas come back between changes from a
/// handful of versions each (they poll every 200 ms, the changes land
/// every few ms); each of those deltas is encoded once and its bytes
/// shared, not encoded once per replica.
const DELTAS_CACHED: usize = 64;

/// The delta from `since` to `current` as `(version, body)`, when a
/// replica asked for it since the store reached `current`.
fn cached_delta(
    state: &AppState,
    current: &crate::store::Snapshot,
    since: u64,
) -> Option<(u64, Bytes)> {
    lock(&state.delta_cache)
        .iter()
        .find(|c| c.since == since && c.at == current.version && *c.history == *current.history)
        .map(|c| (c.version, c.body.clone()))
}

/// `delta` (from `since`) encoded, and kept for the next replica asking
/// the same at `current`'s version.
fn encode_and_keep(
    state: &AppState,
    current: &crate::store::Snapshot,
    since: u64,
    delta: &crate::store::Delta,
) -> (u64, Bytes) {
    let body = encode_delta(&current.history, delta);
    // Kept only when `changes_since` saw `current`'s version (it may have
    // seen a newer one), so an entry never claims the wrong version; and
    // never empty, so an entry never answers a poll that should wait.
    let empty = delta.upserts.is_empty() && delta.deletes.is_empty();
    if delta.version == current.version && !empty {
        let mut cache = lock(&state.delta_cache);
        // Entries of older versions are never asked for again.
        cache.retain(|c| c.at == current.version && *c.history == *current.history);
        if cache.len() >= DELTAS_CACHED {
            cache.remove(0);
        }
        cache.push(DeltaCache {
            since,
            at: current.version,
            history: current.history.clone(),
            version: delta.version,
            body: body.clone(),
        });
    }
    (delta.version, body)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A cache: nothing a panic half-way could leave inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
