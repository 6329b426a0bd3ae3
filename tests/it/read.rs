//! The bounded reader (`envid::read`) on real files: every kind of path it
//! must refuse, the cap at its exact edge, and the text checks.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use envid::location::Location;
use envid::read::{self, FileKind, ReadError, ReadProblem, TextError};

const CAP: u64 = 64;

/// `f` run on a thread, failing when it does not return within `limit`:
/// a read that blocks must fail the test, not hang the suite.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the read did not return in time")
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

fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn refused(path: PathBuf) -> ReadError {
    within(Duration::from_secs(5), move || {
        read::bytes(&path, CAP).unwrap_err()
    })
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    // No writer ever opens the FIFO: a blocking open would wait forever.
    for path in [fifo, link] {
        let started = Instant::now();
        let e = refused(path.clone());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e.problem, ReadProblem::NotAFile(FileKind::Fifo));
        assert_eq!(e.path, path);
        assert_eq!(
            e.to_string(),
            format!("{}: not a regular file: it is a FIFO", path.display())
        );
    }
}

#[test]
fn a_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let e = refused(dir.path().to_path_buf());
    assert_eq!(e.problem, ReadProblem::NotAFile(FileKind::Directory));
    assert!(e
        .to_string()
        .ends_with("not a regular file: it is a directory"));
    let e = read::text(dir.path(), CAP).unwrap_err();
    assert_eq!(e.problem, ReadProblem::NotAFile(FileKind::Directory));
}

#[test]
fn a_symlink_to_dev_zero_is_refused_quickly() {
    if !Path::new("/dev/zero").exists() {
        envid_testkit::skip("no /dev/zero on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let started = Instant::now();
    // A cap far above any memory: /dev/zero never ends, so only refusing
    // it before reading keeps this fast.
    let e = within(Duration::from_secs(5), move || {
        read::bytes(&link, u64::MAX / 2).unwrap_err()
    });
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(e.problem, ReadProblem::NotAFile(FileKind::CharDevice));
    assert!(e.to_string().contains("a character device"), "{e}");
}

#[test]
fn exactly_the_cap_is_read_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = file(dir.path(), "at", &[b'a'; CAP as usize]);
    assert_eq!(read::bytes(&at, CAP).unwrap().len(), CAP as usize);
    assert_eq!(read::text(&at, CAP).unwrap().len(), CAP as usize);

    let over = file(dir.path(), "over", &[b'a'; CAP as usize + 1]);
    let e = read::bytes(&over, CAP).unwrap_err();
    assert_eq!(e.problem, ReadProblem::TooLarge { cap: CAP });
    assert_eq!(
        e.to_string(),
        format!("{}: larger than {CAP} bytes", over.display())
    );
    assert_eq!(read::text(&over, CAP).unwrap_err(), e);

    let empty = file(dir.path(), "empty", b"");
    assert_eq!(read::bytes(&empty, CAP).unwrap(), b"");
    assert_eq!(read::bytes(&empty, 0).unwrap(), b"");
    assert_eq!(
        read::bytes(&at, 0).unwrap_err().problem,
        ReadProblem::TooLarge { cap: 0 }
    );
}

#[test]
fn a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let e = read::bytes(&dir.path().join("nope"), CAP).unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.problem, ReadProblem::NotFound);
    assert!(e.to_string().ends_with("nope: file not found"), "{e}");
    // A dangling symlink is missing too.
    let link = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
    assert!(read::bytes(&link, CAP).unwrap_err().is_not_found());
}

#[test]
fn a_utf8_bom_is_skipped_by_text_and_kept_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "bom", b"\xEF\xBB\xBFa = 1\n");
    assert_eq!(read::text(&path, CAP).unwrap(), "a = 1\n");
    assert_eq!(read::bytes(&path, CAP).unwrap(), b"\xEF\xBB\xBFa = 1\n");
    // The cap counts the file, mark included.
    assert_eq!(
        read::text(&path, 8).unwrap_err().problem,
        ReadProblem::TooLarge { cap: 8 }
    );
}

#[test]
fn utf16_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("le", &b"\xFF\xFEa\x00=\x001\x00"[..]),
        ("be", &b"\xFE\xFF\x00a\x00=\x001"[..]),
    ] {
        let path = file(dir.path(), name, bytes);
        let e = read::text(&path, CAP).unwrap_err();
        let bom = [bytes[0], bytes[1]];
        assert_eq!(e.problem, ReadProblem::Text(TextError::Utf16 { bom }));
        assert_eq!(e.location(), Some(Location { line: 1, column: 1 }));
        assert!(
            e.to_string().contains("UTF-16 text (byte-order mark"),
            "{e}"
        );
    }
}

#[test]
fn invalid_utf8_is_located_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Line 2, after "é = " (four characters, five bytes); the mark on line 1
    // does not count as a column.
    let path = file(dir.path(), "bad", b"\xEF\xBB\xBFok\n\xc3\xa9 = \xff\n");
    let e = read::text(&path, CAP).unwrap_err();
    assert_eq!(
        e.problem,
        ReadProblem::Text(TextError::InvalidUtf8 {
            byte: 0xff,
            location: Location { line: 2, column: 5 },
        })
    );
    assert_eq!(
        e.to_string(),
        format!("{}:2:5: invalid UTF-8 (byte 0xff)", path.display())
    );
    // bytes() does not look at the content.
    assert!(read::bytes(&path, CAP).is_ok());
}
