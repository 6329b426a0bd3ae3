//! Descriptor parsing against the fixtures in `testdata/descriptors`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use envid::descriptor::{self, DescriptorError, Format, Parsed, Problem, ProblemKind, MAX_SIZE};
use envid::{EnvType, Platform};

use ProblemKind::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/descriptors")
        .join(rel)
}

fn good(name: &str) -> Parsed {
    let path = fixture(&format!("good/{name}"));
    descriptor::read(&path, false).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn bad(name: &str) -> DescriptorError {
    let path = fixture(&format!("bad/{name}"));
    match descriptor::read(&path, false) {
        Ok(p) => panic!("{name} parsed: {p:?}"),
        Err(e) => {
            assert_eq!(e.path, path);
            assert!(!e.problems.is_empty());
            e
        }
    }
}

/// (kind, field, line and column); `None` location for problems without a place.
type Expected = (ProblemKind, Option<&'static str>, Option<(usize, usize)>);

/// A problem as (kind, field, line and column), comparable with [`Expected`].
type Got = (ProblemKind, Option<String>, Option<(usize, usize)>);

fn summary(p: &Problem) -> Got {
    (
        p.kind,
        p.field.clone(),
        p.location.as_ref().map(|l| (l.line, l.column)),
    )
}

fn summaries(problems: &[Problem]) -> Vec<Got> {
    problems.iter().map(summary).collect()
}

fn owned(expected: &[Expected]) -> Vec<Got> {
    expected
        .iter()
        .map(|&(k, f, l)| (k, f.map(String::from), l))
        .collect()
}

/// Every bad fixture, with the one problem it must produce.
const BAD: &[(&str, Expected)] = &[
    // Syntax errors stop parsing with one problem.
    ("syntax-unclosed-string.toml", (Syntax, None, Some((2, 20)))),
    ("syntax-missing-equals.toml", (Syntax, None, Some((2, 5)))),
    ("syntax-bad-table-header.toml", (Syntax, None, Some((2, 9)))),
    ("syntax-trailing-comma.json", (Syntax, None, Some((3, 24)))),
    ("syntax-unclosed-object.json", (Syntax, None, Some((1, 1)))), // points at the `{` left open
    ("syntax-single-quotes.json", (Syntax, None, Some((2, 3)))),
    ("empty.json", (Syntax, None, Some((1, 1)))),
    ("nul-raw.toml", (Syntax, None, Some((2, 14)))),
    ("duplicate-key.toml", (Syntax, None, Some((4, 1)))),
    ("duplicate-table.toml", (Syntax, None, Some((4, 2)))),
    ("duplicate-key.json", (Syntax, Some("app"), Some((5, 3)))),
    (
        "duplicate-nested.json",
        (Syntax, Some("release.id"), Some((5, 5))),
    ),
    ("deep-nesting.toml", (Syntax, None, Some((2, 90)))),
    ("deep-nesting.json", (Syntax, None, Some((1, 88)))),
    // Schema.
    ("empty.toml", (MissingField, Some("schema"), None)),
    ("missing-schema.toml", (MissingField, Some("schema"), None)),
    ("missing-schema.json", (MissingField, Some("schema"), None)),
    (
        "schema-future.toml",
        (UnsupportedSchema, Some("schema"), Some((2, 10))),
    ),
    (
        "schema-future.json",
        (UnsupportedSchema, Some("schema"), Some((2, 13))),
    ),
    (
        "schema-huge.json",
        (UnsupportedSchema, Some("schema"), Some((1, 12))),
    ),
    (
        "schema-string.toml",
        (WrongType, Some("schema"), Some((1, 10))),
    ),
    (
        "schema-float.json",
        (WrongType, Some("schema"), Some((1, 12))),
    ),
    (
        "schema-zero.toml",
        (InvalidValue, Some("schema"), Some((1, 10))),
    ),
    (
        "schema-negative.json",
        (InvalidValue, Some("schema"), Some((2, 12))),
    ),
    // Wrong types.
    ("app-integer.toml", (WrongType, Some("app"), Some((2, 7)))),
    (
        "release-string.toml",
        (WrongType, Some("release"), Some((5, 11))),
    ),
    ("k8s-array.json", (WrongType, Some("k8s"), Some((3, 10)))),
    (
        "batch-string.json",
        (WrongType, Some("release.batch"), Some((3, 24))),
    ),
    (
        "labels-non-string.toml",
        (WrongType, Some("labels.replicas"), Some((8, 12))),
    ),
    (
        "labels-nested.json",
        (WrongType, Some("labels.team"), Some((4, 13))),
    ),
    ("top-level-array.json", (WrongType, None, Some((1, 1)))),
    // Byte-order marks: UTF-16 is refused by name; a BOM inside is a syntax error.
    ("utf16-bom.toml", (InvalidUtf8, None, Some((1, 1)))),
    ("utf16-bom.json", (InvalidUtf8, None, Some((1, 1)))),
    ("bom-in-middle.json", (Syntax, None, Some((2, 1)))),
    // Bad values.
    (
        "empty-string.toml",
        (InvalidValue, Some("env"), Some((3, 7))),
    ),
    (
        "empty-token.json",
        (InvalidValue, Some("token"), Some((3, 12))),
    ),
    (
        "huge-string.toml",
        (InvalidValue, Some("app"), Some((2, 7))),
    ),
    (
        "nul-escaped.toml",
        (InvalidValue, Some("app"), Some((2, 7))),
    ),
    (
        "nul-escaped.json",
        (InvalidValue, Some("app"), Some((3, 10))),
    ),
    (
        "control-in-middle.json",
        (InvalidValue, Some("env"), Some((1, 45))),
    ),
    ("bad-ip.toml", (InvalidValue, Some("ip"), Some((5, 6)))),
    (
        "bad-date-string.toml",
        (InvalidValue, Some("release.deployed_at"), Some((7, 15))),
    ),
    (
        "unknown-platform.toml",
        (InvalidValue, Some("platform"), Some((5, 12))),
    ),
    (
        "bad-time.toml",
        (InvalidValue, Some("release.deployed_at"), Some((8, 15))),
    ),
    (
        "bad-time.json",
        (InvalidValue, Some("release.deployed_at"), Some((4, 20))),
    ),
    (
        "local-datetime.toml",
        (InvalidValue, Some("release.deployed_at"), Some((7, 15))),
    ),
    (
        "negative-batch.toml",
        (InvalidValue, Some("release.batch"), Some((7, 9))),
    ),
    (
        "batch-too-large.json",
        (InvalidValue, Some("release.batch"), Some((3, 24))),
    ),
    // Encoding, size, format.
    ("invalid-utf8.toml", (InvalidUtf8, None, Some((3, 9)))),
    ("invalid-utf8.json", (InvalidUtf8, None, Some((3, 13)))),
    ("too-large.toml", (TooLarge, None, None)),
    ("unknown-extension.yaml", (UnknownFormat, None, None)),
    ("descriptor", (UnknownFormat, None, None)),
];

#[test]
fn every_bad_fixture_gives_its_exact_problem() {
    let mut failures = Vec::new();
    for &(name, expected) in BAD {
        let e = bad(name);
        let got = summaries(&e.problems);
        if got != owned(&[expected]) {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}\n  {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_fixture_is_in_the_table() {
    // The multiple-problems fixtures have their own test below.
    let mut listed: Vec<&str> = BAD.iter().map(|(n, _)| *n).collect();
    listed.extend(["multiple-problems.toml", "multiple-problems.json"]);
    listed.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture("bad"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    assert!(on_disk.len() >= 25);
}

#[test]
fn messages_say_what_is_wrong() {
    let cases = [
        (
            "schema-future.toml",
            "schema 2 is newer than this envid supports (1); upgrade envid",
        ),
        ("app-integer.toml", "expected a string, found an integer"),
        ("release-string.toml", "expected a table, found a string"),
        ("k8s-array.json", "expected an object, found an array"),
        ("duplicate-key.toml", "duplicate key `app`"),
        ("duplicate-key.json", "duplicate key \"app\""),
        ("unknown-platform.toml", "unknown platform \"vm\""),
        (
            "bad-ip.toml",
            "\"10.0.0.256\" is not an IP address: expected IPv4 like",
        ),
        ("negative-batch.toml", "must not be negative"),
        (
            "bad-date-string.toml",
            "\"2026-11-22 10:00\" is not an RFC 3339 date-time: expected YYYY-MM-DDTHH:MM:SS",
        ),
        ("huge-string.toml", "too long (5000 bytes; at most 4096)"),
        ("nul-escaped.toml", "control character (U+0000)"),
        ("invalid-utf8.toml", "invalid UTF-8 (byte 0xff)"),
        ("too-large.toml", "larger than 65536 bytes"),
        ("deep-nesting.json", "nested deeper than 64 levels"),
    ];
    for (name, needle) in cases {
        let msg = &bad(name).problems[0].message;
        assert!(msg.contains(needle), "{name}: {msg:?} lacks {needle:?}");
    }
}

#[test]
fn display_names_file_line_and_column() {
    let e = bad("app-integer.toml");
    let shown = e.to_string();
    assert!(
        shown.ends_with("bad/app-integer.toml:2:7: app: expected a string, found an integer"),
        "{shown}"
    );
}

#[test]
fn schema_from_the_future_stops_before_other_fields() {
    // schema-future.json also has `"app": 5`; a newer schema may mean
    // something else by it, so only the schema is reported.
    let e = bad("schema-future.json");
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.kind(), UnsupportedSchema);
}

#[test]
fn multiple_problems_are_all_reported_in_file_order() {
    let e = bad("multiple-problems.toml");
    let got = summaries(&e.problems);
    assert_eq!(
        got,
        owned(&[
            (WrongType, Some("app"), Some((2, 7))),
            (InvalidValue, Some("env"), Some((3, 7))),
            (InvalidValue, Some("ip"), Some((5, 6))),
            (InvalidValue, Some("platform"), Some((6, 12))),
            (InvalidValue, Some("release.batch"), Some((9, 9))),
            (InvalidValue, Some("release.deployed_at"), Some((10, 15))),
            (WrongType, Some("labels.team"), Some((13, 8))),
        ])
    );
    let shown = e.to_string();
    assert!(shown.contains(": 7 problems"), "{shown}");

    let e = bad("multiple-problems.json");
    let got = summaries(&e.problems);
    assert_eq!(
        got,
        owned(&[
            (WrongType, Some("app"), Some((3, 10))),
            (InvalidValue, Some("env"), Some((4, 10))),
            (InvalidValue, Some("ip"), Some((6, 9))),
            (InvalidValue, Some("release.batch"), Some((7, 24))),
            (InvalidValue, Some("release.deployed_at"), Some((7, 43))),
            (WrongType, Some("labels.team"), Some((8, 22))),
        ])
    );
}

#[test]
fn missing_schema_is_reported_with_the_other_problems() {
    let text = "app = 5\nenv = \"beta\"\nidc = \"cn0\"\n";
    let e =
        descriptor::parse(text.as_bytes(), Path::new("x.toml"), Format::Toml, false).unwrap_err();
    let got = summaries(&e.problems);
    assert_eq!(
        got,
        owned(&[
            (WrongType, Some("app"), Some((1, 7))),
            (MissingField, Some("schema"), None),
        ])
    );
}

#[test]
fn full_toml_has_every_field() {
    let p = good("full.toml");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let d = &p.descriptor;
    assert_eq!(d.path, fixture("good/full.toml"));
    assert_eq!(d.schema, 1);
    assert_eq!(d.app.as_deref(), Some("flight_order"));
    assert_eq!(d.env.as_deref(), Some("beta"));
    assert_eq!(d.env_type, Some(EnvType::Beta));
    assert_eq!(d.sub_env.as_deref(), Some("noahauto-2"));
    assert_eq!(d.idc.as_deref(), Some("cn0"));
    assert_eq!(d.platform, Some(Platform::Container));
    assert_eq!(d.ip, Some("10.88.3.17".parse().unwrap()));
    assert_eq!(
        d.token.as_ref().map(|t| t.expose()),
        Some("tok-3f9a1c7e5b2d4a60")
    );
    let r = d.release.as_ref().unwrap();
    assert_eq!(r.id.as_deref(), Some("r-20261122-0042"));
    assert_eq!(r.version.as_deref(), Some("2.14.0"));
    assert_eq!(r.batch, Some(2));
    assert_eq!(r.deployed_at.as_deref(), Some("2026-11-22T10:00:00Z"));
    let k = d.k8s.as_ref().unwrap();
    assert_eq!(k.cluster.as_deref(), Some("k8s-cn0-a"));
    assert_eq!(k.namespace.as_deref(), Some("flight"));
    assert_eq!(k.pod.as_deref(), Some("flight-order-7d9c4-x2k8p"));
    assert_eq!(k.node.as_deref(), Some("node-cn0-117"));
    assert_eq!(k.workload.as_deref(), Some("flight-order"));
    assert_eq!(d.labels.len(), 2);
    assert_eq!(d.labels["team"], "flight");
    assert_eq!(d.labels["cost.center"], "cc-0042");
}

#[test]
fn full_toml_and_full_json_are_equal() {
    let t = good("full.toml");
    let mut j = good("full.json");
    assert_eq!(j.descriptor.path, fixture("good/full.json"));
    j.descriptor.path = t.descriptor.path.clone();
    assert_eq!(t, j);
}

#[test]
fn minimal_files_warn_about_app_env_idc() {
    for name in ["minimal.toml", "minimal.json"] {
        let p = good(name);
        assert_eq!(p.descriptor.schema, 1);
        assert_eq!(p.descriptor.app, None);
        assert!(p.descriptor.labels.is_empty());
        let got = summaries(&p.warnings);
        assert_eq!(
            got,
            owned(&[
                (MissingField, Some("app"), None),
                (MissingField, Some("env"), None),
                (MissingField, Some("idc"), None),
            ]),
            "{name}"
        );
        // Strict: the same problems, as errors.
        let e = descriptor::read(&fixture(&format!("good/{name}")), true).unwrap_err();
        let got = summaries(&e.problems);
        assert_eq!(got.len(), 3, "{name}");
        assert!(got.iter().all(|g| g.0 == MissingField), "{name}");
    }
}

#[test]
fn unknown_keys_warn_or_fail_in_strict_mode() {
    let expected = [
        (UnknownKey, Some("owner"), Some((5, 1))),
        (UnknownKey, Some("release.canary"), Some((9, 1))),
        (UnknownKey, Some("k8s.zone"), Some((13, 1))),
    ];
    let p = good("unknown-keys.toml");
    let got = summaries(&p.warnings);
    assert_eq!(got, owned(&expected));
    assert_eq!(p.descriptor.release.unwrap().id.as_deref(), Some("r-1"));
    assert_eq!(
        p.descriptor.k8s.unwrap().cluster.as_deref(),
        Some("k8s-cn0-a")
    );

    let e = descriptor::read(&fixture("good/unknown-keys.toml"), true).unwrap_err();
    let got = summaries(&e.problems);
    assert_eq!(got, owned(&expected));
    assert!(e.problems[0].message.contains("strict"));
}

#[test]
fn unknown_keys_in_json_are_located() {
    let text = "{\"schema\": 1, \"app\": \"a\", \"env\": \"b\", \"idc\": \"c\",\n \"release\": {\"when\": 1}}";
    let p = descriptor::parse(text.as_bytes(), Path::new("x.json"), Format::Json, false).unwrap();
    let got = summaries(&p.warnings);
    assert_eq!(
        got,
        owned(&[(UnknownKey, Some("release.when"), Some((2, 14)))])
    );
}

#[test]
fn bom_is_stripped_and_not_counted() {
    let t = good("bom.toml");
    let mut j = good("bom.json");
    assert!(t.warnings.is_empty());
    assert_eq!(t.descriptor.app.as_deref(), Some("flight_order"));
    j.descriptor.path = t.descriptor.path.clone();
    assert_eq!(t, j);

    let e = descriptor::parse(
        "\u{feff}schema = \"1\"".as_bytes(),
        Path::new("x.toml"),
        Format::Toml,
        false,
    )
    .unwrap_err();
    assert_eq!(
        summaries(&e.problems),
        owned(&[(WrongType, Some("schema"), Some((1, 10)))])
    );
}

#[test]
fn json_null_means_absent() {
    let p = good("null-optional.json");
    assert!(p.warnings.is_empty());
    assert_eq!(p.descriptor.sub_env, None);
    assert_eq!(p.descriptor.release, None);
}

#[test]
fn toml_native_offset_datetime_is_accepted() {
    let p = good("toml-datetime.toml");
    assert_eq!(
        p.descriptor.release.unwrap().deployed_at.as_deref(),
        Some("2026-11-22T10:00:00+08:00")
    );
}

#[test]
fn surrounding_whitespace_is_trimmed() {
    let p = good("whitespace.toml");
    assert_eq!(p.descriptor.app.as_deref(), Some("flight_order"));
}

#[test]
fn empty_tables_are_absent() {
    let text = "schema = 1\napp = \"a\"\nenv = \"b\"\nidc = \"c\"\n[release]\n[k8s]\n[labels]\n";
    let p = descriptor::parse(text.as_bytes(), Path::new("x.toml"), Format::Toml, true).unwrap();
    assert_eq!(p.descriptor.release, None);
    assert_eq!(p.descriptor.k8s, None);
    assert!(p.descriptor.labels.is_empty());
}

#[test]
fn env_type_other_classes_are_kept() {
    let text = "schema = 1\napp = \"a\"\nenv = \"betanoah\"\nenv_type = \"Perf\"\nidc = \"c\"\n";
    let p = descriptor::parse(text.as_bytes(), Path::new("x.toml"), Format::Toml, true).unwrap();
    assert_eq!(p.descriptor.env_type, Some(EnvType::Other("perf".into())));
}

#[test]
fn token_never_appears_in_debug_output() {
    let p = good("full.toml");
    let secret = p.descriptor.token.as_ref().unwrap().expose().to_string();
    assert!(!format!("{:?}", p.descriptor).contains(&secret));
    assert!(!format!("{p:?}").contains(&secret));
    assert!(!format!("{:#?}", p.descriptor).contains(&secret));

    // A bad token is reported without quoting it.
    let text = "schema = 1\ntoken = \"s3cr3t\\u0007value\"\n";
    let e =
        descriptor::parse(text.as_bytes(), Path::new("x.toml"), Format::Toml, false).unwrap_err();
    assert_eq!(e.problems[0].field.as_deref(), Some("token"));
    assert!(!format!("{e} {e:?}").contains("s3cr3t"));
}

#[test]
fn format_from_path() {
    assert_eq!(
        Format::from_path(Path::new("/etc/envid/environment.toml")),
        Some(Format::Toml)
    );
    assert_eq!(Format::from_path(Path::new("a.JSON")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("a.yaml")), None);
    assert_eq!(Format::from_path(Path::new("toml")), None);
    assert_eq!(Format::from_path(Path::new("a.toml.bak")), None);
}

// ---------------------------------------------------------------------------
// The file system side of `read`.

/// Runs `f` on another thread and fails if it takes longer than `limit`
/// (a blocking open must fail the test, not hang the suite).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("read did not return in time")
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let e = descriptor::read(&dir.path().join("environment.toml"), false).unwrap_err();
    assert_eq!(e.kind(), NotFound);
    assert_eq!(e.problems.len(), 1);
}

#[test]
fn directory_is_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.toml");
    std::fs::create_dir(&path).unwrap();
    let e = descriptor::read(&path, false).unwrap_err();
    assert_eq!(e.kind(), NotAFile);
    assert!(e.problems[0].message.contains("directory"));
}

#[test]
fn fifo_is_not_a_file_and_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.toml");
    mkfifo(&path);
    let start = Instant::now();
    let e = within(Duration::from_secs(5), move || {
        descriptor::read(&path, false).unwrap_err()
    });
    assert_eq!(e.kind(), NotAFile);
    assert!(e.problems[0].message.contains("FIFO"));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn symlink_to_a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let path = dir.path().join("environment.json");
    std::os::unix::fs::symlink(&fifo, &path).unwrap();
    let start = Instant::now();
    let e = within(Duration::from_secs(5), move || {
        descriptor::read(&path, false).unwrap_err()
    });
    assert_eq!(e.kind(), NotAFile);
    assert!(e.problems[0].message.contains("FIFO"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn utf16_is_named_as_such() {
    for name in ["utf16-bom.toml", "utf16-bom.json"] {
        let e = bad(name);
        assert!(
            e.problems[0].message.contains("UTF-16") && e.problems[0].message.contains("FF FE"),
            "{e}"
        );
    }
}

#[test]
fn symlink_to_dev_zero_is_refused_quickly() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.toml");
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let e = within(Duration::from_secs(5), move || {
        descriptor::read(&path, false).unwrap_err()
    });
    assert!(matches!(e.kind(), NotAFile | TooLarge), "{e}");
}

#[test]
fn symlink_to_a_regular_file_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.toml");
    std::os::unix::fs::symlink(fixture("good/full.toml"), &path).unwrap();
    let p = descriptor::read(&path, false).unwrap();
    assert_eq!(p.descriptor.app.as_deref(), Some("flight_order"));
    assert_eq!(p.descriptor.path, path);
}

#[test]
fn size_cap_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let head = "schema = 1\napp = \"a\"\nenv = \"b\"\nidc = \"c\"\n#";
    let mut text = head.to_string();
    text.push_str(&"x".repeat(MAX_SIZE as usize - head.len() - 1));
    text.push('\n');
    assert_eq!(text.len() as u64, MAX_SIZE);

    let at_cap = dir.path().join("at-cap.toml");
    std::fs::write(&at_cap, &text).unwrap();
    descriptor::read(&at_cap, true).unwrap();

    let over = dir.path().join("over.toml");
    text.push('\n');
    std::fs::write(&over, &text).unwrap();
    assert_eq!(descriptor::read(&over, false).unwrap_err().kind(), TooLarge);
    assert_eq!(
        descriptor::parse(text.as_bytes(), &over, Format::Toml, false)
            .unwrap_err()
            .kind(),
        TooLarge
    );
}

#[test]
fn unreadable_file_is_io() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("environment.toml");
    std::fs::write(&path, "schema = 1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root ignores file modes (CI runs as root): read from a thread whose
    // filesystem uid is `nobody`, which also drops CAP_DAC_OVERRIDE for that
    // thread only (setfsuid is per thread on Linux).
    let kind = std::thread::spawn(move || {
        // SAFETY: setfsuid has no memory effects; it changes this thread's fsuid.
        unsafe { libc::setfsuid(65534) };
        assert!(std::fs::read(&path).is_err(), "mode 000 is not readable");
        descriptor::read(&path, false).unwrap_err().kind()
    })
    .join()
    .unwrap();
    assert_eq!(kind, Io);
}

/// A FIFO at `path`, made with the system call rather than the `mkfifo`
/// program, so the case runs on every machine.
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}
