//! `envid serve`, `lookup`, `register`, `deregister` and `watch` against a
//! real service: answers, failures, restarts and signals.

use super::common::*;
use std::process::Command;

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

// Issue 18, item 6: a static record is not deregistered; say so, exit 1.
// The reference service answers such a DELETE with 409 `static_record`.
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
