//! The lookup client's two requests: one IP, and a batch.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::client::{decode, not_found, ClientError, Method, Request, Transport};
use crate::protocol::{host_path, HostRecord, LookupRequest, LookupResponse, LOOKUP_PATH};

/// One batch answer: each IP asked for, known (`Some`) or unknown (`None`).
pub(super) type BatchAnswer = HashMap<IpAddr, Option<Arc<HostRecord>>>;

/// `GET /v1/hosts/{ip}`: `Ok(None)` for 404.
pub(super) fn get_host(
    t: &dyn Transport,
    endpoint: &str,
    ip: IpAddr,
) -> Result<Option<Arc<HostRecord>>, ClientError> {
    match t.send(&Request::new(Method::Get, endpoint, &host_path(ip)))? {
        None => Ok(None),
        Some(bytes) => Ok(Some(Arc::new(decode::<HostRecord>(endpoint, &bytes)?))),
    }
}

/// `POST /v1/hosts/lookup` with at most the service's batch limit of IPs.
pub(super) fn lookup_batch(
    t: &dyn Transport,
    endpoint: &str,
    ips: &[IpAddr],
) -> Result<BatchAnswer, ClientError> {
    let body = serde_json::to_vec(&LookupRequest::of(ips)).expect("a list of IPs always encodes");
    let bytes = t
        .send(&Request::new(Method::Post, endpoint, LOOKUP_PATH).json(&body))?
        .ok_or_else(|| not_found(endpoint))?;
    let parsed: LookupResponse = decode(endpoint, &bytes)?;
    let mut out = BatchAnswer::with_capacity(ips.len());
    for (k, v) in parsed.hosts {
        let ip = k.parse::<IpAddr>().map_err(|_| ClientError::Decode {
            endpoint: endpoint.to_string(),
            message: format!("answer keyed by {k:?}, not an IP address"),
        })?;
        out.insert(ip, v.map(Arc::new));
    }
    if let Some(missing) = ips.iter().find(|ip| !out.contains_key(ip)) {
        return Err(ClientError::Decode {
            endpoint: endpoint.to_string(),
            message: format!("answer lacks {missing}"),
        });
    }
    Ok(out)
}
