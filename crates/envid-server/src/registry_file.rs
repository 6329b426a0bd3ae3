//! The registry file: the static records an operator keeps in TOML, parsed
//! with every problem located (line, column, offending value).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use envid::location::{LineIndex, Location};
use envid::protocol::{canonical_ip, HostRecord, RecordKey, RECORD_KEYS};
use serde::Deserialize;

/// The registry file schema version this library reads.
pub const REGISTRY_SCHEMA: i64 = 1;

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

/// The largest registry file read: the largest registry snapshot a
/// replica accepts (256 MiB; a TOML record is about as long as its JSON),
/// since a registry beyond it could be served but not replicated. Far above
/// any registry in use (20,000 records are about 2 MiB), so the cap only
/// refuses a wrong or runaway file.
pub const MAX_REGISTRY_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// A registry file as read: its records, and the bytes they were parsed
/// from (the reloader compares later reads with them).
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryFile {
    /// The static records.
    pub records: Vec<HostRecord>,
    /// The file's content, as read.
    pub bytes: Vec<u8>,
}

/// Reads the registry file at `path` with the bounded reader
/// ([`envid::read`], at most [`MAX_REGISTRY_FILE_BYTES`]) and parses it
/// (see [`parse_registry`]): what the service does at start and at every
/// reload. A FIFO, a device or a directory is refused without blocking,
/// naming what it is.
pub fn load(path: &Path) -> Result<RegistryFile, RegistryError> {
    let bytes = read(path)?;
    let records = parse_bytes(&bytes, path)?;
    Ok(RegistryFile { records, bytes })
}

/// Reads and parses a registry file: [`load`]'s records.
pub fn load_registry(path: &Path) -> Result<Vec<HostRecord>, RegistryError> {
    load(path).map(|file| file.records)
}

/// The bytes of the registry file at `path`, bounded; a problem is
/// [`RegistryProblemKind::Io`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, RegistryError> {
    envid::read::bytes(path, MAX_REGISTRY_FILE_BYTES)
        .map_err(|e| RegistryError::one(path, RegistryProblemKind::Io, e.problem.to_string()))
}

/// Parses the bytes of a registry file: UTF-8 (a byte-order mark skipped),
/// then [`parse_registry`]. Text that is not UTF-8 is
/// [`RegistryProblemKind::Syntax`] at its first bad byte.
pub(crate) fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Vec<HostRecord>, RegistryError> {
    let text = envid::read::decode(bytes).map_err(|e| RegistryError {
        path: path.to_path_buf(),
        problems: vec![RegistryProblem {
            kind: RegistryProblemKind::Syntax,
            location: Some(e.location()),
            value: None,
            message: e.to_string(),
        }],
    })?;
    parse_registry(text, path)
}

/// A range of IPv4-mapped addresses (`::ffff:10.8.0.0/112`) as the IPv4
/// range it is (`10.8.0.0/16`): lookups unmap addresses first, so the
/// mapped form would never match.
fn canonical_net(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, ipnet::IpNet::V4),
            None => net,
        },
        _ => net,
    }
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
/// any key the format does not know, at any depth (typos would otherwise be
/// silent). Every record passes the same checks as a registration
/// ([`crate::validation::check_record`]: trimmed, non-empty strings without
/// control or bidi characters, at most 256 bytes a field, 4 KiB a record).
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

    // The first record of each key: its line and how its key was written.
    let mut seen: std::collections::HashMap<RecordKey, (usize, String)> = Default::default();
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
        let mut key_text = String::new();
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
                        // One canonical form: `::ffff:10.0.0.5` is the host
                        // 10.0.0.5, the key the service, its lookups and
                        // every replica use for it.
                        s.parse::<IpAddr>()
                            .map(|ip| RecordKey::Ip(canonical_ip(ip)))
                            .map_err(|_| (K::InvalidIp, format!("record {n}: invalid IP address {s:?} in `ip` (a single IPv4 or IPv6 address; use `cidr` for ranges)")))
                    } else {
                        match s.parse::<ipnet::IpNet>() {
                            Ok(net) if net.trunc() == net => Ok(RecordKey::Net(canonical_net(net))),
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
                            key_text = s.to_string();
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
        let mut record = match HostRecord::deserialize(ValueDeserializer::from(item.clone())) {
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
        // The rules every record passes, registered or written here.
        let input = serde_json::Value::deserialize(ValueDeserializer::from(item.clone()))
            .unwrap_or(serde_json::Value::Null);
        let checked = crate::validation::check_record(&input, &record, &[]);
        let fields_ok = checked.is_empty();
        for p in checked {
            let kind = if p.message == "unknown key" {
                K::UnknownKey
            } else {
                K::InvalidRecord
            };
            let message = if p.path.is_empty() {
                format!("record {n}: {}", p.message)
            } else {
                format!("record {n}: `{}` {}", p.path, p.message)
            };
            let value = (!p.path.is_empty()).then_some(p.path.as_str());
            problem(kind, rec_loc.clone(), value, message);
        }
        record.ip = record.ip.map(canonical_ip);
        record.cidr = record.cidr.map(canonical_net);
        let key = key.expect("checked above");
        if let Some((first, first_text)) = seen.get(&key) {
            let line = key_loc.as_ref().map_or(0, |l| l.line);
            let shown = key.to_string();
            // Two spellings of one host are one key: name both as written.
            let spelled = if *first_text == key_text {
                String::new()
            } else {
                format!(", written {first_text:?} there and {key_text:?} here")
            };
            problem(
                K::Duplicate,
                key_loc,
                Some(&shown),
                format!(
                    "record {n}: duplicate record for {shown} (first at line {first}{spelled}); line {line}"
                ),
            );
            continue;
        }
        seen.insert(key, (key_loc.map_or(0, |l| l.line), key_text));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_mapped_address_is_its_ipv4_address() {
        let one = "[[records]]\nip = \"::ffff:10.0.0.5\"\nenv = \"prod\"\nidc = \"cn0\"\n";
        let records = parse_registry(one, Path::new("r.toml")).unwrap();
        assert_eq!(records[0].ip, Some("10.0.0.5".parse().unwrap()));
        let both = format!("{one}[[records]]\nip = \"10.0.0.5\"\nenv = \"beta\"\nidc = \"cn0\"\n");
        let e = parse_registry(&both, Path::new("r.toml")).unwrap_err();
        assert_eq!(e.kind(), RegistryProblemKind::Duplicate, "{e}");
        let m = e.to_string();
        assert!(
            m.contains("r.toml:6:") && m.contains("first at line 2"),
            "{m}"
        );
        assert!(
            m.contains("\"::ffff:10.0.0.5\"") && m.contains("\"10.0.0.5\" here"),
            "{m}"
        );
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
