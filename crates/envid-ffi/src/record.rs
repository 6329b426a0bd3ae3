//! What the lookup client, the replica and the registrar share at the
//! boundary: IP parsing, and (for the first two) a record's JSON.

use std::net::IpAddr;

use envid::client::ClientError;
use envid::protocol::HostRecord;

use crate::error::{envid_result, Fail, FfiResult};

pub(crate) fn parse_ip(s: &str) -> FfiResult<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| Fail::from(ClientError::InvalidIp { input: s.into() }))
}

pub(crate) fn record_json(r: &HostRecord) -> FfiResult<String> {
    serde_json::to_string(r)
        .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))
}
