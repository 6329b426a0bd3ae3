//! Runs the built `envid` binary and checks stdout, stderr and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(p)
}

/// The binary with a clean environment: no ENVID_* or Kubernetes variables
/// from the machine running the tests.
fn envid(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ENVID_")
            || k.starts_with("POD_")
            || k == "NODE_NAME"
            || k.starts_with("KUBERNETES_")
        {
            c.env_remove(k);
        }
    }
    c.output().expect("run envid")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn inspect_example_text() {
    let ex = testdata("example.toml");
    let o = envid(&["inspect", "--descriptor", ex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "flight_order",
        "beta",
        "noahauto-2",
        "cn0",
        "container",
        "k8s.pod",
        "labels.team",
    ] {
        assert!(out.contains(needle), "missing {needle} in\n{out}");
    }
    assert!(!out.contains("tok-example"), "token leaked:\n{out}");
    assert!(out.contains("<redacted>"));
}

#[test]
fn inspect_json_has_model_keys_and_no_token() {
    let ex = testdata("example.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    for k in [
        "app", "env", "env_type", "sub_env", "idc", "platform", "hostname", "release", "k8s",
        "labels",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["env_type"], "beta");
    assert_eq!(v["release"]["batch"], 2);
    assert!(v.get("token").is_none());
    assert!(v.get("sources").is_none());
}

#[test]
fn inspect_explain_and_show_secrets() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex,
        "--format",
        "json",
        "--explain",
        "--show-secrets",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["token"], "tok-example-3f9a1c");
    assert_eq!(v["sources"]["env"]["kind"], "descriptor");
    assert!(v["sources"]["env"]["detail"]
        .as_str()
        .unwrap()
        .ends_with("example.toml"));
    assert_eq!(v["sources"]["hostname"]["kind"], "probe");

    let o = envid(&["inspect", "--descriptor", ex, "--explain"]);
    let out = stdout(&o);
    assert!(out.contains("(descriptor "), "{out}");
    assert!(out.contains("(alias table"), "{out}");
}

#[test]
fn inspect_toml_output_parses() {
    let ex = testdata("example.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex.to_str().unwrap(),
        "--format",
        "toml",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: toml::Table = toml::from_str(&stdout(&o)).expect("valid TOML");
    assert_eq!(v["idc"].as_str(), Some("cn0"));
}

#[test]
fn inspect_env_vars_apply_unless_switched_off() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["inspect", "--descriptor", ex, "--format", "json"];
        args.extend_from_slice(extra);
        let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
        c.args(&args).env("ENVID_ENV", "prod");
        let o = c.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["env"].as_str().unwrap().to_string()
    };
    assert_eq!(run(&[]), "prod");
    assert_eq!(run(&["--no-env-vars"]), "beta");
}

#[test]
fn inspect_unidentified_host_exits_1_naming_sources_and_facts() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/hostname"), "web-3\n").unwrap();
    std::fs::write(root.path().join(".dockerenv"), "").unwrap();
    let o = envid(&["inspect", "--root", root.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    for needle in [
        "not identified",
        "environment.toml",
        "environment.json",
        "file not found",
        "no match for hostname",
        "web-3",
    ] {
        assert!(err.contains(needle), "missing {needle} in stderr:\n{err}");
    }
    let out = stdout(&o);
    assert!(out.contains("facts found"), "{out}");
    assert!(out.contains("hostname") && out.contains("web-3"), "{out}");
    assert!(out.contains("platform"), "{out}");

    let o = envid(&[
        "inspect",
        "--root",
        root.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["identified"], false);
    assert_eq!(v["missing"], serde_json::json!(["env", "idc"]));
    assert_eq!(v["found"]["hostname"]["value"], "web-3");
}

#[test]
fn inspect_missing_descriptor_exits_1() {
    let o = envid(&["inspect", "--descriptor", "/nonexistent/env.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/env.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        envid(&["inspect", "--format", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(envid(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(envid(&["check"]).status.code(), Some(2));
}

#[test]
fn check_valid_descriptor_exits_0() {
    let ex = testdata("example.toml");
    let o = envid(&["check", ex.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("valid"));
}

#[test]
fn check_lists_every_problem_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"\"\nenv = \"beta\"\nidc = \"cn0\"\nip = \"10.0.0.300\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let file = p.display().to_string();
    assert!(
        out.contains(&format!("{file}:2:")),
        "app problem located:\n{out}"
    );
    assert!(
        out.contains(&format!("{file}:5:")),
        "ip problem located:\n{out}"
    );
    assert!(out.contains("invalid (2 errors)"), "{out}");

    let o = envid(&["check", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(v["errors"][1]["line"], 5);
}

#[test]
fn check_warns_on_unknown_keys_and_strict_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nenv = \"beta\"\nidc = \"cn0\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("warning"), "{}", stdout(&o));
    assert!(stdout(&o).contains("colour"), "{}", stdout(&o));
    let o = envid(&["check", "--strict", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(":5:"), "{}", stdout(&o));
}

#[test]
fn explain_beta_hostname_json() {
    let o = envid(&[
        "explain",
        "l-flightqma9.f.beta.cn0.example.com",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["env_type"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["app"], "flightqma");
    assert_eq!(v["biz"], "f");
    assert!(v["rule"].as_str().is_some());
}

#[test]
fn explain_production_hostname_text() {
    let o = envid(&["explain", "L-QMQ1.H.CN5."]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("prod"), "{out}");
    assert!(out.contains("cn5"), "{out}");
    assert!(out.contains("qmq"), "{out}");
}

#[test]
fn explain_no_match_exits_1() {
    let o = envid(&["explain", "web-3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("web-3"));
    assert!(stdout(&o).is_empty());
}

#[test]
fn inspect_unidentified_docker_container_still_shows_its_facts() {
    let root = testdata("hosts/docker");
    let o = envid(&[
        "inspect",
        "--root",
        root.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["found"]["platform"]["value"], "container");
    assert_eq!(
        v["found"]["container"]["value"],
        "docker 3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
    );
    assert_eq!(v["found"]["hostname"]["value"], "3f4e8c2a9b1d");
    assert_eq!(v["found"]["platform"]["source"]["kind"], "probe");
    assert!(
        stderr(&o).contains("no match for hostname"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_kvm_vm_by_hostname_fallback() {
    let root = testdata("hosts/kvm");
    let o = envid(&[
        "inspect",
        "--root",
        root.to_str().unwrap(),
        "--format",
        "json",
        "--explain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["app"], "flightqma");
    assert_eq!(v["platform"], "kvm");
    assert_eq!(v["virtualization"], "kvm");
    assert_eq!(v["sources"]["env"]["kind"], "hostname_rule");
    assert_eq!(v["sources"]["env"]["detail"], "kvm-default");
    assert_eq!(v["sources"]["hostname"]["detail"], "/etc/hostname");
}

/// `envid serve` on an ephemeral port; returns the child and its base URL
/// (read from its "listening on" line, within 10 s).
fn serve(
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    serve_on("127.0.0.1:0", extra)
}

/// [`serve`] on `listen` (to restart a service on the same address).
fn serve_on(
    listen: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    serve_registry(&testdata("registry.toml"), listen, extra)
}

/// [`serve_on`] with another registry file.
fn serve_registry(
    registry: &Path,
    listen: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut args = vec![
        "serve",
        "--registry",
        registry.to_str().unwrap(),
        "--listen",
        listen,
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args(&args)
        .env_remove("ENVID_SERVE_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    // The URL ends the log message; structured fields follow.
                    let url = rest.split_whitespace().next().unwrap().to_string();
                    return (child, url, rx);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("envid serve did not start");
            }
        }
    }
}

/// SIGTERM, then the exit status within 10 s.
fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("envid serve ignored SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn serve_then_lookup_then_sigterm() {
    let (child, url, rx) = serve(&[]);
    let o = envid(&["lookup", "10.0.0.5", "--endpoint", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("10.0.0.5  env=beta idc=cn0"), "{out}");

    // Unknown and invalid IPs: a message per IP; known ones still printed.
    let o = envid(&[
        "lookup",
        "10.0.0.5",
        "192.0.2.99",
        "not-an-ip",
        "--endpoint",
        &url,
        "--format",
        "json",
    ]);
    // An argument that is not an IP is a usage error, even beside answers.
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &v["results"];
    assert_eq!(r[0]["record"]["env"], "beta");
    assert!(r[1]["record"].is_null() && r[1].get("error").is_none());
    assert!(r[2]["error"].as_str().unwrap().contains("not-an-ip"));

    let o = envid(&["lookup", "192.0.2.99", "--endpoint", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("192.0.2.99: unknown"), "{}", stderr(&o));

    let status = terminate(child);
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let log: Vec<String> = rx.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
}

#[test]
fn serve_with_token_and_lookup_failure_messages() {
    let (child, url, _rx) = serve(&["--token", "t0k"]);
    let o = envid(&["lookup", "10.0.0.5", "--endpoint", &url]);
    assert_eq!(o.status.code(), Some(1));
    for needle in ["needs a token", "--token", "ENVID_LOOKUP_TOKEN"] {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    let o = envid(&["lookup", "10.0.0.5", "--endpoint", &url, "--token", "wrong"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refused the token"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("needs a token"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("t0k") && !stderr(&o).contains("wrong"));
    let o = envid(&["lookup", "10.0.0.5", "--endpoint", &url, "--token", "t0k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    terminate(child);

    // A dead endpoint: a clear message naming it, exit 1, quickly.
    let o = envid(&[
        "lookup",
        "10.0.0.5",
        "--endpoint",
        &url,
        "--timeout-ms",
        "500",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&url.replace("http://", "")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_service_settings_exit_1_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let no_cert = dir.path().join("ca.pem");
    std::fs::write(&no_cert, "not a certificate\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--endpoint", "envsvc:7070"], "envsvc:7070"),
        (&["--ca", no_cert.to_str().unwrap()], "ca_file"),
        (&["--proxy", "::nope::"], "proxy"),
        (&["--timeout-ms", "0"], "per_phase_timeout"),
    ];
    for (command, reg) in [("lookup", false), ("register", true), ("deregister", true)] {
        for (flags, named) in &cases {
            let mut args = vec![command];
            if reg {
                args.extend(["--ip", "10.0.0.9"]);
            } else {
                args.push("10.0.0.9");
            }
            args.extend_from_slice(flags);
            let o = envid_with(&args, &[]);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains(named), "{args:?}: {}", stderr(&o));
        }
    }
}

#[test]
fn serve_refuses_a_broken_registry() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.toml");
    std::fs::write(
        &p,
        "schema = 1\n[[records]]\nip = \"10.0.0.999\"\nenv = \"x\"\nidc = \"cn0\"\n",
    )
    .unwrap();
    let o = envid(&[
        "serve",
        "--registry",
        p.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("10.0.0.999"), "{}", stderr(&o));
}

/// [`envid`] with extra variables.
fn envid_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ENVID_") || k.starts_with("POD_") || k.starts_with("KUBERNETES_") {
            c.env_remove(k);
        }
    }
    c.envs(vars.iter().copied());
    c.output().expect("run envid")
}

/// The test apps file (tokens in crates/envid-server/tests/common).
fn apps() -> String {
    testdata("apps/apps.toml").to_str().unwrap().to_string()
}

/// The operator of testdata/apps/apps.toml: any IP, any app.
const OPERATOR: &str = "release-token-c0ffee";

#[test]
fn register_lookup_replica_deregister() {
    let apps = apps();
    let (child, url, _rx) = serve(&["--apps", &apps]);
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let cache = cache.to_str().unwrap();

    // This host's environment (descriptor + ENVID_IP) is registered, by the
    // operator (the IP is not the one the request comes from).
    let o = envid_with(
        &[
            "register",
            "--endpoint",
            &url,
            "--descriptor",
            ex,
            "--lease",
            "60",
        ],
        &[
            ("ENVID_IP", "10.77.0.1"),
            ("ENVID_REGISTER_TOKEN", OPERATOR),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("registered 10.77.0.1 at "),
        "{}",
        stdout(&o)
    );

    // lookup --replica: one snapshot, then local answers (exact IP and ranges).
    let o = envid(&[
        "lookup",
        "--replica",
        "--cache-file",
        cache,
        "10.77.0.1",
        "10.0.0.5",
        "--endpoint",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "10.77.0.1  env=beta idc=cn0 app=flight_order sub_env=noahauto-2 platform=container"
        ),
        "{out}"
    );
    assert!(
        out.contains("10.0.0.5  env=beta idc=cn0 app=flightqma"),
        "{out}"
    );
    // The registered record has the descriptor's facts but never its token.
    let o = envid(&[
        "lookup",
        "10.77.0.1",
        "--endpoint",
        &url,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rec = &v["results"][0]["record"];
    assert_eq!(rec["k8s"]["pod"], "flight-order-7d9c4-x2k8p", "{rec}");
    assert_eq!(rec["release"]["version"], "2.14.0", "{rec}");
    assert!(!stdout(&o).contains("tok-example"));

    // deregister is idempotent; the IP is then unknown to a replica.
    for _ in 0..2 {
        let o = envid(&[
            "deregister",
            "--endpoint",
            &url,
            "--ip",
            "10.77.0.1",
            "--token",
            OPERATOR,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("deregistered 10.77.0.1"),
            "{}",
            stdout(&o)
        );
    }
    // Deregistered: the registration's record is gone (a range may still answer).
    let o = envid(&["lookup", "--replica", "10.77.0.1", "--endpoint", &url]);
    assert!(!stdout(&o).contains("sub_env=noahauto-2"), "{}", stdout(&o));

    // Service down: the replica answers from the cache file of the last snapshot.
    terminate(child);
    let o = envid(&[
        "lookup",
        "--replica",
        "--cache-file",
        cache,
        "10.0.0.5",
        "--endpoint",
        &url,
        "--timeout-ms",
        "500",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("10.0.0.5  env=beta"), "{}", stdout(&o));
    assert!(stderr(&o).contains("cache file"), "{}", stderr(&o));
    // Without a cache file: a clear error, exit 1.
    let o = envid(&[
        "lookup",
        "--replica",
        "10.0.0.5",
        "--endpoint",
        &url,
        "--timeout-ms",
        "500",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // Registration with the service down fails with exit 1 naming the IP.
    let o = envid(&[
        "register",
        "--endpoint",
        &url,
        "--descriptor",
        ex,
        "--ip",
        "10.77.0.9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot register 10.77.0.9"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_apps_and_state_file_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let apps = apps();
    let args = [
        "--apps",
        &apps,
        "--allow-loopback-registration",
        "--state",
        state,
    ];
    let (child, url, rx) = serve(&args);
    let register = |ip: &str, token: Option<&str>| {
        let mut vars = vec![("ENVID_IP", ip)];
        if let Some(t) = token {
            vars.push(("ENVID_REGISTER_TOKEN", t));
        }
        envid_with(&["register", "--endpoint", &url, "--descriptor", ex], &vars)
    };
    // A wrong token: 401, and the token never shows.
    let o = register("127.0.0.1", Some("wrong-s3cret"));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("s3cret"), "{}", stderr(&o));
    // The descriptor's token, for another IP than the request's: 403.
    let o = register("10.78.0.1", None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("HTTP 403"), "{}", stderr(&o));
    assert!(stderr(&o).contains("only the IP"), "{}", stderr(&o));
    // ...for its own IP: registered; the token never shows.
    let o = register("127.0.0.1", None);
    assert!(o.status.success(), "{}", stderr(&o));
    for out in [stdout(&o), stderr(&o)] {
        assert!(!out.contains("tok-example"), "{out}");
    }
    // Reads stay open (no read token configured).
    let o = envid(&["lookup", "127.0.0.1", "--endpoint", &url]);
    assert!(stdout(&o).contains("sub_env=noahauto-2"), "{}", stdout(&o));
    assert!(terminate(child).success());
    // The service logged each refusal with its reason, never a token.
    let log: Vec<String> = rx.try_iter().collect();
    let refusals: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("registration refused"))
        .collect();
    assert_eq!(refusals.len(), 2, "{log:#?}");
    assert!(refusals[0].contains("bad_token"), "{}", refusals[0]);
    assert!(refusals[1].contains("not_own_ip"), "{}", refusals[1]);
    assert!(refusals[1].contains("flight_order"), "{}", refusals[1]);
    assert!(
        log.iter()
            .all(|l| !l.contains("s3cret") && !l.contains("tok-example")),
        "{log:#?}"
    );

    // A new process on the same state file still knows the registration.
    let (child, url, _rx) = serve(&args);
    let o = envid(&["lookup", "127.0.0.1", "--endpoint", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sub_env=noahauto-2"), "{}", stdout(&o));
    assert!(terminate(child).success());
}

#[test]
fn register_keep_alive_renews_until_sigterm() {
    use std::io::BufRead;
    let (server, url, _rx) = serve(&[
        "--insecure-open-registration",
        "--allow-loopback-registration",
    ]);
    let ex = testdata("example.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args([
            "register",
            "--keep-alive",
            "--lease",
            "3",
            "--ip",
            "127.0.0.1",
            "--descriptor",
            ex.to_str().unwrap(),
            "--endpoint",
            &url,
        ])
        .env_remove("ENVID_ENDPOINT")
        .env_remove("ENVID_REGISTER_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("envid register --keep-alive did not register");
        }
    };
    if !line.starts_with("registered 127.0.0.1") {
        let _ = child.kill();
        let o = child.wait_with_output().unwrap();
        panic!("{line:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // Renewed every second: still registered well past the 3 s lease.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    let o = envid(&["lookup", "127.0.0.1", "--endpoint", &url]);
    assert!(o.status.success(), "lease kept alive: {}", stderr(&o));
    let status = terminate(child);
    assert_eq!(status.code(), Some(0), "{status:?}");
    terminate(server);
}

// Issue 18, item 1: every problem shows, always, with "did you mean".
#[test]
fn check_and_inspect_show_a_typoed_key_with_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nevn = \"beta\"\nidc = \"cn0\"\nip = \"10.1.2.300\"\n",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let o = envid(&["check", p]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(":5:") && out.contains("10.1.2.300"), "{out}");
    assert!(out.contains("warning") && out.contains("evn"), "{out}");
    assert!(out.contains("did you mean `env`?"), "{out}");

    let o = envid(&["check", p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w["field"] == "evn"), "{v}");
    let errors = v["errors"].to_string();
    assert!(errors.contains("did you mean `env`?"), "{v}");

    // inspect names the typo too (here the IP stops the load first).
    std::fs::write(
        dir.path().join("e.toml"),
        "schema = 1\napp = \"a\"\nevn = \"beta\"\nidc = \"cn0\"\n",
    )
    .unwrap();
    let e = dir.path().join("e.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        e.to_str().unwrap(),
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("evn") && err.contains("did you mean `env`?"),
        "{err}"
    );
}

// Issue 18, item 2: check is a release gate.
#[test]
fn check_fails_without_app_env_or_idc_unless_partial() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(&p, "schema = 1\napp = \"a\"\nidc = \"cn0\"\n").unwrap();
    let p = p.to_str().unwrap();
    let o = envid(&["check", p]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("invalid (1 error)"), "{}", stdout(&o));
    assert!(stdout(&o).contains("env"), "{}", stdout(&o));
    let o = envid(&["check", "--partial", p]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("valid (1 warning)"), "{}", stdout(&o));
}

// Issue 18, item 3: values are quoted, and the message says what is valid.
#[test]
fn value_messages_quote_the_value_and_show_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nenv = \"beta\"\nidc = \"cn0\"\nplatform = \"contianer\"\n\
         ip = \"10.1.2.300\"\n[release]\ndeployed_at = \"yesterday\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for needle in [
        "\"contianer\"",
        "container, kvm, physical, unknown",
        "\"10.1.2.300\"",
        "like \"10.1.2.3\"",
        "\"yesterday\"",
        "like \"2026-11-22T10:00:00Z\"",
    ] {
        assert!(out.contains(needle), "missing {needle} in\n{out}");
    }
    assert!(!out.contains("character literal"), "{out}");
}

// Issue 18, item 4: explain says why each rule did not match.
#[test]
fn explain_no_match_names_each_rule_and_why_in_text_and_json() {
    let o = envid(&["explain", "l-a1.h.cn0.beta"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("kvm-default"), "{err}");
    assert!(err.contains("refused on purpose"), "{err}");
    assert!(err.contains("l-<app>.<biz>.beta.cn0"), "{err}");

    let o = envid(&["explain", "web-3"]);
    let err = stderr(&o);
    assert!(err.contains("l-<app><n>.<biz>[.<env>].<idc>"), "{err}");
    assert!(err.contains("does not start with \"l-\""), "{err}");

    let o = envid(&["explain", "l-a1.h.cn0.beta", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("a JSON object");
    assert_eq!(v["matched"], false);
    assert_eq!(v["hostname"], "l-a1.h.cn0.beta");
    assert_eq!(v["attempts"][0]["rule"], "kvm-default");
    assert_eq!(v["attempts"][0]["outcome"], "env_after_idc");
    assert!(v["attempts"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("refused on purpose"));

    // A rules file: its rules first, each with its pattern.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"web\"\npattern = '^web-(?P<idc>cn\\d+)$'\ndefault_env = \"prod\"\n",
    )
    .unwrap();
    let o = envid(&[
        "explain",
        "web-3",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["attempts"][0]["rule"], "web");
    assert_eq!(v["attempts"][1]["rule"], "kvm-default");

    // A match: the same object, matched true.
    let o = envid(&["explain", "l-qmq1.h.cn5", "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["matched"], true);
    assert_eq!(v["idc"], "cn5");
    assert_eq!(v["attempts"][0]["outcome"], "matched");
}

// Issue 18, item 5: usage errors exit 2; TOML only where it exists; JSON
// says "identified" either way.
#[test]
fn usage_errors_of_lookup_check_explain_exit_2() {
    let o = envid(&["lookup", "not-an-ip", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not-an-ip"), "{}", stderr(&o));
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    for args in [
        &["lookup", "10.0.0.5", "--format", "toml"][..],
        &["check", ex, "--format", "toml"],
        &["explain", "l-qmq1.h.cn5", "--format", "toml"],
    ] {
        let o = envid(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    }
    let o = envid(&["inspect", "--descriptor", ex, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["identified"], true);
}

// Issue 18, item 6: deregister needs only the IP.
#[test]
fn deregister_needs_only_the_ip() {
    let (child, url, _rx) = serve(&["--insecure-open-registration"]);
    let ex = testdata("example.toml");
    let o = envid_with(
        &[
            "register",
            "--endpoint",
            &url,
            "--descriptor",
            ex.to_str().unwrap(),
        ],
        &[("ENVID_IP", "10.77.0.7")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // No descriptor, no env: this host is not identified, but its IP is known.
    let root = tempfile::tempdir().unwrap();
    let o = envid_with(
        &["deregister", "--endpoint", &url],
        &[
            ("ENVID_IP", "10.77.0.7"),
            ("ENVID_PODINFO", root.path().to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("deregistered 10.77.0.7"),
        "{}",
        stdout(&o)
    );
    let o = envid(&["lookup", "10.77.0.7", "--endpoint", &url]);
    assert!(!stdout(&o).contains("sub_env=noahauto-2"), "{}", stdout(&o));
    terminate(child);
}

// A pre-stop hook that runs late (its IP already went to a new host of the
// same app) removes only the registration `register --registration-file`
// wrote, never the new host's.
#[test]
fn deregister_removes_only_the_registration_register_wrote() {
    let (child, url, _rx) = serve(&["--insecure-open-registration"]);
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let register = |id_file: &str| {
        let o = envid_with(
            &[
                "register",
                "--endpoint",
                &url,
                "--descriptor",
                ex,
                "--registration-file",
                id_file,
            ],
            &[("ENVID_IP", "10.77.0.9")],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let id = std::fs::read_to_string(id_file).unwrap().trim().to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(
            stdout(&o).contains(&format!("registration {id})")),
            "{}",
            stdout(&o)
        );
        id
    };
    let served = || {
        let o = envid(&[
            "lookup",
            "10.77.0.9",
            "--endpoint",
            &url,
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["results"][0]["record"]["registration"]
            .as_str()
            .map(String::from)
    };
    let old = register(&file("old.id"));
    let new = register(&file("new.id"));
    assert_ne!(old, new);
    let deregister = |extra: &[&str]| {
        let mut args = vec!["deregister", "--endpoint", &url, "--ip", "10.77.0.9"];
        args.extend_from_slice(extra);
        envid(&args)
    };
    // The old host's hook: success, and the new registration stays.
    let o = deregister(&["--registration-file", &file("old.id")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(served().as_deref(), Some(new.as_str()));
    // No file: this instance never registered; nothing is removed.
    let o = deregister(&["--registration-file", &file("none.id")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("nothing to deregister for 10.77.0.9"),
        "{}",
        stdout(&o)
    );
    assert_eq!(served().as_deref(), Some(new.as_str()));
    // The new host's own id removes it.
    let o = deregister(&["--registration", &new]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(served(), None);
    terminate(child);
}

/// A one-shot HTTP responder on loopback: answers the first request with
/// `status` and a JSON error body, and hands back the request line.
fn answer_once(status: &str, code: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"x\"}}}}");
    let status = status.to_string();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request_line
    });
    (url, handle)
}

// Issue 18, item 6: a static record is not deregistered; say so, exit 1.
// The reference service answers such a DELETE with 409 `static_record`.
#[test]
fn deregister_of_a_static_record_exits_1() {
    let (url, handle) = answer_once("409 Conflict", "static_record");
    let o = envid(&["deregister", "--endpoint", &url, "--ip", "10.0.0.5"]);
    assert_eq!(
        handle.join().unwrap().trim(),
        "DELETE /v1/hosts/10.0.0.5 HTTP/1.1"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("10.0.0.5 is a static record from the registry file")
            && err.contains("edit the registry file instead"),
        "{err}"
    );
}

// Issue 18, item 9: the headline names every command.
#[test]
fn help_headline_lists_every_command() {
    let o = envid(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let headline = out.lines().next().unwrap();
    for command in [
        "inspect",
        "check",
        "explain",
        "lookup",
        "register",
        "deregister",
        "events",
        "serve",
    ] {
        assert!(headline.contains(command), "{command} not in {headline:?}");
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} not listed:\n{out}"
        );
    }
    // Operator messages name the program, not library jargon.
    let root = testdata("hosts/docker");
    let o = envid(&["inspect", "--root", root.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(
        err.contains("the program (builder): it set no env, idc"),
        "{err}"
    );
    assert!(!err.contains("set in code"), "{err}");
}

// Issue 18, Kubernetes: a pod describes itself through its downward-API volume.
#[test]
fn inspect_a_pod_from_its_downward_api_volume() {
    let root = testdata("hosts/k8s-podinfo");
    let root = root.to_str().unwrap();
    let o = envid(&["inspect", "--root", root, "--explain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("/etc/podinfo/annotations envid.io/env)"),
        "{out}"
    );
    assert!(out.contains("(podinfo "), "{out}");
    assert!(
        out.contains("k8s.pod_uid") && out.contains("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90"),
        "{out}"
    );
    let o = envid(&["inspect", "--root", root, "--format", "json", "--explain"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["k8s"]["pod_uid"], "6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90");
    assert_eq!(v["sources"]["env"]["kind"], "podinfo");
    assert_eq!(v["sources"]["k8s.pod_uid"]["kind"], "podinfo");

    // A volume named by ENVID_PODINFO; the rules file asks for the labels.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[podinfo]\nlabels = true\n").unwrap();
    let volume = testdata("hosts/k8s-podinfo/etc/podinfo");
    let o = envid_with(
        &[
            "inspect",
            "--root",
            dir.path().to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[("ENVID_PODINFO", volume.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["labels"]["team"], "flight", "{v}");

    // No volume: the report lists the attempt.
    let o = envid(&["inspect", "--root", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("tried podinfo ") && stderr(&o).contains("directory not found"),
        "{}",
        stderr(&o)
    );
}

// Issue 18, item 9: the server README says a record without env_type gets
// its class from the alias table: `uat` is served as `beta`.
#[test]
fn a_registered_uat_host_is_served_as_class_beta() {
    let (child, url, _rx) = serve(&["--insecure-open-registration"]);
    let o = envid_with(
        &["register", "--endpoint", &url],
        &[
            ("ENVID_ENV", "uat"),
            ("ENVID_IDC", "cn0"),
            ("ENVID_IP", "10.77.0.8"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = envid(&[
        "lookup",
        "10.77.0.8",
        "--endpoint",
        &url,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["results"][0]["record"]["env"], "uat");
    assert_eq!(v["results"][0]["record"]["env_type"], "beta");
    terminate(child);
}

/// Spawns `envid ARGS` with its stdout lines sent to the receiver.
fn spawn_lines(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args(args)
        .env_remove("ENVID_ENDPOINT")
        .env_remove("ENVID_LOOKUP_TOKEN")
        .env_remove("ENVID_REGISTER_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The next line matching `want` within `secs` seconds (others are skipped).
fn line_where(
    rx: &std::sync::mpsc::Receiver<String>,
    secs: u64,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn watch_prints_a_line_per_change_and_per_interval_until_sigterm() {
    let (server, url, _rx) = serve(&["--insecure-open-registration"]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("watch-cache.json");
    let (child, rx) = spawn_lines(&[
        "watch",
        "--endpoint",
        &url,
        "--cache-file",
        cache.to_str().unwrap(),
        "--interval",
        "1",
        "--format",
        "json",
    ]);
    let json = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
    let start = line_where(&rx, 10, |l| l.contains("\"start\"")).expect("a start line");
    let v = json(&start);
    assert_eq!(v["records"], 10, "{v}");
    assert_eq!(v["protected"], false, "{v}");
    assert_eq!(v["held_deletes"], 0, "{v}");
    assert_eq!(v["cache"], "present", "{v}");
    assert_eq!(v["sync_errors"], 0, "{v}");
    // A change: one line at once.
    let ex = testdata("example.toml");
    let o = envid(&[
        "register",
        "--endpoint",
        &url,
        "--descriptor",
        ex.to_str().unwrap(),
        "--ip",
        "10.77.0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let change = line_where(&rx, 10, |l| l.contains("\"change\"")).expect("a change line");
    assert_eq!(json(&change)["records"], 11, "{change}");
    // Nothing changes: one line per interval.
    let tick = line_where(&rx, 5, |l| l.contains("\"interval\"")).expect("an interval line");
    assert_eq!(json(&tick)["records"], 11, "{tick}");
    println!("watch: {start}\nwatch: {change}\nwatch: {tick}");
    assert_eq!(terminate(child).code(), Some(0));
    terminate(server);

    // Text lines, the service down: from the cache file, with its age.
    let (child, rx) = spawn_lines(&[
        "watch",
        "--endpoint",
        &url,
        "--cache-file",
        cache.to_str().unwrap(),
        "--interval",
        "1",
        "--timeout-ms",
        "300",
    ]);
    let line = line_where(&rx, 10, |l| l.starts_with("start")).expect("a start line");
    // The file of the first sync at least (deltas reach it within
    // cache_write_interval).
    assert!(
        line.contains("records=10 ") || line.contains("records=11 "),
        "{line}"
    );
    assert!(line.contains("protected=no held_deletes=0"), "{line}");
    assert!(line.contains("cache=present cache_age="), "{line}");
    assert!(line.contains("from_cache=yes"), "{line}");
    let tick = line_where(&rx, 10, |l| !l.contains("sync_errors=0")).expect("sync errors");
    println!("watch: {line}\nwatch: {tick}");
    assert_eq!(terminate(child).code(), Some(0));
}

#[test]
fn lookup_replica_says_the_cache_file_age_and_its_problems() {
    let (server, url, _rx) = serve(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let cache = cache.to_str().unwrap();
    let base = [
        "lookup",
        "--replica",
        "--cache-file",
        cache,
        "10.0.0.5",
        "--endpoint",
    ];
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.push(&url);
        args.extend_from_slice(&["--timeout-ms", "300", "--connect-timeout-ms", "300"]);
        args.extend_from_slice(extra);
        envid(&args)
    };
    let o = with(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("cache file"), "fresh: {}", stdout(&o));
    terminate(server);

    // Every answer from the cache file says how old it is.
    let o = with(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("10.0.0.5  env=beta"), "{out}");
    assert!(
        out.contains("[from the cache file, ") && out.contains("s old]"),
        "{out}"
    );
    let o = with(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["replica"]["from_cache"], true, "{v}");
    assert_eq!(v["replica"]["cache"], "present", "{v}");
    assert!(v["replica"]["cache_age_seconds"].is_u64(), "{v}");
    println!("from the cache file: {}", out.trim());

    // Corrupt, then missing: said as such, exit 1.
    std::fs::write(cache, "{\"format\": \"envid-replica-1\", \"vers").unwrap();
    let o = with(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cache.json is corrupt"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(cache).unwrap();
    let o = with(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cache.json is missing"),
        "{}",
        stderr(&o)
    );
    println!("corrupt/missing: {}", stderr(&o).trim());
}

#[test]
fn register_keep_alive_registers_again_when_the_service_lost_it() {
    let (server, url, _rx) = serve(&["--insecure-open-registration"]);
    let listen = url.trim_start_matches("http://").to_string();
    let ex = testdata("example.toml");
    let (child, rx) = spawn_lines(&[
        "register",
        "--keep-alive",
        "--lease",
        "3",
        "--ip",
        "10.77.0.3",
        "--descriptor",
        ex.to_str().unwrap(),
        "--endpoint",
        &url,
    ]);
    line_where(&rx, 10, |l| l.starts_with("registered 10.77.0.3 at")).expect("registered");
    // The service restarts without its registrations (no state file).
    terminate(server);
    let (server, url2, _rx2) = serve_on(&listen, &["--insecure-open-registration"]);
    assert_eq!(url, url2);
    let o = envid(&["lookup", "10.77.0.3", "--endpoint", &url]);
    assert!(
        !stdout(&o).contains("sub_env=noahauto-2"),
        "lost: {}",
        stdout(&o)
    );
    // The next renewal gets 404: registered again (after a jitter < lease/3).
    let again = line_where(&rx, 10, |l| l.starts_with("registered 10.77.0.3 again"));
    assert!(again.is_some(), "registered again");
    let o = envid(&["lookup", "10.77.0.3", "--endpoint", &url]);
    assert!(
        stdout(&o).contains("sub_env=noahauto-2"),
        "back: {}",
        stdout(&o)
    );
    assert_eq!(terminate(child).code(), Some(0));
    terminate(server);
}

#[test]
fn watch_shows_a_replica_protecting_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.toml");
    let mut text = String::from("schema = 1\n");
    for i in 1..=20 {
        text.push_str(&format!(
            "[[records]]\nip = \"10.60.0.{i}\"\nenv = \"prod\"\nidc = \"cn0\"\n"
        ));
    }
    std::fs::write(&registry, &text).unwrap();
    let (server, url, _rx) = serve_registry(&registry, "127.0.0.1:0", &["--allow-mass-delete"]);
    let (child, rx) = spawn_lines(&["watch", "--endpoint", &url, "--interval", "60"]);
    let start = line_where(&rx, 10, |l| l.starts_with("start")).expect("a start line");
    assert!(start.contains("records=20 protected=no"), "{start}");
    // The file is emptied; the service (told to) applies it; the replica holds.
    let tmp = dir.path().join("registry.tmp");
    std::fs::write(&tmp, "schema = 1\n").unwrap();
    std::fs::rename(&tmp, &registry).unwrap();
    let change = line_where(&rx, 10, |l| l.starts_with("change")).expect("a change line");
    assert!(
        change.contains("records=20 protected=yes held_deletes=20"),
        "{change}"
    );
    assert!(change.contains("normal_records=20"), "{change}");
    println!("watch: {start}\nwatch: {change}");
    assert_eq!(terminate(child).code(), Some(0));
    terminate(server);
}
