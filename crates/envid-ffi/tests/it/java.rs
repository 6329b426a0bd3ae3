//! Compiles the Java binding (`java/src`) and its JUnit 5 tests (`java/test`)
//! with `javac`, and runs the tests with JUnit's console launcher (Debian's
//! `junit5` package; `.ci/run` installs it) against the freshly built
//! `libenvid_ffi`. A failure prints JUnit's tree: the test and the
//! assertion's message.
//!
//! The expected answers come from the Rust library itself: for every
//! descriptor (testdata/example.toml, testdata/descriptors/{good,bad}/*) this
//! harness writes the Rust `Environment`'s field values and JSON, or the
//! error kind loading gives, and for a list of hostnames what the Rust
//! `Rules` explain; Java must agree field by field.
//!
//! Lookups go to the real reference service (`envid_server::spawn` on
//! 127.0.0.1, a copy of `testdata/registry.toml`); the Rust client's answers
//! for the same IPs are the expectation. The replica test rewrites the copy
//! (then restores it) to see deltas arrive. The events test follows a
//! service of its own (`common::events_service`) whose registry it rewrites.
//!
//! Skipped, loudly, when `javac` is not installed (CI installs JDK 17).
//! With a JDK but without JUnit's console launcher it fails, saying how to
//! install it (`JUNIT_CONSOLE_JAR` names another copy).

use crate::common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use envid::rules::Rules;
use envid_ffi::error::Fail;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn kind_name(f: &Fail) -> String {
    f.code
        .name()
        .to_str()
        .unwrap()
        .trim_start_matches("ENVID_")
        .to_string()
}

/// The `.tsv` case for one descriptor: what the Rust library answers.
fn case(descriptor: &Path, strict: bool) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| writeln!(out, "{}\t{}", esc(k), esc(v)).unwrap();
    line("descriptor", descriptor.to_str().unwrap());
    line("strict", if strict { "true" } else { "false" });
    let loaded = envid::Environment::builder()
        .descriptor(descriptor)
        .strict(strict)
        .env_vars(false)
        .vars(envid::vars::Vars::from_pairs(Vec::<(String, String)>::new()))
        .load();
    let e = match loaded {
        Ok(e) => e,
        Err(err) => {
            line("error", &kind_name(&Fail::from(err)));
            return out;
        }
    };
    let ip = e.ip().map(|i| i.to_string());
    let r = e.release();
    let k = e.k8s();
    let c = e.container();
    let batch = r.and_then(|r| r.batch).map(|b| b.to_string());
    let fields: Vec<(&str, Option<&str>)> = vec![
        ("app", e.app()),
        ("env", Some(e.env())),
        ("env_type", Some(e.env_type().as_str())),
        ("sub_env", e.sub_env()),
        ("idc", Some(e.idc())),
        ("platform", Some(e.platform().as_str())),
        ("hostname", e.hostname()),
        ("ip", ip.as_deref()),
        (
            "container.runtime",
            c.and_then(|c| c.runtime.as_ref()).map(|r| r.as_str()),
        ),
        ("container.id", c.and_then(|c| c.id.as_deref())),
        ("virtualization", e.virtualization()),
        ("release.id", r.and_then(|r| r.id.as_deref())),
        ("release.version", r.and_then(|r| r.version.as_deref())),
        ("release.batch", batch.as_deref()),
        (
            "release.deployed_at",
            r.and_then(|r| r.deployed_at.as_deref()),
        ),
        ("k8s.cluster", k.and_then(|k| k.cluster.as_deref())),
        ("k8s.namespace", k.and_then(|k| k.namespace.as_deref())),
        ("k8s.pod", k.and_then(|k| k.pod.as_deref())),
        ("k8s.node", k.and_then(|k| k.node.as_deref())),
        ("k8s.workload", k.and_then(|k| k.workload.as_deref())),
        ("k8s.pod_uid", k.and_then(|k| k.pod_uid.as_deref())),
    ];
    for (name, v) in fields {
        if let Some(v) = v {
            line(name, v);
        }
    }
    for (k, v) in e.labels() {
        line(&format!("label.{k}"), v);
    }
    line(
        "json",
        &serde_json::to_string(&e.report(false, false)).unwrap(),
    );
    out
}

/// Every descriptor case, written under `work/cases/`.
fn write_cases(work: &Path) -> usize {
    let cases = work.join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    std::fs::write(
        cases.join("example.toml.tsv"),
        case(&common::example(), false),
    )
    .unwrap();
    let mut n = 1;
    for group in ["good", "bad"] {
        let dir = common::repo_root().join("testdata/descriptors").join(group);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!(
                "{} not found: only example.toml is cross-checked",
                dir.display()
            );
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file()) {
            let p = p.canonicalize().unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            for strict in [false, true] {
                let file = format!("{group}-{name}{}.tsv", if strict { "-strict" } else { "" });
                std::fs::write(cases.join(file), case(&p, strict)).unwrap();
                n += 1;
            }
        }
    }
    n
}

/// `hostnames.tsv`: rules file (empty = built-in), hostname, then the Rust
/// library's explanation (or `none`).
fn write_hostnames(work: &Path) {
    let rules_file = work.join("rules.toml");
    let custom = Rules::load(&rules_file).expect("the fixture rules file loads");
    let builtin = Rules::builtin();
    let hosts = [
        "l-flightqma9.f.beta.cn0.example.com",
        "l-qmq1.h.cn5",
        "L-QMQ1.H.CN5.",
        "l-web12.f.betanoah.cn2",
        "l-db3.pay.dev.cn1.corp",
        "web-3",
        "web-shop-3.perf.cn7",
        "",
    ];
    let mut out = String::new();
    for (file, rules) in [("", &builtin), (rules_file.to_str().unwrap(), &custom)] {
        for h in hosts {
            write!(out, "{file}\t{h}\t").unwrap();
            match rules.explain(h) {
                None => out.push_str("none"),
                Some(m) => write!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    m.rule,
                    m.hostname,
                    m.env,
                    m.env_defaulted,
                    m.env_type.as_str(),
                    m.idc.as_deref().unwrap_or(""),
                    m.app.as_deref().unwrap_or(""),
                    m.biz.as_deref().unwrap_or("")
                )
                .unwrap(),
            }
            out.push('\n');
        }
    }
    std::fs::write(work.join("hostnames.tsv"), out).unwrap();
}

/// IPs the Java test looks up, and what the Rust client answers for them.
const LOOKUP_IPS: &[&str] = &[
    "10.0.0.5",
    "10.5.0.21",
    "10.8.1.77",
    "10.8.1.200",
    "10.8.250.9",
    "10.50.3.3",
    "10.99.99.99",
    "2001:db8::10",
    "2001:db8:5:1::7",
    "192.0.2.1",
    "::1",
];

/// `lookups/<n>.tsv`: the Rust lookup client's answer for each IP.
fn write_lookups(work: &Path, url: &str) {
    let dir = work.join("lookups");
    std::fs::create_dir_all(&dir).unwrap();
    let config = envid::ServiceConfig::builder()
        .endpoint(url)
        .build()
        .unwrap();
    let client = envid::lookup::LookupClient::builder(config)
        .build()
        .unwrap();
    let rules = Rules::builtin();
    for (n, ip) in LOOKUP_IPS.iter().enumerate() {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| writeln!(out, "{}\t{}", esc(k), esc(v)).unwrap();
        line("query", ip);
        match client
            .lookup(ip.parse().unwrap())
            .expect("the Rust client's lookup")
        {
            None => line("unknown", "true"),
            Some(r) => {
                let env_type = r
                    .env_type
                    .clone()
                    .unwrap_or_else(|| rules.env_type_of(&r.env));
                let batch = r
                    .release
                    .as_ref()
                    .and_then(|x| x.batch)
                    .map(|b| b.to_string());
                let ipv = r.ip.map(|i| i.to_string());
                let cidr = r.cidr.map(|c| c.to_string());
                let c = r.container.as_ref();
                let rel = r.release.as_ref();
                let k = r.k8s.as_ref();
                let fields: Vec<(&str, Option<&str>)> = vec![
                    ("ip", ipv.as_deref()),
                    ("cidr", cidr.as_deref()),
                    ("app", r.app.as_deref()),
                    ("env", Some(&r.env)),
                    ("env_type", Some(env_type.as_str())),
                    ("sub_env", r.sub_env.as_deref()),
                    ("idc", Some(&r.idc)),
                    ("platform", r.platform.map(|p| p.as_str())),
                    ("hostname", r.hostname.as_deref()),
                    (
                        "container.runtime",
                        c.and_then(|c| c.runtime.as_ref()).map(|x| x.as_str()),
                    ),
                    ("container.id", c.and_then(|c| c.id.as_deref())),
                    ("release.id", rel.and_then(|x| x.id.as_deref())),
                    ("release.version", rel.and_then(|x| x.version.as_deref())),
                    ("release.batch", batch.as_deref()),
                    (
                        "release.deployed_at",
                        rel.and_then(|x| x.deployed_at.as_deref()),
                    ),
                    ("k8s.cluster", k.and_then(|x| x.cluster.as_deref())),
                    ("k8s.namespace", k.and_then(|x| x.namespace.as_deref())),
                    ("k8s.pod", k.and_then(|x| x.pod.as_deref())),
                    ("k8s.node", k.and_then(|x| x.node.as_deref())),
                    ("k8s.workload", k.and_then(|x| x.workload.as_deref())),
                    ("k8s.pod_uid", k.and_then(|x| x.pod_uid.as_deref())),
                ];
                for (name, v) in fields {
                    if let Some(v) = v {
                        line(name, v);
                    }
                }
                for (k, v) in &r.labels {
                    line(&format!("label.{k}"), v);
                }
                line("json", &serde_json::to_string(&*r).unwrap());
            }
        }
        std::fs::write(dir.join(format!("{n:02}.tsv")), out).unwrap();
    }
}

/// JUnit's console launcher (a standalone jar, API and engines included).
fn junit_jar() -> PathBuf {
    let jar = std::env::var_os("JUNIT_CONSOLE_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/junit-platform-console-standalone.jar"));
    assert!(
        jar.is_file(),
        "{} not found: the Java tests need JUnit 5's console launcher. Install it \
         (`apt-get install junit5`; .ci/run does) or name the jar with JUNIT_CONSOLE_JAR",
        jar.display()
    );
    jar
}

fn compile(work: &Path) -> PathBuf {
    let java = common::repo_root().join("java");
    let out = work.join("classes");
    let mut sources = Vec::new();
    for dir in ["src/io/envid", "test/io/envid", "examples/com/example"] {
        for e in std::fs::read_dir(java.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "java") {
                sources.push(p);
            }
        }
    }
    let o = Command::new("javac")
        .args(["-Xlint:all", "-Werror", "--release", "17", "-cp"])
        .arg(junit_jar())
        .arg("-d")
        .arg(&out)
        .args(&sources)
        .output()
        .expect("run javac");
    assert!(
        o.status.success(),
        "javac failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `java` with the library on `java.library.path` and the descriptor of
/// testdata/example.toml; `-Xcheck:jni` (strict JNI argument checking)
/// unless `checked` is false (the bench).
fn java(checked: bool) -> Command {
    let mut c = common::clean_command("java");
    if checked {
        c.arg("-Xcheck:jni");
    }
    c.arg(format!(
        "-Djava.library.path={}",
        common::lib_dir().display()
    ))
    // Whether the library has `Native.panicForTest` (the `test-hooks` feature).
    .arg(format!(
        "-Denvid.testHooks={}",
        cfg!(feature = "test-hooks")
    ))
    .env("ENVID_DESCRIPTOR", common::example())
    .env("RUST_BACKTRACE", "0");
    c
}

/// Runs the JUnit test classes `classes` (in package io.envid); returns how
/// many tests succeeded. Panics with JUnit's report when any failed.
fn junit(mut cmd: Command, classes_dir: &Path, work: &Path, classes: &[&str]) -> usize {
    let mut cp = std::ffi::OsString::from(junit_jar());
    cp.push(":");
    cp.push(classes_dir);
    cmd.arg("-cp")
        .arg(cp)
        .arg(format!("-Denvidtest.work={}", work.display()))
        .arg("org.junit.platform.console.ConsoleLauncher")
        .args([
            "--disable-banner",
            "--disable-ansi-colors",
            "--details=tree",
            "--fail-if-no-tests",
        ])
        .arg("--reports-dir")
        .arg(work.join("junit-reports"));
    for c in classes {
        cmd.arg("--select-class").arg(format!("io.envid.{c}"));
    }
    let o = cmd.output().expect("run java");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let count = |what: &str| -> Option<usize> {
        let line = stdout.lines().find(|l| l.contains(what))?;
        line.trim_start_matches(['[', ' '])
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    let (Some(ok), Some(failed)) = (count(" tests successful"), count(" tests failed")) else {
        panic!("{classes:?}: no JUnit summary\nstdout:\n{stdout}\nstderr:\n{stderr}");
    };
    assert!(
        failed == 0 && o.status.success(),
        "JUnit {classes:?}: {failed} failed (exit {:?})\n{stdout}\n{stderr}",
        o.status.code()
    );
    eprintln!("JUnit {classes:?}: {ok} tests successful, 0 failed");
    ok
}

#[test]
fn java_binding_agrees_with_rust() {
    if !envid_testkit::require_program("javac", "the JNI binding is tested with a JDK 17+") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (service, registry) = common::Service::start_on_copy(work.path());
    common::write_fixtures(work.path());
    write_lookups(work.path(), &service.url());
    let cases = write_cases(work.path());
    write_hostnames(work.path());
    // The signing service and identity.tsv, for VerifierTest.
    let identity = common::identity_cases(work.path());
    // The registration service, for RegistrarTest.
    let registrar_service = common::registration_service(work.path());
    // The service EventsTest follows and rewrites; run 3's registered host.
    let (events_service, events_registry) = common::events_service(work.path());
    common::register_for_events(&events_service.base_url(), 3);
    let classes = compile(work.path());

    let mut main = java(true);
    main.arg(format!("-Denvidtest.url={}", service.url()))
        .arg(format!(
            "-Denvidtest.keysurl={}",
            identity.service.base_url()
        ))
        .arg(format!("-Denvidtest.registry={}", registry.display()))
        .arg(format!(
            "-Denvidtest.registrarurl={}",
            registrar_service.base_url()
        ))
        .arg(format!(
            "-Denvidtest.registrartoken={}",
            common::FLIGHT_ORDER_TOKEN
        ))
        .arg(format!(
            "-Denvidtest.example={}",
            common::example().display()
        ))
        .arg(format!(
            "-Denvidtest.eventsurl={}",
            events_service.base_url()
        ))
        .arg(format!(
            "-Denvidtest.eventsregistry={}",
            events_registry.display()
        ));
    let passed = junit(
        main,
        &classes,
        work.path(),
        &[
            "EnvironmentTest",
            "ErrorsTest",
            "HostnameRulesTest",
            "LookupClientTest",
            "ReplicaTest",
            "VerifierTest",
            "RegistrarTest",
            "EventsTest",
        ],
    );
    // EventsTest's four ran (the summary alone would not tell).
    let report = std::fs::read_to_string(work.path().join("junit-reports/TEST-junit-jupiter.xml"))
        .expect("JUnit's XML report");
    assert_eq!(
        report.matches("classname=\"io.envid.EventsTest\"").count(),
        4,
        "EventsTest did not run its 4 tests"
    );
    // One test per descriptor case and per hostname, plus the groups.
    assert!(
        passed > cases + 16,
        "only {passed} tests ran ({cases} descriptor cases)"
    );
    eprintln!("Java: {passed} JUnit tests passed ({cases} descriptor cases)");

    // A bad ENVID_IP: current() fails with INVALID_VALUE, as an exception.
    let mut bad = java(true);
    bad.env("ENVID_IP", "not-an-ip");
    let ran = junit(bad, &classes, work.path(), &["InvalidValueTest"]);
    assert_eq!(ran, 1, "InvalidValueTest ran (not skipped)");

    // -Denvid.* over ENVID_*, and Apollo's file, in a JVM of their own.
    let mut props = java(true);
    props
        .env("ENVID_ENV", "dev")
        .arg("-Denvid.env=uat")
        .arg("-Denvid.idc=cn7");
    let ran = junit(props, &classes, work.path(), &["SystemPropertiesTest"]);
    assert_eq!(ran, 2, "SystemPropertiesTest ran (not skipped)");

    // The README's example.
    let o = java(true)
        .arg("-cp")
        .arg(&classes)
        .arg("com.example.EnvidExample")
        .env("ENVID_LOOKUP_URL", service.url())
        .output()
        .expect("run the example");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.starts_with("flight_order in beta (beta) at cn0, platform container\n"),
        "{out}"
    );
    assert!(out.contains("load failed: IO: "), "{out}");
    assert!(out.contains("flightqma beta cn0"), "{out}");
    assert!(out.contains("10.0.0.5: flightqma beta cn0\n"), "{out}");
    assert!(out.contains("192.0.2.1 known: false\n"), "{out}");

    // The getters' cost against a field read (debug build of the library
    // here; the release figures are in the README).
    let o = java(false)
        .arg("-cp")
        .arg(&classes)
        .arg("io.envid.EnvidBench")
        .arg("100000")
        .output()
        .expect("run the Java bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "{} (debug build of the library)",
        String::from_utf8_lossy(&o.stdout).trim_end()
    );
}
