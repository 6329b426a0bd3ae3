//! Trusted registration over real HTTP (README.md, "Security model"):
//! clients bound to distinct loopback source addresses play distinct hosts
//! (a client bound to 127.0.0.5 is the host 127.0.0.5), with the tokens of
//! `testdata/apps/apps.toml`. Covers who may say what (own IP, app, env,
//! idc, operator), ownership of renewals and removals, static records,
//! special addresses, closed and open registration; the limits, proxies,
//! hostile bodies, the apps file and TLS are in `trust_limits`.

use crate::common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use serde_json::{json, Value};

pub(crate) fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

pub(crate) fn rec(app: &str, env: &str, idc: &str) -> Value {
    json!({"app": app, "env": env, "idc": idc, "lease_seconds": 60})
}

pub(crate) fn call(
    a: SocketAddr,
    from: u8,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    headers.extend_from_slice(extra);
    request_from(Some(lo(from)), a, method, path, &headers, body)
}

/// `PUT /v1/hosts/{ip}` from 127.0.0.`from`.
pub(crate) fn put(a: SocketAddr, from: u8, ip: &str, token: Option<&str>, body: &Value) -> Resp {
    let path = format!("/v1/hosts/{ip}");
    call(
        a,
        from,
        "PUT",
        &path,
        token,
        &[],
        body.to_string().as_bytes(),
    )
}

pub(crate) fn renew(a: SocketAddr, from: u8, ip: &str, token: Option<&str>) -> Resp {
    let path = format!("/v1/hosts/{ip}/renew");
    call(a, from, "POST", &path, token, &[], b"")
}

pub(crate) fn delete(a: SocketAddr, from: u8, ip: &str, token: Option<&str>) -> Resp {
    let path = format!("/v1/hosts/{ip}");
    call(a, from, "DELETE", &path, token, &[], b"")
}

pub(crate) fn refusals(a: SocketAddr, reason: &str) -> f64 {
    let text = get(a, "/metrics").body;
    metric(
        &text,
        &format!("envid_registration_refusals_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

#[track_caller]
pub(crate) fn expect(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    if !code.is_empty() {
        assert_eq!(r.error_code(), code, "{}", r.body);
    }
}

pub(crate) fn serve() -> envid_server::ServerHandle {
    envid_server::spawn(config(example_registry())).unwrap()
}

#[test]
fn an_app_registers_only_its_own_ip_for_its_own_name_env_and_idc() {
    let svc = serve();
    let a = svc.local_addr();
    let ip5 = lo(5).to_string();

    // Own IP, own app, an allowed env and idc: 200, served with the derived env_type.
    let r = put(a, 5, &ip5, Some(PAYMENT), &rec("payment", "prod", "cn5"));
    expect(&r, 200, "");
    let served = get(a, &format!("/v1/hosts/{ip5}")).json();
    assert_eq!(
        (&served["app"], &served["env"], &served["env_type"]),
        (&json!("payment"), &json!("prod"), &json!("prod"))
    );

    // Another IP: 403, naming where the request came from.
    let r = put(
        a,
        5,
        "127.0.0.6",
        Some(PAYMENT),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 403, "forbidden");
    assert!(r.error_message().contains("127.0.0.5"), "{}", r.body);
    let r = put(
        a,
        5,
        "192.0.2.9",
        Some(PAYMENT),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 403, "forbidden");
    // Another app's name, an env or idc the token may not claim, no app: 403.
    for body in [
        rec("checkout", "prod", "cn5"),
        rec("payment", "beta", "cn5"),
        rec("payment", "prod", "cn9"),
        json!({"env": "prod", "idc": "cn5", "lease_seconds": 60}),
    ] {
        let r = put(a, 5, &ip5, Some(PAYMENT), &body);
        expect(&r, 403, "forbidden");
    }
    // No token, a wrong token: 401 with WWW-Authenticate.
    let r = put(a, 5, &ip5, None, &rec("payment", "prod", "cn5"));
    expect(&r, 401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = put(
        a,
        5,
        &ip5,
        Some("payment-token"),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 401, "unauthorized");
    // The read token scheme does not help: not a bearer.
    let r = call(
        a,
        5,
        "PUT",
        &format!("/v1/hosts/{ip5}"),
        None,
        &[("Authorization", "Basic cGF5bWVudA==")],
        rec("payment", "prod", "cn5").to_string().as_bytes(),
    );
    expect(&r, 401, "unauthorized");
    // None of it changed what is served.
    assert_eq!(get(a, &format!("/v1/hosts/{ip5}")).json(), served);
    assert_eq!(get(a, "/v1/hosts/127.0.0.6").status, 404);
    assert_eq!(get(a, "/v1/hosts/192.0.2.9").status, 404);

    // Every refusal is counted by reason.
    for (reason, n) in [
        ("not_own_ip", 2.0),
        ("wrong_app", 2.0),
        ("env_not_allowed", 1.0),
        ("idc_not_allowed", 1.0),
        ("no_token", 2.0),
        ("bad_token", 1.0),
    ] {
        assert_eq!(refusals(a, reason), n, "{reason}");
    }

    // A rotated token of an app without idcs: any idc, either allowed env.
    let ip7 = lo(7).to_string();
    for token in [CHECKOUT, CHECKOUT_ROTATED] {
        let r = put(
            a,
            7,
            &ip7,
            Some(token),
            &rec("checkout", "beta", "anywhere"),
        );
        expect(&r, 200, "");
    }
}

#[test]
fn env_type_is_the_services_not_the_clients() {
    let svc = serve();
    let a = svc.local_addr();
    let ip = lo(8).to_string();
    let mut body = rec("checkout", "beta", "cn0");
    body["env_type"] = json!("prod");
    let r = put(a, 8, &ip, Some(CHECKOUT), &body);
    expect(&r, 400, "invalid_record");
    assert!(r.error_message().contains("env_type"), "{}", r.body);
    let r = put(a, 8, &ip, Some(CHECKOUT), &rec("checkout", "beta", "cn0"));
    expect(&r, 200, "");
    assert_eq!(
        get(a, &format!("/v1/hosts/{ip}")).json()["env_type"],
        "beta"
    );
}

#[test]
fn operators_register_any_ip_for_any_app() {
    let svc = serve();
    let a = svc.local_addr();
    let r = put(
        a,
        5,
        "192.0.2.9",
        Some(OPERATOR),
        &rec("anything", "prod", "cn1"),
    );
    expect(&r, 200, "");
    assert_eq!(get(a, "/v1/hosts/192.0.2.9").json()["app"], "anything");
    // ...and renew and remove them, and any app's.
    expect(&renew(a, 6, "192.0.2.9", Some(OPERATOR)), 200, "");
    let ip5 = lo(5).to_string();
    expect(
        &put(a, 5, &ip5, Some(PAYMENT), &rec("payment", "prod", "cn6")),
        200,
        "",
    );
    expect(&renew(a, 9, &ip5, Some(OPERATOR)), 200, "");
    expect(&delete(a, 9, &ip5, Some(OPERATOR)), 204, "");
    expect(&delete(a, 9, "192.0.2.9", Some(OPERATOR)), 204, "");
    assert_eq!(get(a, "/v1/hosts/192.0.2.9").status, 404);
}

#[test]
fn renewals_and_removals_need_the_owners_token() {
    let svc = serve();
    let a = svc.local_addr();
    let ip5 = lo(5).to_string();
    expect(
        &put(a, 5, &ip5, Some(PAYMENT), &rec("payment", "prod", "cn5")),
        200,
        "",
    );
    // Another app from the IP itself: 403 naming the owner (no read token
    // here: anyone may read the record anyway).
    let r = renew(a, 5, &ip5, Some(CHECKOUT));
    expect(&r, 403, "forbidden");
    assert!(r.error_message().contains("payment"), "{}", r.body);
    expect(&delete(a, 5, &ip5, Some(CHECKOUT)), 403, "forbidden");
    // From anywhere else an app's credential touches no IP but its own.
    for token in [CHECKOUT, PAYMENT] {
        let r = renew(a, 7, &ip5, Some(token));
        expect(&r, 403, "forbidden");
        assert!(r.error_message().contains("only its own IP"), "{}", r.body);
        expect(&delete(a, 7, &ip5, Some(token)), 403, "forbidden");
    }
    expect(&delete(a, 5, &ip5, None), 401, "unauthorized");
    assert_eq!(get(a, &format!("/v1/hosts/{ip5}")).json()["app"], "payment");
    assert_eq!(refusals(a, "not_owner"), 2.0);
    assert_eq!(refusals(a, "not_own_ip"), 4.0);
    // The owner: 200, then 204 (and 204 again: idempotent).
    expect(&renew(a, 5, &ip5, Some(PAYMENT)), 200, "");
    expect(&delete(a, 5, &ip5, Some(PAYMENT)), 204, "");
    expect(&delete(a, 5, &ip5, Some(PAYMENT)), 204, "");
    expect(&renew(a, 5, &ip5, Some(PAYMENT)), 404, "not_registered");
}

#[test]
fn a_registration_from_the_ip_itself_replaces_the_previous_owner() {
    let svc = serve();
    let a = svc.local_addr();
    let ip5 = lo(5).to_string();
    expect(
        &put(a, 5, &ip5, Some(PAYMENT), &rec("payment", "prod", "cn5")),
        200,
        "",
    );
    // The IP has moved to checkout: its registration from the IP wins...
    expect(
        &put(a, 5, &ip5, Some(CHECKOUT), &rec("checkout", "prod", "cn5")),
        200,
        "",
    );
    assert_eq!(
        get(a, &format!("/v1/hosts/{ip5}")).json()["app"],
        "checkout"
    );
    // ...and the former owner can no longer keep it alive or remove it.
    expect(&renew(a, 5, &ip5, Some(PAYMENT)), 403, "forbidden");
    expect(&delete(a, 5, &ip5, Some(PAYMENT)), 403, "forbidden");
}

#[test]
fn static_records_are_409_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.toml");
    std::fs::write(
        &registry,
        "schema = 1\n[[records]]\nip = \"127.0.0.9\"\napp = \"ledger\"\nenv = \"prod\"\nidc = \"cn5\"\n",
    )
    .unwrap();
    let svc = envid_server::spawn(config(&registry)).unwrap();
    let a = svc.local_addr();
    // Even from the IP itself, with its own (allowed) app token.
    let r = put(
        a,
        9,
        "127.0.0.9",
        Some(PAYMENT),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 409, "static_record");
    assert!(r.error_message().contains("127.0.0.9"), "{}", r.body);
    assert!(r.error_message().contains("ledger"), "{}", r.body);
    let r = delete(a, 9, "127.0.0.9", Some(OPERATOR));
    expect(&r, 409, "static_record");
    assert!(r.error_message().contains("ledger"), "{}", r.body);
    assert_eq!(get(a, "/v1/hosts/127.0.0.9").json()["app"], "ledger");
    assert_eq!(refusals(a, "static_record"), 2.0);
}

#[test]
fn special_addresses_are_400_naming_the_class() {
    let mut c = config(example_registry());
    c.allow_loopback_registration = false;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for (ip, class) in [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.5", "loopback"),
        ("169.254.0.7", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ] {
        let r = put(a, 1, ip, Some(OPERATOR), &rec("x", "prod", "cn5"));
        expect(&r, 400, "special_address");
        assert!(r.error_message().contains(class), "{ip}: {}", r.body);
    }
    // Without --allow-loopback-registration an instance on loopback cannot
    // register itself either.
    let r = put(
        a,
        5,
        "127.0.0.5",
        Some(PAYMENT),
        &rec("payment", "prod", "cn5"),
    );
    expect(&r, 400, "special_address");
    assert_eq!(get(a, "/healthz").json()["version"], 1);
}

#[test]
fn registration_is_closed_by_default() {
    let mut c = config(example_registry());
    c.apps_path = None;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for r in [
        put(a, 5, "127.0.0.5", Some(OPERATOR), &rec("x", "prod", "cn5")),
        put(a, 5, "127.0.0.5", None, &rec("x", "prod", "cn5")),
        renew(a, 5, "127.0.0.5", None),
        delete(a, 5, "127.0.0.5", None),
    ] {
        expect(&r, 403, "registration_closed");
        assert!(r.error_message().contains("--apps"), "{}", r.body);
    }
    let h = get(a, "/healthz").json();
    assert_eq!(h["registration"], "closed");
    assert!(h.get("warning").is_none());
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_registration_open"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(refusals(a, "closed"), 4.0);
}

#[test]
fn open_registration_says_so_everywhere() {
    let mut c = config(example_registry());
    c.apps_path = None;
    c.insecure_open_registration = true;
    let svc = envid_server::spawn(c.clone()).unwrap();
    let a = svc.local_addr();
    let h = get(a, "/healthz").json();
    assert_eq!(h["registration"], "insecure_open");
    assert!(h["warning"].as_str().unwrap().contains("open"), "{h}");
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_registration_open"),
        Some(1.0),
        "{text}"
    );
    // Anyone, any IP, no token; the other rules stay.
    expect(
        &put(a, 5, "192.0.2.9", None, &rec("x", "beta", "cn0")),
        200,
        "",
    );
    expect(
        &put(a, 5, "10.0.0.5", None, &rec("x", "beta", "cn0")),
        409,
        "static_record",
    );
    expect(
        &put(a, 5, "0.0.0.0", None, &rec("x", "beta", "cn0")),
        400,
        "special_address",
    );
    // An apps file and open registration exclude each other.
    c.apps_path = Some(apps_file());
    let err = envid_server::spawn(c).unwrap_err();
    assert!(err.to_string().contains("open registration"), "{err}");
}
