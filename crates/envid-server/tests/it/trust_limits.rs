//! Trusted registration, continued (see `trust`): the limits keyed on the
//! token's app, failed authentications per address, `X-Forwarded-For` from
//! trusted proxies only, hostile bodies, the apps file's reload, and TLS
//! with a CA made for the test.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use super::trust::{call, expect, lo, put, rec, refusals, renew, serve};
use common::*;
use serde_json::json;

#[test]
fn the_limit_counts_the_tokens_app_not_the_bodys() {
    let mut c = config(example_registry());
    c.register_limit = 2;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let ip = lo(7).to_string();
    for _ in 0..2 {
        expect(
            &put(a, 7, &ip, Some(CHECKOUT), &rec("checkout", "beta", "cn0")),
            200,
            "",
        );
    }
    let r = put(a, 7, &ip, Some(CHECKOUT), &rec("checkout", "beta", "cn0"));
    expect(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // The rotated token is the same app: same window.
    let r = put(
        a,
        7,
        &ip,
        Some(CHECKOUT_ROTATED),
        &rec("checkout", "beta", "cn0"),
    );
    expect(&r, 429, "rate_limited");
    // Another name in the body is refused, not a fresh window.
    for n in 1..=10 {
        let r = put(
            a,
            7,
            &ip,
            Some(CHECKOUT),
            &rec(&format!("x{n}"), "beta", "cn0"),
        );
        expect(&r, 403, "forbidden");
    }
    // The operator's names do not open windows either.
    for n in 1..=3 {
        let r = put(
            a,
            1,
            "10.9.0.1",
            Some(OPERATOR),
            &rec(&format!("x{n}"), "beta", "cn0"),
        );
        assert_eq!(r.status, if n <= 2 { 200 } else { 429 }, "{}", r.body);
    }
    assert_eq!(refusals(a, "rate_limited"), 3.0);
}

#[test]
fn failed_authentications_are_limited_per_address() {
    let mut c = config(example_registry());
    c.auth_failure_limit = 5;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let body = rec("payment", "prod", "cn5");
    for i in 0..5 {
        let token = format!("guess-{i}");
        expect(
            &put(a, 20, "127.0.0.20", Some(&token), &body),
            401,
            "unauthorized",
        );
    }
    // Blocked, with the right token too, so guessing learns nothing.
    let r = put(a, 20, "127.0.0.20", Some(PAYMENT), &body);
    expect(&r, 429, "too_many_auth_failures");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address is not affected.
    expect(&put(a, 21, "127.0.0.21", Some(PAYMENT), &body), 200, "");
    assert_eq!(refusals(a, "auth_throttled"), 1.0);
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_rate_limited_total{reason=\"auth_failures\"}"),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn read_token_failures_count_too() {
    let mut c = config(example_registry());
    c.token = Some("read-t0ken".into());
    c.auth_failure_limit = 3;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for _ in 0..3 {
        let r = call(
            a,
            30,
            "GET",
            "/v1/hosts/10.0.0.5",
            Some("read-t0ke"),
            &[],
            b"",
        );
        expect(&r, 401, "unauthorized");
    }
    let r = call(
        a,
        30,
        "GET",
        "/v1/hosts/10.0.0.5",
        Some("read-t0ken"),
        &[],
        b"",
    );
    expect(&r, 429, "too_many_auth_failures");
    let r = call(
        a,
        31,
        "GET",
        "/v1/hosts/10.0.0.5",
        Some("read-t0ken"),
        &[],
        b"",
    );
    expect(&r, 200, "");
    // The read token is not a registration token, nor the reverse.
    let r = put(
        a,
        31,
        "127.0.0.31",
        Some("read-t0ken"),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 401, "unauthorized");
    let r = call(a, 31, "GET", "/v1/hosts/10.0.0.5", Some(OPERATOR), &[], b"");
    expect(&r, 401, "unauthorized");
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let mut c = config(example_registry());
    c.trusted_proxies = vec!["127.0.0.10/32".parse().unwrap()];
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let body = rec("payment", "prod", "cn5").to_string();
    let put_xff = |from: u8, ip: &str, xff: &str| {
        call(
            a,
            from,
            "PUT",
            &format!("/v1/hosts/{ip}"),
            Some(PAYMENT),
            &[("X-Forwarded-For", xff)],
            body.as_bytes(),
        )
    };
    // From the trusted proxy: the address it saw.
    expect(&put_xff(10, "127.0.0.20", "127.0.0.20"), 200, "");
    // A client-written entry left of the proxy's is not believed.
    expect(
        &put_xff(10, "127.0.0.22", "127.0.0.22, 127.0.0.21"),
        403,
        "forbidden",
    );
    // From anyone else the header is ignored: the peer is the client.
    expect(&put_xff(11, "127.0.0.23", "127.0.0.23"), 403, "forbidden");
    expect(&put_xff(11, "127.0.0.11", "127.0.0.23"), 200, "");
    // A trusted proxy sending garbage: 400.
    expect(
        &put_xff(10, "127.0.0.20", "not-an-ip"),
        400,
        "invalid_forwarded_for",
    );
}

#[test]
fn hostile_bodies_are_400() {
    let svc = serve();
    let a = svc.local_addr();
    let ip = lo(5).to_string();
    let path = format!("/v1/hosts/{ip}");
    let send = |raw: &str| call(a, 5, "PUT", &path, Some(PAYMENT), &[], raw.as_bytes());
    let ok = r#""app":"payment","env":"prod","idc":"cn5","lease_seconds":60"#;
    let long = "x".repeat(255_000);
    let many_labels: String = (0..30)
        .map(|i| format!(r#""l{i}":"{}""#, "v".repeat(200)))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{{ok},"env":"beta"}}"#), "duplicate key `env`"),
        (
            format!(r#"{{{ok},"labels":{{"a":"1","a":"2"}}}}"#),
            "duplicate key `labels.a`",
        ),
        (
            format!(r#"{{{ok},"hostname":"h\u0000"}}"#),
            "control character",
        ),
        (
            format!(r#"{{{ok},"hostname":"h\n1"}}"#),
            "control character",
        ),
        (
            format!(r#"{{{ok},"hostname":"\u001b[31mred"}}"#),
            "control character",
        ),
        (
            format!(r#"{{{ok},"hostname":"a\u202Eb"}}"#),
            "bidirectional",
        ),
        (
            format!(r#"{{{ok},"labels":{{"t\u2066":"x"}}}}"#),
            "bidirectional",
        ),
        (format!(r#"{{{ok},"sub_env":""}}"#), "must not be empty"),
        (format!(r#"{{{ok},"hostname":" h1 "}}"#), "white space"),
        (format!(r#"{{{ok},"hostname":"{long}"}}"#), "at most 256"),
        (format!(r#"{{{ok},"labels":{{{many_labels}}}}}"#), "4096"),
        (
            format!(r#"{{{ok},"release":{{"verison":"1"}}}}"#),
            "release.verison",
        ),
        (
            format!(r#"{{{ok},"k8s":{{"pod":"p","nmespace":"n"}}}}"#),
            "k8s.nmespace",
        ),
        (format!(r#"{{{ok},"evn":"x"}}"#), "evn"),
        (format!(r#"{{{ok},"env_type":"prod"}}"#), "env_type"),
        (format!(r#"{{{ok},"token":"s3cret"}}"#), "token"),
        (
            r#"{"app":"payment","env":"","idc":"cn5","lease_seconds":60}"#.into(),
            "env",
        ),
        (format!(r#"{{{ok}}} trailing"#), "trailing"),
    ];
    for (raw, named) in &cases {
        let r = send(raw);
        assert_eq!(r.status, 400, "{}: {}", &raw[..raw.len().min(120)], r.body);
        assert!(
            r.error_message().contains(named),
            "{}: {:?} does not name {named:?}",
            &raw[..raw.len().min(120)],
            r.error_message()
        );
    }
    assert_eq!(
        get(a, "/healthz").json()["version"],
        1,
        "nothing registered"
    );
    assert_eq!(refusals(a, "invalid_body"), cases.len() as f64);
    // Renewal bodies: empty or {} only.
    expect(&send(&format!("{{{ok}}}")), 200, "");
    let renew_path = format!("{path}/renew");
    for (body, status) in [
        ("", 200),
        ("{}", 200),
        (" {} ", 200),
        ("{\"lease_seconds\":9}", 400),
        ("[]", 400),
        ("{\"a\":1,\"a\":1}", 400),
    ] {
        let r = call(
            a,
            5,
            "POST",
            &renew_path,
            Some(PAYMENT),
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, status, "{body:?}: {}", r.body);
    }
}

#[test]
fn the_apps_file_is_reloaded_and_a_broken_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::copy(apps_file(), &apps).unwrap();
    let mut c = config(example_registry());
    c.apps_path = Some(apps.clone());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let body = rec("payment", "prod", "cn5");
    expect(&put(a, 5, "127.0.0.5", Some(PAYMENT), &body), 200, "");
    // A broken file: logged, counted, the old credentials stay.
    std::fs::write(&apps, "[[app]]\nname = \"payment\"\nenvs = [\n").unwrap();
    wait_until("the failed reload", Duration::from_secs(5), || {
        metric(
            &get(a, "/metrics").body,
            "envid_apps_reloads_total{result=\"error\"}",
        ) == Some(1.0)
    });
    expect(&renew(a, 5, "127.0.0.5", Some(PAYMENT)), 200, "");
    // A good file without payment: its token is refused from then on.
    let text = std::fs::read_to_string(apps_file()).unwrap();
    let without = text.replace("name = \"payment\"", "name = \"payment-retired\"");
    std::fs::write(&apps, without).unwrap();
    wait_until("the reload", Duration::from_secs(5), || {
        metric(
            &get(a, "/metrics").body,
            "envid_apps_reloads_total{result=\"ok\"}",
        ) == Some(1.0)
    });
    expect(&renew(a, 5, "127.0.0.5", Some(PAYMENT)), 403, "forbidden");
    expect(
        &put(a, 5, "127.0.0.5", Some(PAYMENT), &body),
        403,
        "forbidden",
    );
}

#[test]
fn a_broken_apps_file_at_start_names_every_problem() {
    let bad = apps_file().with_file_name("bad.toml");
    let mut c = config(example_registry());
    c.apps_path = Some(bad);
    let err = envid_server::spawn(c).unwrap_err().to_string();
    for needle in [
        "bad.toml:4:", // envs = []
        "bad.toml:5:", // a plain token
        "bad.toml:6:", // not hex
        "defined twice",
        "colour",
        "without `name`",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

mod tls {
    use super::*;
    use envid::registrar::{Registrar, Registration};
    use envid::{Secret, ServiceConfig};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    /// A CA and a server certificate for 127.0.0.1 it signed, as PEM:
    /// (CA certificate, server certificate, server key).
    fn pki(name: &str) -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_cert.pem(), cert.pem(), key.serialize_pem())
    }

    fn registrar(url: &str, ca: Option<&std::path::Path>) -> Registrar {
        let mut b = ServiceConfig::builder()
            .endpoint(url)
            .token(Secret::new(OPERATOR))
            .connect_timeout(Duration::from_secs(2));
        if let Some(ca) = ca {
            b = b.ca_file(ca);
        }
        Registrar::new(b.build().unwrap())
    }

    fn registration() -> Registration {
        Registration {
            record: serde_json::from_value(json!({"app": "tls", "env": "prod", "idc": "cn5"}))
                .unwrap(),
            lease: Duration::from_secs(60),
        }
    }

    #[test]
    fn https_with_a_private_ca_and_the_certificate_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let (ca1, cert1, key1) = pki("envid test CA 1");
        std::fs::write(p("ca1.pem"), &ca1).unwrap();
        std::fs::write(p("cert.pem"), &cert1).unwrap();
        std::fs::write(p("key.pem"), &key1).unwrap();
        let mut c = config(example_registry());
        c.tls = Some(envid_server::TlsFiles {
            cert: p("cert.pem"),
            key: p("key.pem"),
        });
        let svc = envid_server::spawn(c).unwrap();
        let url = svc.base_url();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let ip: IpAddr = "10.9.8.7".parse().unwrap();

        // Trusting the CA: registration, renewal and removal over TLS.
        let r = registrar(&url, Some(&p("ca1.pem")));
        r.register(ip, &registration()).unwrap();
        assert!(r.renew(ip).unwrap());
        r.deregister(ip).unwrap();
        // Not trusting it (the bundled roots): the handshake fails.
        let e = registrar(&url, None)
            .register(ip, &registration())
            .unwrap_err();
        assert!(e.to_string().contains("connect"), "{e}");
        // Plain HTTP to the TLS port gets no answer.
        let plain = url.replace("https://", "http://");
        assert!(registrar(&plain, None)
            .register(ip, &registration())
            .is_err());

        // A new certificate from another CA is served once the files change.
        let (ca2, cert2, key2) = pki("envid test CA 2");
        std::fs::write(p("ca2.pem"), &ca2).unwrap();
        std::fs::write(p("key.pem"), &key2).unwrap();
        std::fs::write(p("cert.pem"), &cert2).unwrap();
        wait_until("the new certificate", Duration::from_secs(10), || {
            registrar(&url, Some(&p("ca2.pem")))
                .register(ip, &registration())
                .is_ok()
        });
        assert!(registrar(&url, Some(&p("ca1.pem")))
            .register(ip, &registration())
            .is_err());
        // A broken pair keeps the last good one.
        std::fs::write(p("cert.pem"), "not a certificate").unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        assert!(registrar(&url, Some(&p("ca2.pem"))).renew(ip).unwrap());
    }

    #[test]
    fn a_bad_certificate_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, _) = pki("a");
        let (_, _, other_key) = pki("b");
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), other_key).unwrap();
        let mut c = config(example_registry());
        c.tls = Some(envid_server::TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        });
        let err = envid_server::spawn(c).unwrap_err();
        assert!(err.to_string().starts_with("tls:"), "{err}");
    }
}
