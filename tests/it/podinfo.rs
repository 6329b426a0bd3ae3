//! The downward-API reader against the fake kubelet volumes in
//! `testdata/hosts/k8s-podinfo*` (laid out as the kubelet's AtomicWriter
//! writes them) and the files in `testdata/podinfo`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envid::location::Location;
use envid::podinfo::{
    self, PodInfo, PodInfoError, PodInfoErrorKind, PodInfoFile, PodInfoMapping, DATA_LINK,
    MAX_FILE_SIZE,
};
use envid::Field;

use PodInfoErrorKind::*;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

fn host_volume(host: &str) -> PathBuf {
    testdata(&format!("hosts/{host}/etc/podinfo"))
}

fn read(dir: &Path) -> PodInfo {
    PodInfo::read(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .expect("the directory exists")
}

fn read_err(dir: &Path) -> PodInfoError {
    match PodInfo::read(dir) {
        Ok(i) => panic!("{} read: {i:?}", dir.display()),
        Err(e) => e,
    }
}

/// Copies a fixture tree, symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Resolves `field` with the default mapping: value, file name, key.
fn mapped(info: &PodInfo, field: Field) -> Option<(String, String, String)> {
    PodInfoMapping::default()
        .resolve(info, field)
        .unwrap()
        .map(|(value, origin)| {
            assert_eq!(origin.file.parent(), Some(info.dir.as_path()));
            let file = origin.file.file_name().unwrap().to_string_lossy().into();
            (value, file, origin.key)
        })
}

fn owned(v: &str, f: &str, k: &str) -> Option<(String, String, String)> {
    Some((v.into(), f.into(), k.into()))
}

#[test]
fn atomic_writer_volume_reads_its_generation_and_maps_every_field() {
    let dir = host_volume("k8s-podinfo");
    let i = read(&dir);
    assert_eq!(
        i.generation.as_deref(),
        Some("..2026_11_30_10_00_00.123456789")
    );
    assert_eq!(
        i.uid.as_deref(),
        Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
    );
    assert_eq!(i.labels.len(), 4);
    assert_eq!(i.annotations.len(), 6);
    assert_eq!(
        i.annotations["note"],
        "line one\nline two\t\"quoted\" \\ café\u{a0}😀\u{1b}\u{e0001}"
    );
    assert_eq!(
        mapped(&i, Field::Env),
        owned("beta", "annotations", "envid.io/env")
    );
    assert_eq!(
        mapped(&i, Field::Idc),
        owned("cn0", "labels", "envid.io/idc")
    );
    assert_eq!(
        mapped(&i, Field::SubEnv),
        owned("noahauto-2", "annotations", "envid.io/sub-env")
    );
    assert_eq!(
        mapped(&i, Field::App),
        owned("flight-order", "labels", "app.kubernetes.io/name")
    );
    // Provenance names the file the pod sees, not the timestamped directory.
    let (_, origin) = PodInfoMapping::default()
        .resolve(&i, Field::Env)
        .unwrap()
        .unwrap();
    assert_eq!(origin.file, dir.join("annotations"));
    assert_eq!(
        origin.to_string(),
        format!("{} key envid.io/env", dir.join("annotations").display())
    );
    assert_eq!(
        i.location(PodInfoFile::Annotations, "envid.io/env"),
        Some(Location {
            line: 1,
            column: 15
        })
    );
    // Other labels only when asked for.
    assert!(PodInfoMapping::default()
        .offered_labels(&i)
        .unwrap()
        .is_empty());
    let offered = PodInfoMapping {
        labels: true,
        ..PodInfoMapping::default()
    }
    .offered_labels(&i)
    .unwrap();
    let keys: Vec<&str> = offered.keys().map(String::as_str).collect();
    assert_eq!(keys, ["pod-template-hash", "team"]);
}

#[test]
fn plain_directory_without_data_link_reads_directly() {
    let i = read(&host_volume("k8s-podinfo-plain"));
    assert_eq!(i.generation, None);
    assert_eq!(i.uid, None);
    assert_eq!(
        mapped(&i, Field::Env),
        owned("prod", "labels", "envid.io/env")
    );
    assert_eq!(
        mapped(&i, Field::Idc),
        owned("cn2", "labels", "envid.io/idc")
    );
    assert_eq!(mapped(&i, Field::SubEnv), None);
    // envid.io/app wins over app.kubernetes.io/name.
    assert_eq!(
        mapped(&i, Field::App),
        owned("flight_order", "annotations", "envid.io/app")
    );
}

#[test]
fn kubelet_stopped_mid_swap_reads_the_generation_data_names() {
    // The new generation and ..data_tmp exist; ..data still names the old.
    let fixture = host_volume("k8s-podinfo-swapping");
    let i = read(&fixture);
    assert_eq!(
        i.generation.as_deref(),
        Some("..2026_11_30_10_00_00.111111111")
    );
    assert_eq!(mapped(&i, Field::Env).unwrap().0, "beta");
    assert_eq!(mapped(&i, Field::SubEnv).unwrap().0, "old");
    assert_eq!(
        i.uid.as_deref(),
        Some("11111111-1111-4111-8111-111111111111")
    );

    // The kubelet goes on: the rename, then the old generation goes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("podinfo");
    copy_tree(&fixture, &dir);
    std::fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
    let i = read(&dir);
    assert_eq!(
        i.generation.as_deref(),
        Some("..2026_11_30_10_05_00.222222222")
    );
    assert_eq!(
        (mapped(&i, Field::Env).unwrap().0, i.uid.as_deref()),
        (
            "prod".to_string(),
            Some("22222222-2222-4222-8222-222222222222")
        )
    );
    std::fs::remove_dir_all(dir.join("..2026_11_30_10_00_00.111111111")).unwrap();
    assert_eq!(read(&dir).labels, i.labels);
}

/// One AtomicWriter update: new timestamped directory, `..data_tmp`
/// renamed over `..data`, user-visible links, old directory removed.
fn atomic_write(dir: &Path, n: u64) {
    let generation = format!("..2026_11_30_10_00_00.{n:09}");
    let new = dir.join(&generation);
    std::fs::create_dir(&new).unwrap();
    std::fs::write(new.join("labels"), format!("generation=\"{n}\"")).unwrap();
    std::fs::write(new.join("annotations"), format!("generation=\"{n}\"")).unwrap();
    std::fs::write(new.join("uid"), format!("uid-{n}")).unwrap();
    let old = std::fs::read_link(dir.join(DATA_LINK)).ok();
    symlink(&generation, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
    for f in ["labels", "annotations", "uid"] {
        let _ = symlink(format!("{DATA_LINK}/{f}"), dir.join(f));
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn concurrent_kubelet_swaps_never_mix_two_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    atomic_write(&dir, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                atomic_write(&dir, n);
                n += 1;
                // The kubelet updates at most every sync period; this is a
                // far busier writer, still leaving reads room to finish.
                std::thread::sleep(Duration::from_micros(200));
            }
            n
        })
    };
    let (mut ok, mut unstable, mut seen) = (0, 0, std::collections::BTreeSet::new());
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        match PodInfo::read(&dir) {
            Ok(Some(i)) => {
                let g = &i.labels["generation"];
                assert_eq!(
                    &i.annotations["generation"], g,
                    "labels and annotations mixed"
                );
                assert_eq!(
                    i.uid,
                    Some(format!("uid-{g}")),
                    "uid from another generation"
                );
                let n: u64 = g.parse().unwrap();
                assert_eq!(i.generation, Some(format!("..2026_11_30_10_00_00.{n:09}")));
                seen.insert(n);
                ok += 1;
            }
            Ok(None) => panic!("the directory vanished"),
            Err(e) if e.kind == Unstable => unstable += 1,
            Err(e) => panic!("{e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    eprintln!(
        "{ok} consistent reads, {unstable} unstable, {} generations seen of {writes}",
        seen.len()
    );
    assert!(
        ok > 0 && seen.len() > 1,
        "{ok} reads, {} generations",
        seen.len()
    );
    assert!(unstable < ok, "{unstable} unstable reads, {ok} good");
}

#[test]
fn a_missing_directory_is_no_source_and_a_file_is_an_error() {
    assert_eq!(
        PodInfo::read(&testdata("hosts/empty/etc/podinfo")).unwrap(),
        None
    );
    let e = read_err(&testdata("podinfo/good/labels"));
    assert_eq!(e.kind, NotADirectory);
    // Every projected file absent: the source is there, and says nothing.
    let tmp = tempfile::tempdir().unwrap();
    let i = read(tmp.path());
    assert!(i.labels.is_empty() && i.annotations.is_empty() && i.uid.is_none());
    assert_eq!(mapped(&i, Field::Env), None);
}

#[test]
fn a_data_link_that_is_no_kubelet_link_is_a_layout_error() {
    type Make = fn(&Path);
    let cases: [(&str, Make); 5] = [
        ("a directory", |d| {
            std::fs::create_dir(d.join(DATA_LINK)).unwrap()
        }),
        ("a parent", |d| {
            symlink("../elsewhere", d.join(DATA_LINK)).unwrap()
        }),
        ("absolute", |d| symlink("/etc", d.join(DATA_LINK)).unwrap()),
        ("nested", |d| {
            symlink("..2026/x", d.join(DATA_LINK)).unwrap()
        }),
        ("dangling", |d| {
            symlink("..2026_11_30_10_00_00.1", d.join(DATA_LINK)).unwrap()
        }),
    ];
    for (what, make) in cases {
        let tmp = tempfile::tempdir().unwrap();
        make(tmp.path());
        let e = read_err(tmp.path());
        assert_eq!(e.kind, Layout, "{what}: {e}");
        assert_eq!(e.path, tmp.path().join(DATA_LINK), "{what}");
    }
}

#[test]
fn a_symlink_to_dev_zero_is_refused_unopened() {
    // Plain, and inside a generation: /dev/zero never ends, so it must be
    // refused before any read (and fast).
    for generation in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let data = if generation {
            let g = tmp.path().join("..2026_11_30_10_00_00.1");
            std::fs::create_dir(&g).unwrap();
            symlink("..2026_11_30_10_00_00.1", tmp.path().join(DATA_LINK)).unwrap();
            symlink("..data/labels", tmp.path().join("labels")).unwrap();
            g
        } else {
            tmp.path().to_path_buf()
        };
        symlink("/dev/zero", data.join("labels")).unwrap();
        let started = Instant::now();
        let e = read_err(tmp.path());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e.kind, NotAFile, "{e}");
        assert_eq!(e.path, tmp.path().join("labels"));
        assert!(e.message.contains("character device"), "{e}");
    }
}

#[test]
fn a_fifo_or_a_directory_is_not_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("annotations")).unwrap();
    let e = read_err(tmp.path());
    assert_eq!(
        (e.kind, e.path.clone()),
        (NotAFile, tmp.path().join("annotations"))
    );

    let tmp = tempfile::tempdir().unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let path = tmp.path().join("uid");
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_err(tmp.path());
        assert_eq!(e.kind, NotAFile);
        assert!(e.message.contains("FIFO"), "{e}");
    }
}

#[test]
fn a_huge_file_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let line = "k=\"0123456789012345678901234567890123456789012345678901234567890\"\n";
    let text = line.repeat(MAX_FILE_SIZE as usize / line.len() + 1);
    assert!(text.len() as u64 > MAX_FILE_SIZE);
    std::fs::write(tmp.path().join("annotations"), &text).unwrap();
    let e = read_err(tmp.path());
    assert_eq!(e.kind, TooLarge);
    assert_eq!(e.path, tmp.path().join("annotations"));
    assert!(e.message.contains("256 KiB"), "{e}");
    // A sparse file claiming a terabyte is refused by its size alone.
    let f = std::fs::File::create(tmp.path().join("annotations")).unwrap();
    f.set_len(1 << 40).unwrap();
    assert_eq!(read_err(tmp.path()).kind, TooLarge);
}

#[test]
fn a_bad_uid_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("uid"), "6f1c\u{7}2a9e").unwrap();
    let e = read_err(tmp.path());
    assert_eq!(e.kind, InvalidValue);
    assert_eq!(e.path, tmp.path().join("uid"));
    // Empty or a newline only: no uid, as with an empty POD_UID.
    std::fs::write(tmp.path().join("uid"), "\n").unwrap();
    assert_eq!(read(tmp.path()).uid, None);
}

/// Every bad file: kind, line, column.
const BAD: &[(&str, (PodInfoErrorKind, usize, usize))] = &[
    ("escape-octal", (BadEscape, 2, 4)),
    ("escape-single-quote", (BadEscape, 1, 6)),
    ("escape-unknown", (BadEscape, 1, 4)),
    ("escape-short-hex", (BadEscape, 1, 4)),
    ("escape-surrogate", (BadEscape, 1, 4)),
    ("escape-past-unicode", (BadEscape, 1, 4)),
    ("escape-not-utf8", (InvalidUtf8, 1, 6)),
    ("backslash-at-end", (BadEscape, 1, 5)),
    ("invalid-utf8", (InvalidUtf8, 1, 4)),
    ("utf16", (InvalidUtf8, 1, 1)),
    ("no-equals", (Syntax, 2, 13)),
    ("empty-key", (Syntax, 1, 1)),
    ("space-in-key", (Syntax, 1, 3)),
    ("unquoted", (Syntax, 1, 3)),
    ("single-quoted", (Syntax, 1, 3)),
    ("unterminated", (Syntax, 1, 5)),
    ("text-after-value", (Syntax, 1, 6)),
    ("raw-tab", (Syntax, 1, 5)),
    ("duplicate-key", (DuplicateKey, 3, 1)),
];

fn parse_file(path: &Path) -> Result<Vec<(String, String)>, PodInfoError> {
    podinfo::parse_bytes(&std::fs::read(path).unwrap(), path)
}

#[test]
fn every_bad_file_is_refused_at_its_place() {
    let mut failures = Vec::new();
    for &(name, (kind, line, column)) in BAD {
        let path = testdata(&format!("podinfo/bad/{name}"));
        let e = match parse_file(&path) {
            Ok(v) => panic!("{name} parsed: {v:?}"),
            Err(e) => e,
        };
        let want = (kind, Some(Location { line, column }));
        if (e.kind, e.location.clone()) != want {
            failures.push(format!("{name}: expected {want:?}\n  got {e}"));
        }
        // file:line:column, the form editors jump to.
        let prefix = format!("{}:{line}:{column}: ", path.display());
        assert!(e.to_string().starts_with(&prefix), "{e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_file_is_in_the_table() {
    let mut listed: Vec<&str> = BAD.iter().map(|(n, _)| *n).collect();
    listed.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(testdata("podinfo/bad"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);
}

#[test]
fn a_bad_file_in_a_volume_is_named_as_the_pod_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let generation = tmp.path().join("..2026_11_30_10_00_00.1");
    std::fs::create_dir(&generation).unwrap();
    std::fs::copy(
        testdata("podinfo/bad/escape-octal"),
        generation.join("annotations"),
    )
    .unwrap();
    symlink("..2026_11_30_10_00_00.1", tmp.path().join(DATA_LINK)).unwrap();
    let e = read_err(tmp.path());
    assert_eq!(e.kind, BadEscape);
    assert_eq!(e.key.as_deref(), Some("b"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:4: b: unknown escape \\1; Go's %q writes only \\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\xNN \\uNNNN \\UNNNNNNNN",
            tmp.path().join("annotations").display()
        )
    );
}

#[test]
fn good_files_parse() {
    let got = |name: &str| parse_file(&testdata(&format!("podinfo/good/{name}"))).unwrap();
    assert_eq!(
        got("every-escape"),
        [(
            "a".to_string(),
            "\u{7}\u{8}\u{c}\n\r\t\u{b}\\\"\0\u{1b}\u{7f}\u{a0}\u{200b}\u{feff}\u{e0001}é😀"
                .to_string()
        )]
    );
    assert_eq!(got("empty"), []);
    let two = [("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
    assert_eq!(got("crlf"), two);
    assert_eq!(got("bom-blank-lines"), two);
    assert_eq!(got("labels").len(), 4);
    let last = got("last-applied");
    assert!(last[0].1.starts_with("{\"apiVersion\":\"v1\""), "{last:?}");
    assert!(last[0].1.ends_with("}\n"));
}
