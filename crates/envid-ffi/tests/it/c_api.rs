//! Builds `tests/c/test_envid.c` with `cc -Wall -Wextra -Werror` against
//! `include/envid.h`, links it to the freshly built `libenvid_ffi`, runs it
//! and checks its "N passed, 0 failed"; then runs it again under valgrind
//! when valgrind is on the PATH.
//!
//! The lookup client and the replica are tested against the real reference
//! service (`envid_server::spawn` on 127.0.0.1, port 0, a copy of
//! `testdata/registry.toml` that the C program rewrites to make the service
//! publish deltas, then restores).
//!
//! Valgrind: definite and indirect leaks and all memory errors fail the test.
//! "Still reachable" blocks are accepted: they are the process-wide
//! environment (a static that lives as long as the process by design), the
//! per-thread last-error buffers and the Rust runtime's own statics.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(work: &Path, source: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = common::lib_dir();
    let exe = work.join(source.trim_end_matches(".c"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c").join(source))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-lenvid_ffi", "-pthread"])
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e} (a C compiler is required)"));
    assert!(
        out.status.success(),
        "{cc} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run(mut cmd: Command, work: &Path) -> (String, String, Option<i32>) {
    cmd.arg(common::example()).arg(work);
    run_args(cmd)
}

fn run_args(mut cmd: Command) -> (String, String, Option<i32>) {
    cmd.env("ENVID_DESCRIPTOR", common::example())
        .env("LD_LIBRARY_PATH", common::lib_dir())
        // Quiet the panic hook for the expected failures.
        .env("RUST_BACKTRACE", "0");
    let out = cmd.output().expect("run the C test program");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn c_program_passes() {
    let work = tempfile::tempdir().unwrap();
    let (service, registry) = common::Service::start_on_copy(work.path());
    common::write_fixtures(work.path());
    let exe = build(work.path(), "test_envid.c");

    let mut cmd = common::clean_command(&exe);
    cmd.env("ENVID_TEST_LOOKUP_URL", service.url())
        .env("ENVID_TEST_REGISTRY", &registry);
    let (stdout, stderr, code) = run(cmd, work.path());
    print!("{stdout}");
    let (passed, failed) = common::summary(&stdout)
        .unwrap_or_else(|| panic!("no summary line; stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert_eq!(
        (failed, code),
        (0, Some(0)),
        "C test failed:\n{stdout}\n{stderr}"
    );
    assert!(passed > 200, "only {passed} checks ran");
    eprintln!("C API: {passed} passed, {failed} failed");

    // A bad ENVID_IP: ENVID_INVALID_VALUE from envid_current, every time.
    let mut bad = common::clean_command(&exe);
    bad.arg(common::example())
        .arg(work.path())
        .arg("invalid-value")
        .env("ENVID_IP", "not-an-ip");
    let (bstdout, bstderr, bcode) = run_args(bad);
    assert_eq!(
        (common::summary(&bstdout).map(|s| s.1), bcode),
        (Some(0), Some(0)),
        "C test, invalid-value mode:\n{bstdout}\n{bstderr}"
    );

    if !envid_testkit::require_program("valgrind", "the memory check of the C test") {
        return;
    }
    let mut vg = common::clean_command("valgrind");
    vg.args([
        "--leak-check=full",
        "--error-exitcode=99",
        "--errors-for-leak-kinds=definite,indirect",
        "--show-leak-kinds=definite,indirect",
        "--quiet",
    ])
    .arg(&exe)
    .env("ENVID_TEST_LOOKUP_URL", service.url())
    .env("ENVID_TEST_REGISTRY", &registry);
    let (vstdout, vstderr, vcode) = run(vg, work.path());
    assert_eq!(
        vcode,
        Some(0),
        "valgrind reported errors (exit {vcode:?}):\n{vstdout}\n{vstderr}"
    );
    assert_eq!(
        common::summary(&vstdout).map(|s| s.1),
        Some(0),
        "C test under valgrind:\n{vstdout}"
    );
}

#[test]
fn readme_example_runs() {
    let work = tempfile::tempdir().unwrap();
    let exe = build(work.path(), "example.c");
    let service = common::Service::start();
    let mut cmd = common::clean_command(&exe);
    cmd.env("ENVID_LOOKUP_URL", service.url());
    let (stdout, stderr, code) = run_args(cmd);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("flight_order in beta at cn0\n"),
        "{stdout}"
    );
    assert!(stdout.contains("load failed: ENVID_IO: "), "{stdout}");
    assert!(stdout.contains("\"app\":\"flightqma\""), "{stdout}");
    assert!(
        stdout.contains("10.0.0.5: {\"ip\":\"10.0.0.5\",\"app\":\"flightqma\""),
        "{stdout}"
    );
    assert!(stdout.contains("requests: 1\n"), "{stdout}");
}

/// The README's `cc` command, run literally (by `sh`, as a reader pastes
/// it) in a copy of the layout it expects, with the freshly built library
/// as `target/release/libenvid_ffi.so`; the binary then runs from another
/// directory without `LD_LIBRARY_PATH`: `$ORIGIN` finds the library, and
/// nothing lands outside `target/`.
#[test]
fn readme_cc_command_builds_into_target_and_runs_from_anywhere() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## From C").expect("a From C section")..];
    let command = section
        .lines()
        .skip_while(|l| !l.starts_with("cc "))
        .take_while(|l| !l.starts_with("ENVID_") && !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(command.contains("-Wl,-rpath,'$ORIGIN'"), "{command}");
    assert!(command.contains("-o target/release/"), "{command}");

    let tree = tempfile::tempdir().unwrap();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(tree.path().join("crates/envid-ffi/tests")).unwrap();
    std::os::unix::fs::symlink(
        crate_dir.join("include"),
        tree.path().join("crates/envid-ffi/include"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        crate_dir.join("tests/c"),
        tree.path().join("crates/envid-ffi/tests/c"),
    )
    .unwrap();
    let release = tree.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(
        common::lib_dir().join(common::lib_file_name()),
        release.join(common::lib_file_name()),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(tree.path())
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut outside: Vec<_> = std::fs::read_dir(tree.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["crates", "target"],
        "the build left files in the tree"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let exe = release.join(
        command
            .rsplit("-o ")
            .next()
            .unwrap()
            .trim()
            .rsplit('/')
            .next()
            .unwrap(),
    );
    let mut cmd = common::clean_command(&exe);
    cmd.current_dir(elsewhere.path())
        .env_remove("LD_LIBRARY_PATH")
        .env("ENVID_DESCRIPTOR", common::example())
        .env("RUST_BACKTRACE", "0");
    let out = cmd.output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("flight_order in beta at cn0\n"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/c/test_identity.c`: the C API verifies the identity cases with
/// the Rust verifier's answers, against the signing service, then with the
/// service stopped from the keys cache file; and again under valgrind.
#[test]
fn c_verifier_agrees_with_rust() {
    let work = tempfile::tempdir().unwrap();
    let common::IdentityCases {
        service,
        file,
        count,
    } = common::identity_cases(work.path());
    let exe = build(work.path(), "test_identity.c");
    let cache = work.path().join("keys.json");
    let url = service.base_url();
    let run_cases = |program: &Path, wrap: Option<&[&str]>| {
        let mut cmd = match wrap {
            None => common::clean_command(program),
            Some(args) => {
                let mut c = common::clean_command(args[0]);
                c.args(&args[1..]).arg(program);
                c
            }
        };
        cmd.arg(&file).arg(&cache).env("ENVID_TEST_KEYS_URL", &url);
        let (stdout, stderr, code) = run_args(cmd);
        let (passed, failed) = common::summary(&stdout)
            .unwrap_or_else(|| panic!("no summary line; stdout:\n{stdout}\nstderr:\n{stderr}"));
        assert_eq!(
            (failed, code),
            (0, Some(0)),
            "C identity test:\n{stdout}\n{stderr}"
        );
        assert!(passed > count, "only {passed} checks ran");
    };
    run_cases(&exe, None);
    assert!(cache.exists(), "the keys cache file was written");
    if envid_testkit::require_program("valgrind", "the memory check of the C programs") {
        run_cases(
            &exe,
            Some(&[
                "valgrind",
                "--leak-check=full",
                "--error-exitcode=99",
                "--errors-for-leak-kinds=definite,indirect",
                "--show-leak-kinds=definite,indirect",
                "--quiet",
            ]),
        );
    }
    service.shutdown();
    // The service is down: the same answers from the keys cache file.
    run_cases(&exe, None);
}

/// `tests/c/test_registrar.c`: the C registrar registers 127.0.0.1 as
/// flight_order with the real service, gets a signed identity the C
/// verifier accepts, renews and deregisters; and again under valgrind.
#[test]
fn c_registrar_gets_a_verified_identity() {
    let work = tempfile::tempdir().unwrap();
    let service = common::registration_service(work.path());
    let exe = build(work.path(), "test_registrar.c");
    let url = service.base_url();
    let run_program = |wrap: &[&str]| {
        let mut cmd = match wrap.split_first() {
            None => common::clean_command(&exe),
            Some((first, rest)) => {
                let mut c = common::clean_command(first);
                c.args(rest).arg(&exe);
                c
            }
        };
        cmd.arg(common::example())
            .env("ENVID_TEST_URL", &url)
            .env("ENVID_TEST_TOKEN", common::FLIGHT_ORDER_TOKEN);
        let (stdout, stderr, code) = run_args(cmd);
        let (passed, failed) = common::summary(&stdout)
            .unwrap_or_else(|| panic!("no summary line; stdout:\n{stdout}\nstderr:\n{stderr}"));
        assert_eq!(
            (failed, code),
            (0, Some(0)),
            "C registrar test:\n{stdout}\n{stderr}"
        );
        assert!(passed >= 20, "only {passed} checks ran");
        assert!(
            !stdout.contains(common::FLIGHT_ORDER_TOKEN),
            "the token was printed"
        );
    };
    run_program(&[]);
    if envid_testkit::require_program("valgrind", "the memory check of the C programs") {
        run_program(&[
            "valgrind",
            "--leak-check=full",
            "--error-exitcode=99",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--quiet",
        ]);
    }
    service.shutdown();
}

/// `tests/c/test_events.c`: the C consumer of join and leave events, against
/// a service whose registry file it rewrites (the cases of
/// tests/it/events.rs: join, leave, an IP moving between apps, a restart
/// delivering an unacknowledged event again with its id, a timeout); and
/// again under valgrind, as another run (its own apps and IPs).
#[test]
fn c_events_follow_joins_and_leaves() {
    let work = tempfile::tempdir().unwrap();
    let (service, registry) = common::events_service(work.path());
    let exe = build(work.path(), "test_events.c");
    let url = service.base_url();
    let run_program = |run: u8, wrap: &[&str]| {
        common::register_for_events(&url, run);
        let mut cmd = match wrap.split_first() {
            None => common::clean_command(&exe),
            Some((first, rest)) => {
                let mut c = common::clean_command(first);
                c.args(rest).arg(&exe);
                c
            }
        };
        cmd.arg(&url)
            .arg(&registry)
            .arg(work.path())
            .arg(run.to_string());
        let (stdout, stderr, code) = run_args(cmd);
        print!("{stdout}");
        let (passed, failed) = common::summary(&stdout)
            .unwrap_or_else(|| panic!("no summary line; stdout:\n{stdout}\nstderr:\n{stderr}"));
        assert_eq!(
            (failed, code),
            (0, Some(0)),
            "C events test (run {run}):\n{stdout}\n{stderr}"
        );
        assert!(passed >= 100, "only {passed} checks ran");
    };
    run_program(1, &[]);
    if envid_testkit::require_program("valgrind", "the memory check of the C programs") {
        run_program(
            2,
            &[
                "valgrind",
                "--leak-check=full",
                "--error-exitcode=99",
                "--errors-for-leak-kinds=definite,indirect",
                "--show-leak-kinds=definite,indirect",
                "--quiet",
            ],
        );
    }
    service.shutdown();
}
