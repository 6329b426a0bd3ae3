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
    use std::io::BufRead;
    let registry = testdata("registry.toml");
    let mut args = vec![
        "serve",
        "--registry",
        registry.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
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

    // Unknown and invalid IPs: exit 1 with a message per IP; known ones still printed.
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
    assert_eq!(o.status.code(), Some(1));
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
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("t0k"));
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
fn registration_is_closed_without_apps_and_open_only_when_asked() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let (child, url, rx) = serve(&[]);
    let o = envid_with(
        &["register", "--endpoint", &url, "--descriptor", ex],
        &[("ENVID_IP", "127.0.0.1")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HTTP 403"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--apps"), "{}", stderr(&o));
    terminate(child);
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("registration is closed")),
        "{log:#?}"
    );

    let (child, url, rx) = serve(&["--insecure-open-registration"]);
    let o = envid_with(
        &["register", "--endpoint", &url, "--descriptor", ex],
        &[("ENVID_IP", "10.79.0.1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    terminate(child);
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("registration is open to anyone")),
        "{log:#?}"
    );
    // --apps and --insecure-open-registration exclude each other.
    let o = envid(&[
        "serve",
        "--registry",
        testdata("registry.toml").to_str().unwrap(),
        "--apps",
        &apps(),
        "--insecure-open-registration",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn deregistering_a_static_record_says_it_is_static() {
    let apps = apps();
    let (child, url, _rx) = serve(&["--apps", &apps]);
    let o = envid(&[
        "deregister",
        "--endpoint",
        &url,
        "--ip",
        "10.0.0.5",
        "--token",
        OPERATOR,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("static record"), "{}", stderr(&o));
    assert!(stderr(&o).contains("10.0.0.5"), "{}", stderr(&o));
    terminate(child);
}

#[test]
fn register_refuses_to_send_a_token_over_plain_http_off_loopback() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let base = [
        "register",
        "--endpoint",
        "http://192.0.2.1:7070",
        "--descriptor",
        ex,
        "--ip",
        "192.0.2.1",
        "--connect-timeout-ms",
        "200",
    ];
    let o = envid_with(&base, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("plain HTTP"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--insecure-http"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tok-example"), "{}", stderr(&o));
    // deregister too, with --token.
    let o = envid_with(
        &[
            "deregister",
            "--endpoint",
            "http://envsvc.example:7070",
            "--ip",
            "192.0.2.1",
            "--token",
            "s3cret",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--insecure-http"), "{}", stderr(&o));
    // With --insecure-http it is sent (and here fails to connect).
    let mut args = base.to_vec();
    args.push("--insecure-http");
    let o = envid_with(&args, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("plain HTTP"), "{}", stderr(&o));
    assert!(stderr(&o).contains("192.0.2.1"), "{}", stderr(&o));
}

#[test]
fn serve_tls_and_register_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "envid CLI test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(p("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(p("cert.pem"), cert.pem()).unwrap();
    std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();

    let apps = apps();
    let (cert, key) = (p("cert.pem"), p("key.pem"));
    let (child, url, _rx) = serve(&["--apps", &apps, "--tls-cert", &cert, "--tls-key", &key]);
    assert!(url.starts_with("https://"), "{url}");
    let ex = testdata("example.toml");
    let ca = p("ca.pem");
    let o = envid_with(
        &[
            "register",
            "--endpoint",
            &url,
            "--ca",
            &ca,
            "--descriptor",
            ex.to_str().unwrap(),
            "--ip",
            "10.79.0.2",
            "--token",
            OPERATOR,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = envid(&["lookup", "10.79.0.2", "--endpoint", &url, "--ca", &ca]);
    assert!(stdout(&o).contains("app=flight_order"), "{}", stdout(&o));
    // Without the CA the certificate is not trusted.
    let o = envid(&["lookup", "10.79.0.2", "--endpoint", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    terminate(child);
}

#[test]
fn register_keep_alive_renews_until_sigterm() {
    use std::io::BufRead;
    let apps = apps();
    let (server, url, _rx) = serve(&["--apps", &apps, "--allow-loopback-registration"]);
    let ex = testdata("example.toml");
    // The descriptor's token, for the IP the requests come from.
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
