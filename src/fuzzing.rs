//! Entry points shared by the `cargo fuzz` targets (`fuzz/`) and the corpus
//! replay test (`tests/it/fuzz_corpus.rs`), so every corpus file and every crash
//! the fuzzer ever found runs through exactly the same code in plain
//! `cargo test` on stable. Compiled only with the `fuzzing` feature: not an
//! API. The registry-file and registration-body targets live beside their
//! parsers, in `envid_server::fuzzing`.
//!
//! Each function must never panic, whatever the bytes, and checks the
//! invariants that hold for every input (errors carry a problem with an
//! in-range location, matches are consistent).

use std::net::IpAddr;
use std::path::Path;

use crate::descriptor::{self, Format};
use crate::detect;
use crate::location::Location;
use crate::podinfo;
use crate::protocol::{HostRecord, LookupRequest, LookupResponse};
use crate::rules::Rules;

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// Runs every file of `fuzz_dir/{corpus,regressions}/<target>` through its
/// target, catching panics; returns how many inputs ran. Panics naming the
/// inputs that panicked, or a target without a corpus. Shared by this
/// crate's and the service's corpus replay tests.
pub fn replay(fuzz_dir: &Path, targets: &[(&str, Entry)]) -> usize {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let mut ran = 0;
    let mut failures = Vec::new();
    for (name, entry) in targets {
        let mut files = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz_dir.join(kind).join(name)) else {
                continue;
            };
            for e in entries {
                let path = e.expect("a directory entry").path();
                let data = std::fs::read(&path).expect("a corpus file");
                if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
                files += 1;
            }
        }
        assert!(files > 0, "no corpus for fuzz target {name}");
        ran += files;
    }
    assert!(failures.is_empty(), "panicked on:\n{}", failures.join("\n"));
    ran
}

/// Every target by name, for the replay test.
pub const TARGETS: &[(&str, Entry)] = &[
    ("descriptor_toml", descriptor_toml),
    ("descriptor_json", descriptor_json),
    ("hostname", hostname),
    ("rules", rules),
    ("cgroup", cgroup),
    ("mountinfo", mountinfo),
    ("lookup_request", lookup_request),
    ("lookup_response", lookup_response),
    ("podinfo", podinfo),
    #[cfg(feature = "lookup")]
    ("registry_sync", registry_sync),
];

fn check_location(text_len_lines: usize, loc: &Option<Location>) {
    if let Some(l) = loc {
        assert!(l.line >= 1 && l.column >= 1, "location {l:?}");
        assert!(l.line <= text_len_lines + 1, "line {} past the end", l.line);
    }
}

fn descriptor_in(data: &[u8], format: Format) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for strict in [false, true] {
        match descriptor::parse(data, Path::new("fuzz"), format, strict) {
            Ok(p) => {
                for w in &p.warnings {
                    check_location(lines, &w.location);
                }
            }
            Err(e) => {
                assert!(!e.problems.is_empty(), "an error without problems");
                for p in &e.problems {
                    check_location(lines, &p.location);
                }
                let _ = e.to_string();
            }
        }
    }
}

/// The descriptor parser on TOML.
pub fn descriptor_toml(data: &[u8]) {
    descriptor_in(data, Format::Toml)
}

/// The descriptor parser on JSON.
pub fn descriptor_json(data: &[u8]) {
    descriptor_in(data, Format::Json)
}

/// The built-in hostname rule and the alias table.
pub fn hostname(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let rules = Rules::builtin();
    if let Some(m) = rules.explain(&text) {
        assert!(!m.env.is_empty());
        assert_eq!(m.env_type, rules.env_type_of(&m.env));
        assert!(m.idc.as_deref().is_some_and(|i| i.starts_with("cn")));
    }
    let _ = rules.env_type_of(&text);
}

/// A rules file, then its rules on a few hostnames.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Rules::parse(text, None) {
        Ok(r) => {
            for h in [
                "l-flightqma9.f.beta.cn0",
                "l-qmq1.h.cn5",
                "web-1.beta.cn2",
                text,
            ] {
                let _ = r.explain(h);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The `/proc/self/cgroup` parser.
pub fn cgroup(data: &[u8]) {
    let f = detect::parse_cgroup(&String::from_utf8_lossy(data));
    if let Some(id) = &f.id {
        assert!(detect::is_container_id(id));
    }
}

/// The `/proc/self/mountinfo` parser.
pub fn mountinfo(data: &[u8]) {
    let f = detect::parse_mountinfo(&String::from_utf8_lossy(data));
    if let Some(id) = &f.id {
        assert!(detect::is_container_id(id));
    }
}

/// The downward-API `labels`/`annotations` parser: an error has an
/// in-range location; a parsed file has unique keys and parses back to the
/// same entries once written again the kubelet's way.
pub fn podinfo(data: &[u8]) {
    let path = Path::new("fuzz");
    match podinfo::parse_bytes(data, path) {
        Ok(entries) => {
            // The kubelet's form: no newline after the last line, so the
            // text written back is never longer than the input.
            let mut again = String::new();
            for (i, (key, value)) in entries.iter().enumerate() {
                assert!(!key.is_empty(), "an empty key");
                if i > 0 {
                    again.push('\n');
                }
                again.push_str(key);
                again.push('=');
                go_quote(value, &mut again);
            }
            let keys: std::collections::HashSet<&str> =
                entries.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys.len(), entries.len(), "a duplicate key");
            match podinfo::parse(&again, path) {
                Ok(back) => assert_eq!(back, entries, "round trip of {again:?}"),
                Err(e) => panic!("written back {again:?}, refused: {e}"),
            }
        }
        Err(e) => {
            let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            match &e.location {
                Some(l) => {
                    assert!(l.line >= 1 && l.line <= lines.len(), "line {l:?}");
                    // Columns count characters, never more than the bytes.
                    assert!(
                        l.column >= 1 && l.column <= lines[l.line - 1].len() + 1,
                        "column {l:?}"
                    );
                }
                None => assert_eq!(e.kind, podinfo::PodInfoErrorKind::TooLarge, "{e}"),
            }
            assert!(!e.message.is_empty());
            let _ = e.to_string();
        }
    }
}

/// Quotes like Go's `strconv.Quote` for every character the parser can
/// yield (printable ones other than ASCII are left raw, which it accepts).
fn go_quote(value: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The service's request body: JSON, then each IP.
pub fn lookup_request(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<LookupRequest>(data) {
        for ip in &req.ips {
            let _ = ip.parse::<IpAddr>();
        }
    }
}

/// The client's response bodies: one record, and a batch answer.
pub fn lookup_response(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<HostRecord>(data) {
        let _ = r.key();
        let back = serde_json::to_vec(&r).expect("a record serializes");
        let again: HostRecord = serde_json::from_slice(&back).expect("round trip");
        assert_eq!(again, r);
    }
    let _ = serde_json::from_slice::<LookupResponse>(data);
}

#[cfg(feature = "lookup")]
/// The replica's sync answers: a snapshot, then the same bytes as a delta
/// applied to it; a decoded view answers for every record it holds.
pub fn registry_sync(data: &[u8]) {
    use crate::protocol::{RegistryDelta, RegistrySnapshot};
    let base = match serde_json::from_slice::<RegistrySnapshot>(data) {
        Ok(snapshot) => match fuzz_view::from_snapshot(snapshot) {
            Ok(view) => view,
            Err(_) => return,
        },
        Err(_) => fuzz_view::sample(),
    };
    fuzz_view::check(&base);
    if let Ok(delta) = serde_json::from_slice::<RegistryDelta>(data) {
        if let Ok(next) = fuzz_view::apply(&base, delta) {
            fuzz_view::check(&next);
        }
    }
}

#[cfg(feature = "lookup")]
pub mod fuzz_view {
    //! The replica's view, driven directly: for the `registry_sync` target
    //! and the replica bench's delta-apply figures.
    use crate::protocol::{HostRecord, RegistryDelta, RegistrySnapshot};
    use crate::replica::ReplicaView;

    /// A view of a snapshot.
    pub fn from_snapshot(s: RegistrySnapshot) -> Result<ReplicaView, String> {
        ReplicaView::from_records(s.version, s.records)
    }

    /// A small view with an address and two ranges.
    pub fn sample() -> ReplicaView {
        let rec = |key: &str| {
            let mut r: HostRecord =
                serde_json::from_str(r#"{"env": "prod", "idc": "cn0"}"#).expect("a record");
            match key.parse() {
                Ok(ip) => r.ip = Some(ip),
                Err(_) => r.cidr = Some(key.parse().expect("a range")),
            }
            r
        };
        ReplicaView::from_records(
            7,
            vec![rec("10.0.0.1"), rec("10.0.0.0/8"), rec("2001:db8::/32")],
        )
        .expect("a valid view")
    }

    /// `base` with a delta applied (a copy; `base` is unchanged).
    pub fn apply(base: &ReplicaView, d: RegistryDelta) -> Result<ReplicaView, String> {
        base.apply(d.version, d.upserts, &d.deletes)
    }

    /// Every record is found by its key, and by its own address when single.
    pub fn check(view: &ReplicaView) {
        for rec in view.records() {
            let key = rec.key().expect("held records have a key");
            assert!(view.get(&key).is_some(), "{key} held but not found");
            if let Some(ip) = rec.ip {
                assert_eq!(view.lookup(ip).and_then(|r| r.ip), Some(ip));
            }
        }
        assert_eq!(view.len(), view.records().count());
    }
}
