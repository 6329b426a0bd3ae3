//! Test support shared by the workspace's test suites (a dev-dependency
//! only, never shipped).
//!
//! A test that cannot run here, because an outside program (etcd, a JDK,
//! valgrind, Chromium, PostgreSQL) or a privilege (root for a network
//! namespace) is missing, calls [`skip`] instead of passing quietly:
//!
//! * under `CI=true` the skip is a failure, so a missing install step in
//!   `.ci/install` can never turn a run green;
//! * otherwise the test returns early, and the skip is appended to
//!   `target/<profile>/envid-skips.log`, which `.ci/test` (the README's test
//!   command) prints at the end with the count of every suite.
#![warn(missing_docs)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Whether this run is a CI run, where nothing may be skipped.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Records that the calling test did not run what it is for, and why.
///
/// Panics under `CI=true` (see the crate docs); otherwise prints the reason
/// and appends it to the skip log. The caller returns right after.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    let suite = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| strip_hash(&s).to_string())
        .unwrap_or_default();
    if is_ci() {
        panic!(
            "{suite}::{test} would be skipped ({reason}), and CI=true forbids skips: \
             .ci/install must install what it needs"
        );
    }
    eprintln!("SKIPPED {suite}::{test}: {reason}");
    if let Some(log) = skip_log() {
        // One write per line with O_APPEND: concurrent tests do not interleave.
        let line = format!("{suite}::{test}\t{reason}\n");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Whether `program` runs (`program --version` exits 0); when it does not,
/// the calling test is [`skip`]ped with `why` and this returns `false`.
pub fn require_program(program: &str, why: &str) -> bool {
    if program_available(program) {
        return true;
    }
    skip(&format!("`{program}` not found ({why})"));
    false
}

/// Whether `program --version` runs and exits 0.
pub fn program_available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `target/<profile>/envid-skips.log`, from the test binary's own path
/// (`target/<profile>/deps/<name>-<hash>`).
fn skip_log() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    Some(deps.parent()?.join("envid-skips.log"))
}

/// `name-0123456789abcdef` → `name`.
fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::{skip_log, strip_hash};
    use std::process::Command;

    /// Run only through `skips_fail_under_ci_and_are_logged_otherwise`.
    #[test]
    fn helper_that_skips() {
        if std::env::var_os("ENVID_TESTKIT_CHILD").is_some() {
            super::skip("testkit self-test: the program is missing on purpose");
        }
    }

    #[test]
    fn skips_fail_under_ci_and_are_logged_otherwise() {
        let run = |ci: &str| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "tests::helper_that_skips", "--nocapture"])
                .env("ENVID_TESTKIT_CHILD", "1")
                .env("CI", ci)
                .output()
                .unwrap()
        };
        let under_ci = run("true");
        assert!(!under_ci.status.success(), "a skip under CI=true fails");
        assert!(String::from_utf8_lossy(&under_ci.stderr).contains("CI=true forbids skips"));

        let log = skip_log().unwrap();
        let before = std::fs::read_to_string(&log).unwrap_or_default();
        let outside_ci = run("");
        assert!(outside_ci.status.success(), "a skip outside CI passes");
        let after = std::fs::read_to_string(&log).unwrap();
        let added = after.strip_prefix(before.as_str()).unwrap_or(&after);
        assert!(
            added.contains("tests::helper_that_skips\ttestkit self-test"),
            "logged: {added:?}"
        );
        // The self-test's own line is not a real skip: take it out again so
        // `.ci/test` does not report it.
        std::fs::write(&log, after.replace(added, "")).unwrap();
    }

    #[test]
    fn strips_cargo_hashes_only() {
        assert_eq!(strip_hash("etcd-1b60b3affc003d3c"), "etcd");
        assert_eq!(
            strip_hash("etcd_partition-1b60b3affc003d3c"),
            "etcd_partition"
        );
        assert_eq!(strip_hash("java-jar"), "java-jar");
    }
}
