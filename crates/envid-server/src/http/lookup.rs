//! Lookups: `GET /v1/hosts/{ip}` and `POST /v1/hosts/lookup`.

use std::collections::HashSet;
use std::net::IpAddr;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use envid::protocol::{HostRecord, LookupRequest};
use serde::ser::SerializeMap;
use serde::Serialize;

use super::state::{path_ip, read_body, AppState};
use crate::error::{ApiError, ErrorCode};

pub(crate) async fn get_host(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ip = path_ip(path)?;
    state.metrics.ips_looked_up.inc();
    let snapshot = state.store.snapshot();
    match snapshot.lookup(ip) {
        Some(record) => Ok(Json(&**record).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no record for {ip}"),
        )),
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
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&state, body).await?;
    let request: LookupRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON body (expected {{\"ips\": [\"10.0.0.1\", ...]}}): {e}"),
        )
    })?;
    if request.ips.len() > state.max_batch {
        return Err(ApiError::new(
            ErrorCode::TooManyIps,
            format!(
                "too many IPs: {} in one request, at most {} allowed; split the batch",
                request.ips.len(),
                state.max_batch
            ),
        ));
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
        return Err(ApiError::new(ErrorCode::InvalidIp, message));
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
    Ok(Json(Hosts(hosts)).into_response())
}
