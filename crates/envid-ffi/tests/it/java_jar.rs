//! The jar as Java teams use it: `java/build.sh` bundles the freshly built
//! `libenvid_ffi` (the debug build here, stripped of debug info to keep the
//! jar small) and a small program runs with only the jar (and its own jar)
//! on the class path, in a fresh directory, from 4 JVMs started at once.
//! Then the loader's order: `-Denvid.library` and `java.library.path` win
//! over the bundled copy, and a jar without a library for this platform
//! fails naming the platform.
//!
//! Skipped, loudly, when `javac` is not installed (CI installs JDK 17).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `<os>-<arch>` directory `java/build.sh` and `NativeLoader` use here.
fn platform() -> String {
    // Rust's OS and ARCH names are the ones NativeLoader normalizes to
    // (linux, macos, windows; x86_64, aarch64).
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `java/build.sh` with `args`; the jar path it printed.
fn build_jar(args: &[&std::ffi::OsStr]) -> PathBuf {
    let o = Command::new("bash")
        .arg(common::repo_root().join("java/build.sh"))
        .args(args)
        .output()
        .expect("run bash java/build.sh");
    assert!(o.status.success(), "java/build.sh failed: {}", text(&o));
    let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(path.is_file(), "build.sh printed {}", path.display());
    path
}

/// A copy of the freshly built library without debug info (strip is
/// optional: without it the jar is just bigger).
fn stripped_library(dir: &Path) -> PathBuf {
    let lib = common::lib_dir().join(common::lib_file_name());
    let copy = dir.join(common::lib_file_name());
    std::fs::copy(&lib, &copy).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&copy)
        .status();
    copy
}

/// The user's program: compiled against the jar, packed into app.jar.
fn app_jar(dir: &Path, envid_jar: &Path) -> PathBuf {
    let src = dir.join("app-src");
    let classes = dir.join("app-classes");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("App.java"),
        "public class App {\n\
         \x20   public static void main(String[] args) {\n\
         \x20       io.envid.Environment e = io.envid.Environment.current();\n\
         \x20       System.out.println(e.getEnv() + \" \" + e.getIdc());\n\
         \x20       System.out.println(e.toJson());\n\
         \x20   }\n\
         }\n",
    )
    .unwrap();
    let o = Command::new("javac")
        .args(["-Xlint:all", "-Werror", "--release", "17", "-cp"])
        .arg(envid_jar)
        .arg("-d")
        .arg(&classes)
        .arg(src.join("App.java"))
        .output()
        .expect("run javac");
    assert!(o.status.success(), "javac App.java: {}", text(&o));
    let jar = dir.join("app.jar");
    let o = Command::new("jar")
        .args(["--create", "--file"])
        .arg(&jar)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .output()
        .expect("run jar");
    assert!(o.status.success(), "jar: {}", text(&o));
    jar
}

/// `java -cp envid.jar:app.jar App` in `cwd`, with `tmp` as java.io.tmpdir,
/// an empty java.library.path unless `extra` sets one, and the descriptor of
/// testdata/example.toml.
fn run_app(cwd: &Path, tmp: &Path, envid_jar: &Path, app: &Path, extra: &[String]) -> Command {
    let empty = cwd.join("empty-library-path");
    std::fs::create_dir_all(&empty).unwrap();
    let mut c = common::clean_command("java");
    c.current_dir(cwd)
        .arg(format!("-Djava.io.tmpdir={}", tmp.display()));
    if !extra.iter().any(|a| a.starts_with("-Djava.library.path=")) {
        c.arg(format!("-Djava.library.path={}", empty.display()));
    }
    let mut cp = envid_jar.as_os_str().to_owned();
    cp.push(":");
    cp.push(app);
    c.args(extra)
        .arg("-cp")
        .arg(cp)
        .arg("App")
        .env("ENVID_DESCRIPTOR", common::example());
    c
}

/// What the program prints when it works: the Rust library's answers.
fn expected_output() -> String {
    let e = common::rust_env(&common::example());
    format!(
        "{} {}\n{}\n",
        e.env(),
        e.idc(),
        common::rust_json(&common::example())
    )
}

/// The per-user extraction directory under `tmp`, if one was made.
fn extraction_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("envid-")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_jar_alone_works_and_the_loader_keeps_its_order() {
    if !envid_testkit::require_program("javac", "the jar is built and run with a JDK 17+") {
        return;
    }
    let build = tempfile::tempdir().unwrap();
    let lib = stripped_library(build.path());
    let dist = build.path().join("dist");
    let jar = build_jar(&[
        "--lib".as_ref(),
        lib.as_os_str(),
        "--out".as_ref(),
        dist.as_os_str(),
    ]);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(jar, dist.join(format!("envid-{version}.jar")));
    for side in ["sources", "javadoc"] {
        let p = dist.join(format!("envid-{version}-{side}.jar"));
        assert!(p.is_file(), "{} is missing", p.display());
    }
    let listing = Command::new("jar")
        .arg("--list")
        .arg("--file")
        .arg(&jar)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let bundled = format!("META-INF/native/{}/{}", platform(), common::lib_file_name());
    for entry in [
        bundled.as_str(),
        "io/envid/Environment.class",
        "io/envid/NativeLoader.class",
        "META-INF/maven/io.envid/envid/pom.xml",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} not in the jar:\n{listing}"
        );
    }
    eprintln!(
        "jar: {} bytes ({}, debug library without debug info)",
        std::fs::metadata(&jar).unwrap().len(),
        jar.display()
    );

    // The user's machine: a fresh directory holding only the two jars.
    let fresh = tempfile::tempdir().unwrap();
    let envid_jar = fresh.path().join("envid.jar");
    std::fs::copy(&jar, &envid_jar).unwrap();
    let app = app_jar(build.path(), &envid_jar);
    let app = {
        let to = fresh.path().join("app.jar");
        std::fs::copy(&app, &to).unwrap();
        to
    };
    let tmp = fresh.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let want = expected_output();

    // Four JVMs at once, each copying the bundled library out.
    let children: Vec<_> = (0..4)
        .map(|_| {
            run_app(fresh.path(), &tmp, &envid_jar, &app, &[])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start java")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "JVM {i}: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "JVM {i}");
    }
    // The copies went to one owner-only directory and were removed once loaded.
    let dirs = extraction_dirs(&tmp);
    assert_eq!(dirs.len(), 1, "one private directory: {dirs:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is owner-only", dirs[0].display());
    }
    let left: Vec<_> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "copies left behind: {left:?}");

    // -Denvid.library wins: a missing file is an error naming it, even though
    // the jar bundles a good library...
    let tmp2 = fresh.path().join("tmp2");
    std::fs::create_dir(&tmp2).unwrap();
    let missing = fresh.path().join("no-such-libenvid.so");
    let o = run_app(
        fresh.path(),
        &tmp2,
        &envid_jar,
        &app,
        &[format!("-Denvid.library={}", missing.display())],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        err.contains(&format!("-Denvid.library={}", missing.display())),
        "the error names the file: {}",
        text(&o)
    );
    // ...and a good one loads, with nothing copied out.
    let o = run_app(
        fresh.path(),
        &tmp2,
        &envid_jar,
        &app,
        &[format!("-Denvid.library={}", lib.display())],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    assert!(
        extraction_dirs(&tmp2).is_empty(),
        "-Denvid.library: nothing copied out"
    );

    // java.library.path wins over the bundled copy.
    let o = run_app(
        fresh.path(),
        &tmp2,
        &envid_jar,
        &app,
        &[format!(
            "-Djava.library.path={}",
            common::lib_dir().display()
        )],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    assert!(
        extraction_dirs(&tmp2).is_empty(),
        "java.library.path: nothing copied out"
    );

    // A jar whose library is for another platform: the error names this one
    // and says what was tried.
    let other = build.path().join("other");
    let other_jar = build_jar(&[
        "--lib".as_ref(),
        lib.as_os_str(),
        "--out".as_ref(),
        other.as_os_str(),
        "--platform".as_ref(),
        "plan9-mips".as_ref(),
    ]);
    let o = run_app(fresh.path(), &tmp2, &other_jar, &app, &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}", text(&o));
    for needle in [
        format!("for platform {}", platform()),
        "os.arch=".to_string(),
        "-Denvid.library: not set".to_string(),
        "java.library.path".to_string(),
        format!("the jar holds no {bundled}"),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in: {}", text(&o));
    }
}

#[test]
fn build_sh_fails_clearly_without_the_library() {
    if !envid_testkit::require_program("javac", "java/build.sh needs a JDK 17+") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(common::repo_root().join("java/build.sh"))
        .args(["--lib", "/nonexistent/libenvid_ffi.so", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        err.contains("/nonexistent/libenvid_ffi.so not found")
            && err.contains("cargo build --release -p envid-ffi"),
        "{}",
        text(&o)
    );
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "nothing written"
    );
}
