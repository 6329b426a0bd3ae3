//! The wire types of the environment service's HTTP protocol: the host
//! record every lookup answers with, the batch lookup bodies, and the
//! replication snapshot and delta. Clients and the service share these types,
//! so the JSON on the wire has one definition (see `ARCHITECTURE.md`, "Where
//! is that IP").
//!
//! The paths the clients send requests to are built here too ([`host_path`],
//! [`registry_poll_path`], …), and so is the one rule for which spelling of
//! an address a record is keyed by ([`canonical_ip`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::env_type::EnvType;
use crate::model::{ContainerInfo, K8s, Labels, Platform, Release};

/// One record of the environment service: the model's fields minus the token,
/// keyed by a single `ip` or a `cidr` range (exactly one of the two). Unknown
/// fields are ignored so older clients keep working with newer services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The single address this record is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The range this record is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<ipnet::IpNet>,
    /// Application code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Environment name.
    pub env: String,
    /// Environment class; derived from `env` by the built-in alias table when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_type: Option<EnvType>,
    /// Sub environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_env: Option<String>,
    /// Data center.
    pub idc: String,
    /// Host kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Container facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Release facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// Kubernetes facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8s>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The registration this record belongs to: an id the service assigns
    /// at each accepted `PUT /v1/hosts/{ip}` and keeps across renewals.
    /// An IP reused by another host (or registered again) is another
    /// registration, so a late leave of the previous one is never taken for
    /// the new one's. Absent on static records of the registry file and from
    /// services that predate it; never accepted from a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
}

/// The body of `POST /v1/hosts/lookup`: `{"ips": ["10.0.0.1", ...]}`. The
/// IPs stay text here so the service can name a bad one as it was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    /// The addresses asked about.
    pub ips: Vec<String>,
}

impl LookupRequest {
    /// The request for `ips`, in their order.
    pub fn of(ips: &[IpAddr]) -> LookupRequest {
        LookupRequest {
            ips: ips.iter().map(IpAddr::to_string).collect(),
        }
    }
}

/// The answer to `POST /v1/hosts/lookup`: each IP as sent, with its record
/// or `null` when unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// Records by IP.
    pub hosts: std::collections::HashMap<String, Option<HostRecord>>,
}

/// The body of `PUT /v1/hosts/{ip}`: the fields of the record an instance
/// registers, plus its lease. The one definition the registrar sends and
/// the service parses.
///
/// It has no `cidr` (ranges belong in the service's registry file), no
/// `env_type` (the service derives it from `env`, so a client cannot call
/// `beta` `prod`) and no token (records are served to anyone). `ip` may be
/// left out: the path names the IP, and a body `ip` must be the same
/// address. Unknown keys are refused, unlike in a [`HostRecord`] answer: a
/// misspelt key would otherwise register a record without the fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationBody {
    /// The address registered, if the body repeats the path's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Application code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Environment name.
    pub env: String,
    /// Sub environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_env: Option<String>,
    /// Data center.
    pub idc: String,
    /// Host kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Container facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Release facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// Kubernetes facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8s>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// How long the registration lives unless renewed, in seconds.
    pub lease_seconds: u64,
}

impl RegistrationBody {
    /// The body registering `record` for `lease_seconds`: its fields,
    /// without `ip` (the path has it), `cidr` and `env_type`.
    pub fn new(record: &HostRecord, lease_seconds: u64) -> RegistrationBody {
        let r = record.clone();
        RegistrationBody {
            ip: None,
            app: r.app,
            env: r.env,
            sub_env: r.sub_env,
            idc: r.idc,
            platform: r.platform,
            container: r.container,
            hostname: r.hostname,
            release: r.release,
            k8s: r.k8s,
            labels: r.labels,
            lease_seconds,
        }
    }

    /// The record this body registers: its fields and its `ip` as given
    /// (the service puts the path's in its place), no `cidr` and no
    /// `env_type`.
    pub fn into_record(self) -> HostRecord {
        HostRecord {
            ip: self.ip,
            cidr: None,
            app: self.app,
            env: self.env,
            env_type: None,
            sub_env: self.sub_env,
            idc: self.idc,
            platform: self.platform,
            container: self.container,
            hostname: self.hostname,
            release: self.release,
            k8s: self.k8s,
            labels: self.labels,
            registration: None,
        }
    }
}

impl HostRecord {
    /// This record with `env_type` filled in from the built-in alias table
    /// when it has none (the service serves every record classified, so
    /// clients in every language agree on the class).
    pub fn with_env_type(mut self) -> HostRecord {
        if self.env_type.is_none() {
            self.env_type = Some(EnvType::of_env(&self.env));
        }
        self
    }

    /// The key this record is stored under: its `ip` in its one canonical
    /// form ([`canonical_ip`]: `::ffff:10.0.0.1` is `10.0.0.1`), else its
    /// `cidr` (`None` only for a record that has neither, which the parser
    /// refuses). Canonical here so that no store, table or replica can key
    /// one host under two spellings and answer differently for it.
    pub fn key(&self) -> Option<RecordKey> {
        match (self.ip, self.cidr) {
            (Some(ip), _) => Some(RecordKey::Ip(canonical_ip(ip))),
            (None, Some(net)) => Some(RecordKey::Net(net)),
            (None, None) => None,
        }
    }
}

/// What a registry record is keyed by: a single address or a range. Printed as
/// `10.0.0.1` or `10.1.0.0/16` (the form replication deltas use for deletes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    /// A single address.
    Ip(IpAddr),
    /// A range (always in canonical form: no host bits set).
    Net(ipnet::IpNet),
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Ip(ip) => write!(f, "{ip}"),
            RecordKey::Net(net) => write!(f, "{net}"),
        }
    }
}

impl FromStr for RecordKey {
    type Err = String;
    /// `10.0.0.1` → `Ip`, `10.1.0.0/16` → `Net`; a range with host bits set is
    /// refused. An address is kept in its canonical form ([`canonical_ip`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            let net: ipnet::IpNet = s.parse().map_err(|_| format!("invalid CIDR {s:?}"))?;
            if net.trunc() != net {
                return Err(format!(
                    "CIDR {s:?} has host bits set (did you mean \"{}\"?)",
                    net.trunc()
                ));
            }
            Ok(RecordKey::Net(net))
        } else {
            s.parse()
                .map(|ip| RecordKey::Ip(canonical_ip(ip)))
                .map_err(|_| format!("invalid IP address {s:?}"))
        }
    }
}

impl Serialize for RecordKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The address a record is keyed and looked up by: an IPv4-mapped IPv6
/// address (`::ffff:10.0.0.1`) is its IPv4 address (`10.0.0.1`), any other
/// address is itself. Clients and the service apply this one rule, so both
/// spellings of an address find the same record.
#[inline]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// `POST`: the batch lookup, a [`LookupRequest`] answered by a [`LookupResponse`].
pub const LOOKUP_PATH: &str = "/v1/hosts/lookup";

/// `GET`: the whole registry, a [`RegistrySnapshot`] (see
/// [`registry_poll_path`] for the deltas).
pub const REGISTRY_PATH: &str = "/v1/registry";

/// `GET`: the service's public keys, a JWK set (signed identities).
pub const KEYS_PATH: &str = "/v1/keys";

/// `/v1/hosts/{ip}`: `GET` answers the [`HostRecord`] of `ip`, `PUT`
/// registers it, `DELETE` removes its registration.
pub fn host_path(ip: IpAddr) -> String {
    format!("/v1/hosts/{ip}")
}

/// `/v1/hosts/{ip}/renew`: `POST` extends the lease of `ip`'s registration.
pub fn renew_path(ip: IpAddr) -> String {
    format!("/v1/hosts/{ip}/renew")
}

/// `/v1/registry?since=N&wait=S[&history=H]`: the long poll for the
/// [`RegistryDelta`] after version `since`, which the service may hold for
/// `wait_seconds` when nothing changed. `history` is the history `since`
/// belongs to ([`RegistrySnapshot::history`]); it is left out unless it is
/// plain letters and digits.
pub fn registry_poll_path(since: u64, wait_seconds: u64, history: Option<&str>) -> String {
    let mut path = format!("{REGISTRY_PATH}?since={since}&wait={wait_seconds}");
    if let Some(h) = history {
        // Histories are hex or decimal digits: nothing to escape; anything
        // else would not be ours, and the service answers 410 to it.
        if h.bytes().all(|b| b.is_ascii_alphanumeric()) {
            path.push_str("&history=");
            path.push_str(h);
        }
    }
    path
}

// ---------------------------------------------------------------------------
// Replication wire types
// ---------------------------------------------------------------------------

/// The body of `GET /v1/registry`: the whole registry at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// The registry version (also the `ETag`, as `"N"`, or `"H:N"` with a history).
    pub version: u64,
    /// The history the version belongs to (the service's store: an etcd
    /// cluster id, or an id made when an embedded store was created). A
    /// version means something only within its history: a replica sends it
    /// back with `since`, and a service on another history answers `410`.
    /// `None` from a service that predates histories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Every record (static file records and registered ones), in key order.
    #[serde(default)]
    pub records: Vec<HostRecord>,
}

/// The body of `GET /v1/registry?since=N`: what changed after version `N`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryDelta {
    /// The version the delta brings a replica to (the current version).
    pub version: u64,
    /// The history of `version` (see [`RegistrySnapshot::history`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Records added or replaced after `N` (the latest state of each key).
    #[serde(default)]
    pub upserts: Vec<HostRecord>,
    /// Keys (`10.0.0.1`, `10.1.0.0/16`) removed after `N` and not re-added.
    #[serde(default)]
    pub deletes: Vec<RecordKey>,
}

impl RegistryDelta {
    /// True when the delta changes nothing (a long poll that timed out).
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// The keys a registry record may have (anything else is refused as a typo).
pub const RECORD_KEYS: &[&str] = &[
    "ip",
    "cidr",
    "app",
    "env",
    "env_type",
    "sub_env",
    "idc",
    "platform",
    "container",
    "hostname",
    "release",
    "k8s",
    "labels",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RecordKey {
        s.parse().unwrap()
    }

    #[test]
    fn record_key_text() {
        assert_eq!(key("10.0.0.1"), RecordKey::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(key("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert!("10.1.0.1/16"
            .parse::<RecordKey>()
            .unwrap_err()
            .contains("10.1.0.0/16"));
        assert!("nope".parse::<RecordKey>().is_err());
    }

    #[test]
    fn canonical_ip_unmaps_ipv4_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(canonical_ip(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(canonical_ip(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        // IPv4-compatible (deprecated) addresses stay IPv6, as on the service.
        assert_eq!(canonical_ip(ip("::10.0.0.1")), ip("::10.0.0.1"));
    }

    #[test]
    fn keys_are_canonical_however_the_address_is_written() {
        let mapped: HostRecord =
            serde_json::from_str(r#"{"ip": "::ffff:10.0.0.1", "env": "prod", "idc": "cn0"}"#)
                .unwrap();
        let plain: RecordKey = "10.0.0.1".parse().unwrap();
        assert_eq!(mapped.key(), Some(plain));
        assert_eq!("::ffff:10.0.0.1".parse::<RecordKey>(), Ok(plain));
    }

    #[test]
    fn paths() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(host_path(ip), "/v1/hosts/10.0.0.1");
        assert_eq!(renew_path(ip), "/v1/hosts/10.0.0.1/renew");
        assert_eq!(
            registry_poll_path(7, 10, Some("ab12")),
            "/v1/registry?since=7&wait=10&history=ab12"
        );
        assert_eq!(
            registry_poll_path(7, 10, Some("a&b")),
            "/v1/registry?since=7&wait=10"
        );
        assert_eq!(
            registry_poll_path(0, 1, None),
            "/v1/registry?since=0&wait=1"
        );
    }

    #[test]
    fn registration_body_is_the_record_without_key_class_or_token() {
        let record: HostRecord = serde_json::from_value(serde_json::json!({
            "ip": "10.0.0.5", "cidr": "10.0.0.0/8", "app": "a", "env": "beta",
            "env_type": "prod", "idc": "cn0", "labels": {"team": "air"}
        }))
        .unwrap();
        let body = serde_json::to_value(RegistrationBody::new(&record, 90)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"app": "a", "env": "beta", "idc": "cn0",
                "labels": {"team": "air"}, "lease_seconds": 90})
        );
        let back: RegistrationBody = serde_json::from_value(body).unwrap();
        let r = back.into_record();
        assert_eq!((r.ip, r.cidr, r.env_type), (None, None, None));
        assert_eq!(r.labels.get("team").map(String::as_str), Some("air"));
        for bad in [
            serde_json::json!({"env": "b", "idc": "c", "lease_seconds": 1, "evn": "x"}),
            serde_json::json!({"env": "b", "idc": "c", "lease_seconds": 1, "cidr": "10.0.0.0/8"}),
            serde_json::json!({"env": "b", "idc": "c", "lease_seconds": 1, "env_type": "prod"}),
            serde_json::json!({"env": "b", "idc": "c", "lease_seconds": 1, "token": "t"}),
            serde_json::json!({"env": "b", "idc": "c"}),
        ] {
            assert!(
                serde_json::from_value::<RegistrationBody>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
