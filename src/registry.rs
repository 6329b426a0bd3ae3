//! Host records of the IP lookup protocol, the registry file, and the
//! longest-prefix table both the reference service and the replica client use.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LineIndex, Location};
use crate::model::{ContainerInfo, EnvType, K8s, Labels, Platform, Release};

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
}

/// The body of `POST /v1/hosts/lookup`: `{"ips": ["10.0.0.1", ...]}`. The
/// IPs stay text here so the service can name a bad one as it was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    /// The addresses asked about.
    pub ips: Vec<String>,
}

/// The answer to `POST /v1/hosts/lookup`: each IP as sent, with its record
/// or `null` when unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// Records by IP.
    pub hosts: std::collections::HashMap<String, Option<HostRecord>>,
}

impl HostRecord {
    /// This record with `env_type` filled in from the built-in alias table
    /// when it has none (the service serves every record classified, so
    /// clients in every language agree on the class).
    pub fn with_env_type(mut self) -> HostRecord {
        if self.env_type.is_none() {
            self.env_type = Some(crate::hostname::Rules::builtin_env_type_of(&self.env));
        }
        self
    }

    /// The key this record is stored under: its `ip`, else its `cidr`
    /// (`None` only for a record that has neither, which the parser refuses).
    pub fn key(&self) -> Option<RecordKey> {
        match (self.ip, self.cidr) {
            (Some(ip), _) => Some(RecordKey::Ip(ip)),
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
    /// `10.0.0.1` → `Ip`, `10.1.0.0/16` → `Net`; a range with host bits set is refused.
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
                .map(RecordKey::Ip)
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

// ---------------------------------------------------------------------------
// Replication wire types
// ---------------------------------------------------------------------------

/// The body of `GET /v1/registry`: the whole registry at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// The registry version (also the `ETag`, as `"N"`).
    pub version: u64,
    /// Every record (static file records and registered ones), in key order.
    #[serde(default)]
    pub records: Vec<HostRecord>,
}

/// The body of `GET /v1/registry?since=N`: what changed after version `N`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryDelta {
    /// The version the delta brings a replica to (the current version).
    pub version: u64,
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

// ---------------------------------------------------------------------------
// Registration bodies (`PUT /v1/hosts/{ip}`, `POST /v1/hosts/{ip}/renew`)
// ---------------------------------------------------------------------------

/// The longest lease a registration may ask for (a day).
pub const MAX_LEASE_SECONDS: u64 = 86_400;

/// Why a registration or renewal body was refused; the service answers `400`
/// with `code` and `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RegistrationBodyError {
    /// Machine-readable code: `invalid_json`, `invalid_lease` or `invalid_record`.
    pub code: &'static str,
    /// What was wrong, naming the field or value.
    pub message: String,
}

fn body_error(code: &'static str, message: impl Into<String>) -> RegistrationBodyError {
    RegistrationBodyError {
        code,
        message: message.into(),
    }
}

/// Checks a `lease_seconds` value: a whole number from 1 to [`MAX_LEASE_SECONDS`].
pub fn parse_lease_seconds(value: &serde_json::Value) -> Result<u64, RegistrationBodyError> {
    value
        .as_u64()
        .filter(|s| (1..=MAX_LEASE_SECONDS).contains(s))
        .ok_or_else(|| {
            body_error(
                "invalid_lease",
                format!(
                    "lease_seconds must be a whole number from 1 to {MAX_LEASE_SECONDS}, got {value}"
                ),
            )
        })
}

/// Parses a `PUT /v1/hosts/{ip}` body: a record's fields plus the required
/// `lease_seconds`. The record gets the path's `ip` (a body `ip` must equal
/// it); `cidr` and `token` are refused (ranges belong in the registry file,
/// and records are served to anyone), as are unknown fields and an empty
/// `env` or `idc`.
pub fn parse_registration_body(
    ip: IpAddr,
    body: &[u8],
) -> Result<(HostRecord, u64), RegistrationBodyError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        body_error(
            "invalid_json",
            format!("invalid JSON body (expected {{\"env\": ..., \"idc\": ..., \"lease_seconds\": N}}): {e}"),
        )
    })?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(body_error("invalid_json", "the body must be a JSON object"));
    };
    let lease = match fields.remove("lease_seconds") {
        Some(v) => parse_lease_seconds(&v)?,
        None => return Err(body_error("invalid_lease", "lease_seconds is required")),
    };
    for key in fields.keys() {
        match key.as_str() {
            "token" => {
                return Err(body_error(
                    "invalid_record",
                    "a record must not carry a token: records are served to anyone",
                ))
            }
            "cidr" => {
                return Err(body_error(
                    "invalid_record",
                    "only single IPs can be registered; ranges belong in the registry file",
                ))
            }
            k if !RECORD_KEYS.contains(&k) => {
                return Err(body_error(
                    "invalid_record",
                    format!("unknown field {key:?}"),
                ))
            }
            _ => {}
        }
    }
    if let Some(v) = fields.get("ip") {
        let given = v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
        if given.map(|g| g.to_canonical()) != Some(ip.to_canonical()) {
            return Err(body_error(
                "invalid_record",
                format!("the body's ip {v} is not the path's {ip}"),
            ));
        }
    }
    let mut record: HostRecord = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| body_error("invalid_record", e.to_string()))?;
    for (name, value) in [("env", &record.env), ("idc", &record.idc)] {
        if value.trim().is_empty() {
            return Err(body_error(
                "invalid_record",
                format!("{name} must not be empty"),
            ));
        }
    }
    record.ip = Some(ip);
    record.cidr = None;
    Ok((record, lease))
}

/// Parses a `POST /v1/hosts/{ip}/renew` body: empty (keep the lease length)
/// or `{"lease_seconds": N}`.
pub fn parse_renewal_body(body: &[u8]) -> Result<Option<u64>, RegistrationBodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        body_error(
            "invalid_json",
            format!("invalid JSON body (expected nothing or {{\"lease_seconds\": N}}): {e}"),
        )
    })?;
    value
        .get("lease_seconds")
        .map(parse_lease_seconds)
        .transpose()
}

// ---------------------------------------------------------------------------
// The registry file
// ---------------------------------------------------------------------------

/// The registry file schema version this library reads.
pub const REGISTRY_SCHEMA: i64 = 1;

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

/// The kind of a registry file problem; tests and callers match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryProblemKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// `schema` is not a version this library reads.
    UnsupportedSchema,
    /// A top-level key or a record key the format does not know (usually a typo).
    UnknownKey,
    /// `records` is not an array of tables, or a record field has the wrong type or is missing.
    InvalidRecord,
    /// A record has neither `ip` nor `cidr`, or both.
    MissingKey,
    /// `ip` is not a single IPv4/IPv6 address.
    InvalidIp,
    /// `cidr` is not a range, or has host bits set.
    InvalidCidr,
    /// Two records for the same IP or the same range.
    Duplicate,
    /// A record carries a `token`; records are served to anyone, so secrets are refused.
    Secret,
}

/// One problem in a registry file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryProblem {
    /// What kind of problem.
    pub kind: RegistryProblemKind,
    /// Where in the file (1-based line and column), when known.
    pub location: Option<Location>,
    /// The offending IP/CIDR/key text, when the problem is about one.
    pub value: Option<String>,
    /// A sentence saying what is wrong.
    pub message: String,
}

impl fmt::Display for RegistryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{}:{}: ", loc.line, loc.column)?;
        }
        f.write_str(&self.message)
    }
}

/// A registry file that could not be used, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    /// The registry file's path.
    pub path: PathBuf,
    /// Every problem, in file order; never empty.
    pub problems: Vec<RegistryProblem>,
}

impl RegistryError {
    /// The first problem's kind.
    pub fn kind(&self) -> RegistryProblemKind {
        self.problems[0].kind
    }

    fn one(path: &Path, kind: RegistryProblemKind, message: String) -> RegistryError {
        RegistryError {
            path: path.to_path_buf(),
            problems: vec![RegistryProblem {
                kind,
                location: None,
                value: None,
                message,
            }],
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let sep = |p: &RegistryProblem| if p.location.is_some() { ":" } else { ": " };
        match self.problems.as_slice() {
            [one] => write!(f, "invalid registry {path}{}{one}", sep(one)),
            many => {
                write!(f, "invalid registry {path}: {} problems", many.len())?;
                for p in many {
                    write!(f, "\n  {path}{}{p}", sep(p))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// Reads and parses a registry file (see [`parse_registry`]).
pub fn load_registry(path: &Path) -> Result<Vec<HostRecord>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RegistryError::one(path, RegistryProblemKind::Io, format!("cannot read: {e}"))
    })?;
    parse_registry(&text, path)
}

/// Parses the text of a registry file; `path` only names the file in errors.
///
/// The format (TOML):
///
/// ```toml
/// schema = 1                  # optional; only 1 is understood
///
/// [[records]]
/// ip = "10.0.0.5"             # a single IPv4/IPv6 address …
/// app = "flight_order"
/// env = "beta"
/// idc = "cn0"
///
/// [[records]]
/// cidr = "10.8.0.0/16"        # … or a range (no host bits set), never both
/// env = "prod"
/// idc = "cn5"
/// ```
///
/// Each record carries the fields of [`HostRecord`] (`env` and `idc`
/// required); a `token` is refused (records are served to anyone), and so is
/// any key the format does not know (typos would otherwise be silent).
/// Every problem is reported, each with its line and the offending value.
pub fn parse_registry(text: &str, path: &Path) -> Result<Vec<HostRecord>, RegistryError> {
    use toml::de::{DeTable, DeValue, ValueDeserializer};
    use RegistryProblemKind as K;

    let mut problems = Vec::new();
    let lines = LineIndex::new(text);
    let at = |span: std::ops::Range<usize>| Some(lines.at(span.start));
    let mut problem = |kind, loc, value: Option<&str>, message: String| {
        problems.push(RegistryProblem {
            kind,
            location: loc,
            value: value.map(str::to_string),
            message,
        })
    };

    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let loc = e.span().map(|s| Location::at(text, s.start));
            let mut msg = e.message().trim().to_string();
            if msg.is_empty() {
                msg = "invalid TOML".into();
            }
            problem(K::Syntax, loc, None, format!("invalid TOML: {msg}"));
            return Err(RegistryError {
                path: path.to_path_buf(),
                problems,
            });
        }
    };

    let mut records_value = None;
    for (key, value) in doc.get_ref() {
        match key.get_ref().as_ref() {
            "schema" => match value.get_ref() {
                DeValue::Integer(i) if i.as_str().parse::<i64>() == Ok(REGISTRY_SCHEMA) => {}
                other => {
                    let shown = match other {
                        DeValue::Integer(i) => i.as_str().to_string(),
                        _ => other.type_str().to_string(),
                    };
                    problem(
                        K::UnsupportedSchema,
                        at(value.span()),
                        None,
                        format!("unsupported registry schema {shown} (this version reads schema {REGISTRY_SCHEMA})"),
                    )
                }
            },
            "records" => records_value = Some(value),
            other => problem(
                K::UnknownKey,
                at(key.span()),
                Some(other),
                format!("unknown top-level key {other:?} (expected `schema` and `[[records]]`)"),
            ),
        }
    }

    let mut out = Vec::new();
    let empty = Vec::new();
    let records = match records_value.map(|v| (v, v.get_ref())) {
        None => &empty,
        Some((_, DeValue::Array(items))) => items.as_ref(),
        Some((v, other)) => {
            problem(
                K::InvalidRecord,
                at(v.span()),
                None,
                format!(
                    "`records` must be an array of tables ([[records]]), not a {}",
                    other.type_str()
                ),
            );
            &empty
        }
    };

    let mut seen: std::collections::HashMap<RecordKey, usize> = Default::default();
    for (n, item) in records.iter().enumerate() {
        let n = n + 1;
        let rec_loc = at(item.span());
        let Some(table) = item.get_ref().as_table() else {
            problem(
                K::InvalidRecord,
                rec_loc,
                None,
                format!(
                    "record {n} must be a table, not a {}",
                    item.get_ref().type_str()
                ),
            );
            continue;
        };
        let mut ok = true;
        let mut key: Option<RecordKey> = None;
        let mut key_loc = rec_loc.clone();
        for (k, v) in table {
            let name = k.get_ref().as_ref();
            match name {
                "ip" | "cidr" => {
                    let Some(s) = v.get_ref().as_str() else {
                        ok = false;
                        let kind = if name == "ip" {
                            K::InvalidIp
                        } else {
                            K::InvalidCidr
                        };
                        problem(
                            kind,
                            at(v.span()),
                            None,
                            format!(
                                "record {n}: `{name}` must be a string, not a {}",
                                v.get_ref().type_str()
                            ),
                        );
                        continue;
                    };
                    let parsed = if name == "ip" {
                        s.parse::<IpAddr>()
                            .map(RecordKey::Ip)
                            .map_err(|_| (K::InvalidIp, format!("record {n}: invalid IP address {s:?} in `ip` (a single IPv4 or IPv6 address; use `cidr` for ranges)")))
                    } else {
                        match s.parse::<ipnet::IpNet>() {
                            Ok(net) if net.trunc() == net => Ok(RecordKey::Net(net)),
                            Ok(net) => Err((K::InvalidCidr, format!("record {n}: CIDR {s:?} has host bits set (did you mean \"{}\"?)", net.trunc()))),
                            Err(_) => Err((K::InvalidCidr, format!("record {n}: invalid CIDR {s:?} in `cidr` (expected e.g. \"10.1.0.0/16\" or \"2001:db8::/48\")"))),
                        }
                    };
                    match parsed {
                        Ok(parsed) => {
                            if key.is_some() {
                                ok = false;
                                problem(
                                    K::MissingKey,
                                    rec_loc.clone(),
                                    Some(s),
                                    format!(
                                        "record {n} has both `ip` and `cidr`; give exactly one"
                                    ),
                                );
                            }
                            key = Some(parsed);
                            key_loc = at(v.span());
                        }
                        Err((kind, msg)) => {
                            ok = false;
                            problem(kind, at(v.span()), Some(s), msg);
                        }
                    }
                }
                "token" => {
                    ok = false;
                    problem(K::Secret, at(k.span()), Some(name), format!("record {n}: `token` is not allowed in the registry (records are served to anyone)"));
                }
                _ if RECORD_KEYS.contains(&name) => {}
                _ => {
                    ok = false;
                    problem(
                        K::UnknownKey,
                        at(k.span()),
                        Some(name),
                        format!(
                            "record {n}: unknown key {name:?} (known: {})",
                            RECORD_KEYS.join(", ")
                        ),
                    );
                }
            }
        }
        let ip_or_cidr_present = table
            .keys()
            .any(|k| matches!(k.get_ref().as_ref(), "ip" | "cidr"));
        if !ip_or_cidr_present {
            ok = false;
            problem(
                K::MissingKey,
                rec_loc.clone(),
                None,
                format!("record {n} has neither `ip` nor `cidr`"),
            );
        }
        if !ok {
            continue;
        }
        let record = match HostRecord::deserialize(ValueDeserializer::from(item.clone())) {
            Ok(r) => r,
            Err(e) => {
                let loc = e.span().and_then(at).or(rec_loc);
                problem(
                    K::InvalidRecord,
                    loc,
                    None,
                    format!("record {n}: {}", e.message().trim()),
                );
                continue;
            }
        };
        let mut fields_ok = true;
        for (field, value) in [("env", &record.env), ("idc", &record.idc)] {
            if value.trim().is_empty() {
                fields_ok = false;
                problem(
                    K::InvalidRecord,
                    rec_loc.clone(),
                    None,
                    format!("record {n}: `{field}` must not be empty"),
                );
            }
        }
        let key = key.expect("checked above");
        if let Some(first) = seen.get(&key) {
            let line = key_loc.as_ref().map_or(0, |l| l.line);
            let shown = key.to_string();
            problem(
                K::Duplicate,
                key_loc,
                Some(&shown),
                format!(
                    "record {n}: duplicate record for {shown} (first at line {first}); line {line}"
                ),
            );
            continue;
        }
        seen.insert(key, key_loc.map_or(0, |l| l.line));
        if fields_ok {
            out.push(record);
        }
    }

    if problems.is_empty() {
        Ok(out)
    } else {
        problems.sort_by_key(|p| p.location.as_ref().map(|l| (l.line, l.column)));
        Err(RegistryError {
            path: path.to_path_buf(),
            problems,
        })
    }
}

// ---------------------------------------------------------------------------
// Longest-prefix table
// ---------------------------------------------------------------------------

/// A longest-prefix-match table from IP addresses to values.
///
/// Exact addresses live in their own hash map and always win over ranges
/// (a record for `10.0.0.1` beats a `10.0.0.1/32` range); ranges live in one
/// hash map per prefix length, probed from the longest length present down.
/// A lookup therefore costs one hash probe plus one per *distinct* prefix
/// length in the table (typically a handful), with a fast non-cryptographic
/// hash (the keys come from the operator's registry, not from callers, so
/// hash flooding is not a concern). IPv4-mapped IPv6 addresses
/// (`::ffff:10.0.0.1`) are looked up as the IPv4 address.
#[derive(Clone, Debug)]
pub struct PrefixTable<V> {
    v4_exact: FastMap<u32, V>,
    v6_exact: FastMap<u128, V>,
    /// (prefix length, masked network → value), longest first.
    v4_nets: Vec<(u8, FastMap<u32, V>)>,
    v6_nets: Vec<(u8, FastMap<u128, V>)>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            v4_exact: FastMap::default(),
            v6_exact: FastMap::default(),
            v4_nets: Vec::new(),
            v6_nets: Vec::new(),
            len: 0,
        }
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl<V> PrefixTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (addresses and ranges).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts under `key`, returning the value it replaces. A range's host
    /// bits are ignored (`10.1.2.3/16` is stored as `10.1.0.0/16`).
    pub fn insert(&mut self, key: RecordKey, value: V) -> Option<V> {
        let old = match key {
            RecordKey::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(a) => self.v4_exact.insert(a.to_bits(), value),
                IpAddr::V6(a) => self.v6_exact.insert(a.to_bits(), value),
            },
            RecordKey::Net(ipnet::IpNet::V4(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v4_mask(len);
                nets_entry(&mut self.v4_nets, len).insert(bits, value)
            }
            RecordKey::Net(ipnet::IpNet::V6(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v6_mask(len);
                nets_entry(&mut self.v6_nets, len).insert(bits, value)
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry stored under exactly `key`.
    pub fn remove(&mut self, key: &RecordKey) -> Option<V> {
        let old = match *key {
            RecordKey::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(a) => self.v4_exact.remove(&a.to_bits()),
                IpAddr::V6(a) => self.v6_exact.remove(&a.to_bits()),
            },
            RecordKey::Net(ipnet::IpNet::V4(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v4_mask(len);
                remove_net(&mut self.v4_nets, len, &bits)
            }
            RecordKey::Net(ipnet::IpNet::V6(n)) => {
                let len = n.prefix_len();
                let bits = n.network().to_bits() & v6_mask(len);
                remove_net(&mut self.v6_nets, len, &bits)
            }
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The most specific value for `ip`: the exact address, else the
    /// narrowest range containing it.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(a.to_bits()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(v4.to_bits()),
                None => self.lookup_v6(a.to_bits()),
            },
        }
    }

    #[inline]
    fn lookup_v4(&self, bits: u32) -> Option<&V> {
        if let Some(v) = self.v4_exact.get(&bits) {
            return Some(v);
        }
        self.v4_nets
            .iter()
            .find_map(|(len, map)| map.get(&(bits & v4_mask(*len))))
    }

    #[inline]
    fn lookup_v6(&self, bits: u128) -> Option<&V> {
        if let Some(v) = self.v6_exact.get(&bits) {
            return Some(v);
        }
        self.v6_nets
            .iter()
            .find_map(|(len, map)| map.get(&(bits & v6_mask(*len))))
    }
}

impl<V> FromIterator<(RecordKey, V)> for PrefixTable<V> {
    fn from_iter<I: IntoIterator<Item = (RecordKey, V)>>(iter: I) -> Self {
        let mut t = PrefixTable::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

fn nets_entry<K, V>(nets: &mut Vec<(u8, FastMap<K, V>)>, len: u8) -> &mut FastMap<K, V> {
    // Kept sorted longest prefix first.
    let i = match nets.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(i) => i,
        Err(i) => {
            nets.insert(i, (len, FastMap::default()));
            i
        }
    };
    &mut nets[i].1
}

fn remove_net<K: std::hash::Hash + Eq, V>(
    nets: &mut Vec<(u8, FastMap<K, V>)>,
    len: u8,
    bits: &K,
) -> Option<V> {
    let i = nets.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
    let old = nets[i].1.remove(bits);
    if nets[i].1.is_empty() {
        nets.remove(i);
    }
    old
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// A multiply-fold hasher for integer keys (the folded 128-bit product mixes
/// high and low bits, so masked prefixes with zero low bits still spread).
#[derive(Default, Clone, Copy)]
struct FoldHasher(u64);

const FOLD_K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold(x: u64) -> u64 {
    let p = u128::from(x) * u128::from(FOLD_K);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for FoldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = fold(self.0 ^ u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.0 = fold(self.0 ^ u64::from(x));
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.0 = fold(fold(self.0 ^ x as u64) ^ (x >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> RecordKey {
        s.parse().unwrap()
    }

    fn table(keys: &[&str]) -> PrefixTable<String> {
        keys.iter().map(|k| (key(k), k.to_string())).collect()
    }

    fn find<'a>(t: &'a PrefixTable<String>, ip: &str) -> Option<&'a str> {
        t.lookup(ip.parse().unwrap()).map(String::as_str)
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_ranges() {
        let t = table(&[
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.8.0.0/16",
            "10.8.1.0/24",
            "10.8.1.77/32",
            "10.8.1.77",
        ]);
        assert_eq!(t.len(), 6);
        assert_eq!(find(&t, "10.8.1.77"), Some("10.8.1.77"));
        assert_eq!(find(&t, "10.8.1.78"), Some("10.8.1.0/24"));
        assert_eq!(find(&t, "10.8.2.1"), Some("10.8.0.0/16"));
        assert_eq!(find(&t, "10.9.0.1"), Some("10.0.0.0/8"));
        assert_eq!(find(&t, "192.168.0.1"), Some("0.0.0.0/0"));
        // IPv4 ranges never answer IPv6 (except v4-mapped addresses).
        assert_eq!(find(&t, "2001:db8::1"), None);
        assert_eq!(find(&t, "::ffff:10.8.1.78"), Some("10.8.1.0/24"));
    }

    #[test]
    fn ipv6_prefixes() {
        let t = table(&[
            "2001:db8::/32",
            "2001:db8:5::/48",
            "2001:db8:5:1::/64",
            "2001:db8::10",
            "::/0",
        ]);
        assert_eq!(find(&t, "2001:db8::10"), Some("2001:db8::10"));
        assert_eq!(find(&t, "2001:db8:5:1::9"), Some("2001:db8:5:1::/64"));
        assert_eq!(find(&t, "2001:db8:5:2::9"), Some("2001:db8:5::/48"));
        assert_eq!(find(&t, "2001:db8:6::9"), Some("2001:db8::/32"));
        assert_eq!(find(&t, "2001:db9::1"), Some("::/0"));
        assert_eq!(find(&t, "10.0.0.1"), None);
    }

    #[test]
    fn insert_replace_and_remove() {
        let mut t = table(&["10.0.0.0/8", "10.1.0.0/16"]);
        assert_eq!(
            t.insert(key("10.1.0.0/16"), "again".into()),
            Some("10.1.0.0/16".into())
        );
        assert_eq!(t.len(), 2);
        assert_eq!(find(&t, "10.1.2.3"), Some("again"));
        assert_eq!(t.remove(&key("10.1.0.0/16")), Some("again".into()));
        assert_eq!(find(&t, "10.1.2.3"), Some("10.0.0.0/8"));
        assert_eq!(t.remove(&key("10.1.0.0/16")), None);
        assert_eq!(t.remove(&key("10.0.0.0/8")), Some("10.0.0.0/8".into()));
        assert!(t.is_empty());
        assert_eq!(find(&t, "10.1.2.3"), None);
    }

    #[test]
    fn many_masked_keys_stay_spread() {
        // /24 networks have zero low bits; the hasher must still spread them.
        let t: PrefixTable<u32> = (0..50_000u32)
            .map(|i| {
                (
                    RecordKey::Net(
                        format!("10.{}.{}.0/24", i / 256 % 256, i % 256)
                            .parse()
                            .unwrap(),
                    ),
                    i,
                )
            })
            .collect();
        assert_eq!(
            t.lookup("10.3.7.200".parse().unwrap()),
            Some(&(3 * 256 + 7))
        );
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
    fn location_counts_lines_and_chars() {
        let text = "a\nbé c\nd";
        assert_eq!(Location::at(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::at(text, 2), Location { line: 2, column: 1 });
        assert_eq!(Location::at(text, 5), Location { line: 2, column: 3 });
        assert_eq!(Location::at(text, 100), Location { line: 3, column: 2 });
    }

    #[test]
    fn line_index_agrees_with_location_at_everywhere() {
        for text in ["", "\n", "a\nbé c\nd", "\n\nxé\n", "日本\n語\r\nz"] {
            let lines = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    lines.at(offset),
                    Location::at(text, offset),
                    "{text:?} @ {offset}"
                );
            }
        }
    }

    #[test]
    fn problems_deep_in_a_large_registry_have_their_own_line() {
        // 20,000 records took 12 s when every record's location was found by
        // scanning from the start of the file.
        let mut text = String::from("schema = 1\n");
        for i in 0..20_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            text.push_str(&format!(
                "[[records]]\nip = \"10.{a}.{b}.{c}\"\nenv = \"prod\"\nidc = \"dc1\"\n"
            ));
        }
        text.push_str("[[records]]\nip = \"10.0.0.7\"\nenv = \"prod\"\nidc = \"dc1\"\n");
        let err = parse_registry(&text, Path::new("big.toml")).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        let p = &err.problems[0];
        assert_eq!(p.kind, RegistryProblemKind::Duplicate, "{err}");
        // Line 1 is the schema; record n (1-based) starts at 2 + 4 (n - 1)
        // and its `ip` is the next line.
        assert_eq!(
            p.location,
            Some(Location {
                line: 2 + 4 * 20_000 + 1,
                column: 6
            })
        );
    }
}
