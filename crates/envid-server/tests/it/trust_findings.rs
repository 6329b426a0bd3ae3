//! Regression tests of issue 26's findings from outside (README.md,
//! "Security model"): each test is named after its finding and failed
//! before the fix. The real service over loopback; clients bound to
//! distinct 127.0.0.x source addresses play distinct hosts.

use crate::common;

use std::time::Duration;

use common::trust::*;
use common::*;
use serde_json::json;

/// App `web` (env beta).
const WEB: &str = "web-token-5e1f";
/// App `payment` (env prod).
const PAY: &str = "payment-token-77c2";

/// The apps file of these tests: `web`, `payment`, the operator `release`.
fn apps_text() -> String {
    format!(
        "[[app]]\nname = \"web\"\nenvs = [\"beta\"]\ntoken_sha256 = [\"{}\"]\n\n\
         [[app]]\nname = \"payment\"\nenvs = [\"prod\"]\ntoken_sha256 = [\"{}\"]\n\n\
         [[operator]]\nname = \"release\"\ntoken_sha256 = [\"{}\"]\n",
        sha(WEB),
        sha(PAY),
        sha(OPERATOR)
    )
}

/// The config of a service on `registry` (text) with the apps file above
/// and a signing key; the files live in `dir`.
fn config_in(dir: &std::path::Path, registry: &str) -> envid_server::Config {
    let path = dir.join("registry.toml");
    std::fs::write(&path, registry).unwrap();
    let key = dir.join("signing.pem");
    std::fs::write(&key, envid::identity::Signer::generate_pem()).unwrap();
    let mut c = config(&path);
    c.apps_path = Some(write_apps(dir, &apps_text()));
    c.identity.signing_key = Some(key);
    c
}

/// A service of [`config_in`].
fn serve_in(dir: &std::path::Path, registry: &str) -> envid_server::ServerHandle {
    envid_server::spawn(config_in(dir, registry)).unwrap()
}

/// Adds a static record for `ip` (app `payment`, env `prod`) to the
/// registry file in `dir`, and waits until `a` serves it.
fn pin_to_payment(dir: &std::path::Path, a: std::net::SocketAddr, ip: &str) {
    let path = dir.join("registry.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[[records]]\nip = \"{ip}\"\napp = \"payment\"\nenv = \"prod\"\nidc = \"cn5\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    wait_until("the static record", Duration::from_secs(10), || {
        get(a, &format!("/v1/hosts/{ip}")).json()["app"] == "payment"
    });
}

/// The registry these tests start from: one unrelated record.
const REGISTRY: &str =
    "schema = 1\n[[records]]\nip = \"10.0.0.5\"\napp = \"ledger\"\nenv = \"prod\"\nidc = \"cn5\"\n";

/// A verifier of `svc`'s identities.
fn verifier(base_url: &str) -> envid::identity::Verifier {
    let config = envid::ServiceConfig::builder()
        .endpoint(base_url)
        .build()
        .unwrap();
    envid::identity::Verifier::builder(config).build().unwrap()
}

/// Renews `ip` as `web` from the IP itself, `threads` at a time, while
/// `payment` registers the same IP (the host moved to payment); returns
/// how many renewals came back with an identity that is not web's.
fn race_renewals_against_a_registration(a: std::net::SocketAddr, n: u8, threads: usize) -> usize {
    let ip = lo(n).to_string();
    expect(
        &put(a, n, &ip, Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewers: Vec<_> = (0..threads)
        .map(|_| {
            let (ip, stop) = (ip.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut foreign = 0;
                let mut rounds = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 400 {
                    rounds += 1;
                    let r = renew(a, n, &ip, Some(WEB));
                    if r.status == 200 {
                        if let Some(jwt) = r.json()["identity"].as_str() {
                            let claims = claims_of(jwt);
                            if claims["app"] != "web" || claims["env"] != "beta" {
                                foreign += 1;
                            }
                        }
                    }
                }
                foreign
            })
        })
        .collect();
    // The IP moves to payment and back, again and again, while web's
    // renewals are in flight.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(3));
        expect(
            &put(a, n, &ip, Some(PAY), &rec("payment", "prod", "cn5")),
            200,
            "",
        );
        std::thread::sleep(Duration::from_millis(3));
        expect(
            &put(a, n, &ip, Some(WEB), &rec("web", "beta", "cn0")),
            200,
            "",
        );
    }
    expect(
        &put(a, n, &ip, Some(PAY), &rec("payment", "prod", "cn5")),
        200,
        "",
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let foreign = renewers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(get(a, &format!("/v1/hosts/{ip}")).json()["app"], "payment");
    foreign
}

#[test]
fn finding_1_a_renewal_never_hands_out_the_identity_of_a_record_pinned_later() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), REGISTRY);
    let a = svc.local_addr();
    let ip = "127.0.0.30";
    let r = put(a, 30, ip, Some(WEB), &rec("web", "beta", "cn0"));
    expect(&r, 200, "");
    let first = claims_of(r.json()["identity"].as_str().unwrap());
    let rid = first["rid"]
        .as_str()
        .expect("the registration id is a claim")
        .to_string();
    assert_eq!(rid.len(), 32, "{first}");
    // The operator pins the IP to payment in the registry file.
    pin_to_payment(dir.path(), a, ip);
    // web's renewal from elsewhere: refused before anything is signed.
    let r = renew(a, 99, ip, Some(WEB));
    expect(&r, 403, "forbidden");
    // From the IP: web's own registration (hidden under the static record)
    // is renewed and signed, never payment's record.
    let r = renew(a, 30, ip, Some(WEB));
    expect(&r, 200, "");
    let jwt = r.json()["identity"].as_str().unwrap().to_string();
    let claims = verifier(&svc.base_url()).verify(&jwt).unwrap();
    assert_eq!(claims.sub, "envid://web/beta");
    assert_eq!(claims.ip, Some(ip.parse().unwrap()));
    assert_eq!(claims.rid.as_deref(), Some(rid.as_str()));
}

#[test]
fn finding_1_racing_renewals_never_get_another_apps_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config_in(dir.path(), REGISTRY);
    c.renew_limit = 0;
    c.register_limit = 0;
    // Renewals wait for the state log's fsync: the window in which the
    // IP changes hands under a renewal in flight.
    c.state_path = Some(dir.path().join("state.json"));
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for run in 0..4u8 {
        let foreign = race_renewals_against_a_registration(a, 60 + run, 24);
        assert_eq!(foreign, 0, "run {run}: foreign identities");
    }
}

#[test]
fn finding_9_renewals_are_limited_per_lease() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), REGISTRY);
    let a = svc.local_addr();
    let ip = "127.0.0.34";
    expect(
        &put(a, 34, ip, Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..30 {
        let r = renew(a, 34, ip, Some(WEB));
        match r.status {
            200 => ok += 1,
            429 => {
                limited = Some(r);
                break;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(ok, 10, "10 renewals a lease by default");
    let r = limited.expect("the 11th renewal within the lease is refused");
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another IP of the app has its own window; the operator too.
    expect(&renew(a, 1, ip, Some(OPERATOR)), 200, "");
}

#[test]
fn finding_5_refusals_tell_an_app_nothing_of_other_apps_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config_in(
        dir.path(),
        &format!("{REGISTRY}[[records]]\nip = \"127.0.0.31\"\napp = \"payment\"\nenv = \"prod\"\nidc = \"cn5\"\n"),
    );
    c.token = Some("read-token-93".into());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let secret_parts = ["payment", "prod", "cn5", "ledger"];
    let tells_nothing = |r: &Resp| {
        let m = r.error_message();
        for part in secret_parts {
            assert!(!m.contains(part), "{part:?} in {m}");
        }
    };
    // A static record: 409, without its app, env or idc.
    for r in [
        put(a, 31, "127.0.0.31", Some(WEB), &rec("web", "beta", "cn0")),
        delete(a, 31, "127.0.0.31", Some(WEB)),
    ] {
        expect(&r, 409, "static_record");
        tells_nothing(&r);
    }
    // Another IP (the file's 10.0.0.5): refused before anything is looked up.
    let r = delete(a, 31, "10.0.0.5", Some(WEB));
    expect(&r, 403, "forbidden");
    tells_nothing(&r);
    // Another app's registration: 403 without its owner.
    expect(
        &put(
            a,
            32,
            "127.0.0.32",
            Some(PAY),
            &rec("payment", "prod", "cn5"),
        ),
        200,
        "",
    );
    for r in [
        renew(a, 32, "127.0.0.32", Some(WEB)),
        delete(a, 32, "127.0.0.32", Some(WEB)),
    ] {
        expect(&r, 403, "forbidden");
        tells_nothing(&r);
    }
    // The operator sees the details.
    let r = delete(a, 1, "127.0.0.31", Some(OPERATOR));
    expect(&r, 409, "static_record");
    assert!(r.error_message().contains("payment"), "{}", r.body);
    // DELETE is limited like PUT: 3 per (app, IP) a minute, whatever the answer.
    for _ in 0..3 {
        expect(&delete(a, 33, "127.0.0.33", Some(WEB)), 204, "");
    }
    let r = delete(a, 33, "127.0.0.33", Some(WEB));
    expect(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());
}

const MAPPED_PAYMENT: &str = "schema = 1\n[[records]]\nip = \"::ffff:127.0.0.21\"\napp = \"payment\"\nenv = \"prod\"\nidc = \"cn5\"\n";

#[test]
fn finding_4_a_static_record_written_ipv4_mapped_protects_its_ipv4_host() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), MAPPED_PAYMENT);
    let a = svc.local_addr();
    // The service answers for the host however it is asked, and serves
    // the record under the one canonical form.
    for asked in ["127.0.0.21", "::ffff:127.0.0.21"] {
        let r = get(a, &format!("/v1/hosts/{asked}"));
        expect(&r, 200, "");
        assert_eq!(r.json()["app"], "payment", "{asked}");
        assert_eq!(r.json()["ip"], "127.0.0.21", "{asked}");
    }
    // Protected: web's registration of it (from the IP itself) is 409,
    // and so is a removal.
    let r = put(a, 21, "127.0.0.21", Some(WEB), &rec("web", "beta", "cn0"));
    expect(&r, 409, "static_record");
    expect(
        &delete(a, 21, "127.0.0.21", Some(OPERATOR)),
        409,
        "static_record",
    );
    assert_eq!(get(a, "/v1/hosts/127.0.0.21").json()["app"], "payment");
    // A replica agrees with the service.
    let replica = envid::replica::Replica::builder(
        envid::ServiceConfig::builder()
            .endpoint(svc.base_url())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    for asked in ["127.0.0.21", "::ffff:127.0.0.21"] {
        let r = replica.lookup(asked.parse().unwrap()).expect("replicated");
        assert_eq!(r.app.as_deref(), Some("payment"));
        assert_eq!(r.ip, Some("127.0.0.21".parse().unwrap()));
    }
}

#[test]
fn finding_4_both_spellings_of_one_host_are_a_duplicate_naming_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        format!(
            "{MAPPED_PAYMENT}[[records]]\nip = \"127.0.0.21\"\napp = \"web\"\nenv = \"beta\"\nidc = \"cn0\"\n"
        ),
    )
    .unwrap();
    let e = envid_server::spawn(config(&path)).unwrap_err().to_string();
    assert!(e.contains("duplicate record for 127.0.0.21"), "{e}");
    assert!(
        e.contains("registry.toml:8:") && e.contains("first at line 3"),
        "{e}"
    );
    assert!(e.contains("\"::ffff:127.0.0.21\""), "{e}");
    // The same file as a reload is refused and the old registry stays.
    std::fs::write(&path, MAPPED_PAYMENT).unwrap();
    let svc = envid_server::spawn(config(&path)).unwrap();
    let a = svc.local_addr();
    std::fs::write(
        &path,
        format!("{MAPPED_PAYMENT}[[records]]\nip = \"127.0.0.21\"\napp = \"web\"\nenv = \"beta\"\nidc = \"cn0\"\n"),
    )
    .unwrap();
    wait_until("the refused reload", Duration::from_secs(5), || {
        metric(
            &get(a, "/metrics").body,
            "envid_registry_reloads_total{result=\"error\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        get(a, "/v1/hosts/127.0.0.21").json()["app"],
        json!("payment")
    );
}

#[cfg(feature = "etcd")]
#[test]
fn finding_1_on_etcd_renewals_sign_only_the_callers_own_registration() {
    if !envid_testkit::require_program("etcd", "the etcd store is tested on real members") {
        return;
    }
    let cluster = common::etcd::Cluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config_in(dir.path(), REGISTRY);
    c.etcd = cluster.endpoint_list();
    c.renew_limit = 0;
    c.register_limit = 0;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    wait_until("the instance lists etcd", Duration::from_secs(20), || {
        get(a, "/healthz").status == 200
    });
    // A record pinned after web registered: web still gets web's identity.
    let ip = "127.0.0.30";
    let r = put(a, 30, ip, Some(WEB), &rec("web", "beta", "cn0"));
    expect(&r, 200, "");
    let rid = claims_of(r.json()["identity"].as_str().unwrap())["rid"].clone();
    pin_to_payment(dir.path(), a, ip);
    expect(&renew(a, 99, ip, Some(WEB)), 403, "forbidden");
    let r = renew(a, 30, ip, Some(WEB));
    expect(&r, 200, "");
    let jwt = r.json()["identity"].as_str().unwrap().to_string();
    let claims = verifier(&svc.base_url()).verify(&jwt).unwrap();
    assert_eq!(claims.sub, "envid://web/beta");
    assert_eq!(json!(claims.rid), rid);
    // The race, over etcd's round trips.
    for run in 0..3u8 {
        let foreign = race_renewals_against_a_registration(a, 70 + run, 24);
        assert_eq!(foreign, 0, "run {run}: foreign identities");
    }
}

/// `/healthz` with the read token (`Some`) or without.
fn healthz(a: std::net::SocketAddr, token: Option<&str>) -> Resp {
    match token {
        Some(t) => get_auth(a, "/healthz", t),
        None => get(a, "/healthz"),
    }
}

#[test]
fn finding_6_healthz_without_the_read_token_says_only_how_the_service_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config_in(dir.path(), REGISTRY);
    c.token = Some("read-token-61".into());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for token in [None, Some("wrong-token")] {
        let r = healthz(a, token);
        expect(&r, 200, "");
        assert_eq!(r.json(), json!({"status": "ok"}), "{token:?}");
    }
    let whole = healthz(a, Some("read-token-61")).json();
    for field in [
        "version",
        "records",
        "history",
        "registration",
        "apps_file",
        "compatibility",
    ] {
        assert!(whole.get(field).is_some(), "{field} in {whole}");
    }
    // A refused reload (a mass deletion): a class without, details with.
    std::fs::write(dir.path().join("registry.toml"), "schema = 1\n").unwrap();
    wait_until("the refused reload", Duration::from_secs(5), || {
        healthz(a, None).json().get("attention").is_some()
    });
    let r = healthz(a, None);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "attention": ["reload_refused"]})
    );
    assert!(!r.body.contains("registry.toml"), "{}", r.body);
    let whole = healthz(a, Some("read-token-61")).json();
    assert!(whole["reload_refused"]["message"].is_string(), "{whole}");
}

#[test]
fn finding_8_an_apps_file_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = config_in(dir.path(), REGISTRY);
    let apps = c.apps_path.clone().unwrap();
    let chmod = |mode| std::fs::set_permissions(&apps, std::fs::Permissions::from_mode(mode));
    chmod(0o666).unwrap();
    let e = envid_server::spawn(c.clone()).unwrap_err().to_string();
    assert!(e.contains("mode 0666") && e.contains("chmod go-w"), "{e}");
    chmod(0o644).unwrap();
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    // Made writable while serving: the credentials in use stay, and the
    // service says it runs an older apps file until the mode is fixed.
    chmod(0o664).unwrap();
    wait_until("the stale apps file", Duration::from_secs(5), || {
        healthz(a, None).json()["apps_file"]["stale"] == true
    });
    let h = healthz(a, None).json();
    assert!(
        h["apps_file"]["error"]
            .as_str()
            .unwrap()
            .contains("mode 0664"),
        "{h}"
    );
    assert!(h["apps_file"]["since"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(
        metric(&get(a, "/metrics").body, "envid_apps_file_stale"),
        Some(1.0)
    );
    expect(
        &put(a, 35, "127.0.0.35", Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    chmod(0o600).unwrap();
    wait_until("the apps file in use again", Duration::from_secs(5), || {
        healthz(a, None).json()["apps_file"]["stale"] == false
    });
    assert_eq!(
        metric(&get(a, "/metrics").body, "envid_apps_file_stale"),
        Some(0.0)
    );
}

#[test]
fn finding_8_a_revocation_is_not_lost_to_an_unrelated_typo() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), REGISTRY);
    let a = svc.local_addr();
    expect(
        &put(
            a,
            36,
            "127.0.0.36",
            Some(PAY),
            &rec("payment", "prod", "cn5"),
        ),
        200,
        "",
    );
    // payment's token revoked, and a typo elsewhere in the same edit.
    let edited = apps_text()
        .replace(&sha(PAY), &sha("payment-token-next"))
        .replace("name = \"web\"", "name = \"web\"\ncolour = \"blue\"");
    write_apps(dir.path(), &edited);
    wait_until("the refused apps file", Duration::from_secs(5), || {
        healthz(a, None).json()["apps_file"]["stale"] == true
    });
    let h = healthz(a, None).json();
    assert_eq!(h["apps_file"]["revoked"], 1, "{h}");
    assert!(
        h["apps_file"]["error"].as_str().unwrap().contains("colour"),
        "{h}"
    );
    // The revoked token is refused; the others keep working.
    expect(&renew(a, 36, "127.0.0.36", Some(PAY)), 401, "unauthorized");
    expect(
        &put(a, 37, "127.0.0.37", Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    expect(&renew(a, 1, "127.0.0.36", Some(OPERATOR)), 200, "");
}

#[test]
fn finding_8_an_empty_apps_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = config_in(dir.path(), REGISTRY);
    write_apps(dir.path(), "# every entry removed\n");
    let e = envid_server::spawn(c.clone()).unwrap_err().to_string();
    assert!(e.contains("no [[app]] or [[operator]]"), "{e}");
    write_apps(dir.path(), &apps_text());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    write_apps(dir.path(), "");
    wait_until("the refused apps file", Duration::from_secs(5), || {
        healthz(a, None).json()["apps_file"]["stale"] == true
    });
    // Nothing was revoked: an empty file is no revocation.
    assert_eq!(healthz(a, None).json()["apps_file"]["revoked"], 0);
    expect(
        &put(a, 38, "127.0.0.38", Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
}

#[test]
fn finding_8_every_file_the_service_writes_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config_in(dir.path(), REGISTRY);
    let state = dir.path().join("state.json");
    c.state_path = Some(state.clone());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    expect(
        &put(a, 39, "127.0.0.39", Some(WEB), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    let log = dir.path().join("state.json.log");
    for path in [&state, &log] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}

#[test]
fn finding_12_a_since_without_history_is_kept_counted_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), REGISTRY);
    let a = svc.local_addr();
    let r = get(a, "/v1/registry?since=1");
    expect(&r, 200, "");
    assert_eq!(
        metric(
            &get(a, "/metrics").body,
            "envid_replication_since_without_history_total"
        ),
        Some(1.0)
    );
    assert_eq!(
        healthz(a, None).json()["compatibility"]["since_without_history"],
        "accepted"
    );
}
