//! Lookups: `GET /v1/hosts/{ip}` and `POST /v1/hosts/lookup`.

use std::collections::HashSet;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use envid::protocol::{HostRecord, LookupRequest};
use serde::ser::SerializeMap;
use serde::Serialize;

use super::{body_or_error, error, parse_ip, AppState};

pub(crate) async fn get_host(
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

pub(crate) async fn lookup(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
