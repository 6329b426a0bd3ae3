//! Registry file parsing: the example parses, and every bad fixture in
//! testdata/registries/ is refused with an error naming the file, the line
//! and the offending IP/CIDR/key.

use std::path::{Path, PathBuf};

use envid_server::registry_file::{load_registry, RegistryError, RegistryProblemKind as K};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

fn bad(name: &str) -> RegistryError {
    let err = load_registry(&testdata(&format!("registries/{name}")))
        .expect_err("fixture must be refused");
    let shown = err.to_string();
    assert!(shown.contains(name), "error must name the file: {shown}");
    err
}

/// Asserts the first problem's kind, line, and (when given) that the
/// message names `value`.
fn check(name: &str, kind: K, line: usize, value: Option<&str>) {
    let err = bad(name);
    let p = &err.problems[0];
    assert_eq!(p.kind, kind, "{name}: {err}");
    assert_eq!(
        p.location.as_ref().map(|l| l.line),
        Some(line),
        "{name}: {err}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(":{line}:")),
        "{name}: line in message: {shown}"
    );
    if let Some(v) = value {
        assert!(shown.contains(v), "{name}: must name {v:?}: {shown}");
        assert_eq!(p.value.as_deref(), Some(v), "{name}");
    }
}

#[test]
fn example_registry_parses() {
    let records = load_registry(&testdata("registry.toml")).unwrap();
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r.key().is_some()));
    assert!(records.iter().any(|r| r.ip.is_some_and(|ip| ip.is_ipv6())));
    assert!(records
        .iter()
        .any(|r| r.cidr.is_some_and(|n| matches!(n, ipnet::IpNet::V6(_)))));
}

#[test]
fn bad_ip() {
    check("bad-ip.toml", K::InvalidIp, 9, Some("10.0.0.300"));
}

#[test]
fn bad_ipv6() {
    check("bad-ipv6.toml", K::InvalidIp, 2, Some("2001:db8::zz"));
}

#[test]
fn ip_with_prefix_belongs_in_cidr() {
    check("ip-with-prefix.toml", K::InvalidIp, 2, Some("10.0.0.0/24"));
    assert!(bad("ip-with-prefix.toml").to_string().contains("cidr"));
}

#[test]
fn bad_cidr() {
    check("bad-cidr.toml", K::InvalidCidr, 4, Some("10.8.0.0/33"));
}

#[test]
fn cidr_with_host_bits_suggests_the_network() {
    check("host-bits.toml", K::InvalidCidr, 2, Some("10.8.1.5/16"));
    assert!(bad("host-bits.toml").to_string().contains("10.8.0.0/16"));
}

#[test]
fn duplicate_names_both_lines() {
    check("duplicate.toml", K::Duplicate, 7, Some("10.0.0.1"));
    assert!(bad("duplicate.toml").to_string().contains("line 2"));
}

#[test]
fn both_ip_and_cidr() {
    let err = bad("both-keys.toml");
    assert_eq!(err.kind(), K::MissingKey, "{err}");
    assert!(err.to_string().contains("both"), "{err}");
}

#[test]
fn neither_ip_nor_cidr() {
    check("no-key.toml", K::MissingKey, 1, None);
}

#[test]
fn missing_env() {
    let err = bad("missing-env.toml");
    assert_eq!(err.kind(), K::InvalidRecord, "{err}");
    assert!(err.to_string().contains("env"), "{err}");
    assert!(err.problems[0].location.is_some(), "{err}");
}

#[test]
fn syntax_error() {
    let err = bad("syntax.toml");
    assert_eq!(err.kind(), K::Syntax, "{err}");
    assert_eq!(
        err.problems[0].location.as_ref().map(|l| l.line),
        Some(2),
        "{err}"
    );
}

#[test]
fn token_is_refused() {
    check("token.toml", K::Secret, 5, Some("token"));
    assert!(
        !bad("token.toml").to_string().contains("s3cret"),
        "never print the secret"
    );
}

#[test]
fn unknown_record_key() {
    check("unknown-key.toml", K::UnknownKey, 5, Some("sub_evn"));
}

#[test]
fn typo_in_table_name() {
    check("typo-table.toml", K::UnknownKey, 1, Some("record"));
}

#[test]
fn unsupported_schema() {
    check("schema.toml", K::UnsupportedSchema, 1, None);
}

#[test]
fn every_fixture_is_covered_and_refused() {
    let dir = testdata("registries");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let err = load_registry(&path).expect_err(&path.display().to_string());
        assert!(err.problems.iter().all(|p| p.location.is_some()), "{err}");
        n += 1;
    }
    assert_eq!(
        n, 15,
        "a fixture was added or removed: update the tests above"
    );
}

#[test]
fn several_problems_are_all_reported() {
    let text = r#"
[[records]]
ip = "1.2.3.x"
env = "a"
idc = "b"

[[records]]
cidr = "1.2.3.0/99"
env = "a"
idc = "b"
"#;
    let err =
        envid_server::registry_file::parse_registry(text, Path::new("multi.toml")).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("multi.toml:3:") && shown.contains("multi.toml:8:"),
        "{shown}"
    );
}

#[test]
fn records_pass_the_same_field_rules_as_registrations() {
    let err = bad("field-rules.toml");
    let shown = err.to_string();
    assert_eq!(err.problems.len(), 4, "{shown}");
    for (line, needle) in [
        (4, "white space"),
        (9, "bidirectional"),
        (14, "control character"),
        (20, "release.verison"),
    ] {
        assert!(
            err.problems
                .iter()
                .any(|p| p.location.as_ref().map(|l| l.line) == Some(line)
                    && p.message.contains(needle)),
            "line {line}, {needle:?}: {shown}"
        );
    }
    assert!(err.problems.iter().any(|p| p.kind == K::UnknownKey));
}

/// A FIFO at `path`, made with the system call rather than the `mkfifo`
/// program, so the case runs on every machine.
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

#[test]
fn the_file_is_read_bounded_and_without_blocking() {
    use envid_server::registry_file::{load, MAX_REGISTRY_FILE_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    mkfifo(&fifo);
    let big = dir.path().join("big.toml");
    // Sparse: as large as the cap says, without writing it.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_REGISTRY_FILE_BYTES + 1)
        .unwrap();
    let started = std::time::Instant::now();
    for (path, problem) in [
        (fifo, "not a regular file: it is a FIFO".to_string()),
        (
            dir.path().to_path_buf(),
            "not a regular file: it is a directory".to_string(),
        ),
        (big, format!("larger than {MAX_REGISTRY_FILE_BYTES} bytes")),
        (dir.path().join("nope.toml"), "file not found".to_string()),
    ] {
        let err = load(&path).unwrap_err();
        assert_eq!(err.kind(), K::Io, "{err}");
        assert_eq!(
            err.to_string(),
            format!("invalid registry {}: {problem}", path.display())
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(1));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"\xEF\xBB\xBFschema = 1\n# caf\xe9\n").unwrap();
    let err = load(&bad).unwrap_err();
    assert_eq!(err.kind(), K::Syntax, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid registry {}:2:6: invalid UTF-8 (byte 0xe9)",
            bad.display()
        )
    );

    let good = load(&testdata("registry.toml")).unwrap();
    assert_eq!(good.records.len(), 10);
    assert_eq!(
        good.bytes,
        std::fs::read(testdata("registry.toml")).unwrap()
    );
}
