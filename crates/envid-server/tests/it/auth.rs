//! The bearer token: required on lookups and `/metrics` when configured,
//! never on `/healthz`.

use crate::common;

use common::*;

fn serve_with_token() -> envid_server::ServerHandle {
    let mut c = config(example_registry());
    c.token = Some("t0ken".into());
    envid_server::spawn(c).unwrap()
}

#[test]
fn missing_token_is_401() {
    let server = serve_with_token();
    let a = server.local_addr();
    let r = get(a, "/v1/hosts/10.0.0.5");
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = lookup(a, &["10.0.0.5"]);
    assert_eq!(r.status, 401);
    assert_eq!(get(a, "/metrics").status, 401);
    server.shutdown();
}

#[test]
fn wrong_token_is_401() {
    let server = serve_with_token();
    let a = server.local_addr();
    for token in ["wrong", "t0ke", "t0ken2", ""] {
        let r = get_auth(a, "/v1/hosts/10.0.0.5", token);
        assert_eq!(r.status, 401, "token {token:?}");
        assert_eq!(r.error_code(), "unauthorized");
    }
    // Not a bearer scheme.
    let r = request(
        a,
        "GET",
        "/v1/hosts/10.0.0.5",
        &[("Authorization", "Basic dDBrZW4=")],
        b"",
    );
    assert_eq!(r.status, 401);
    server.shutdown();
}

#[test]
fn right_token_is_accepted() {
    let server = serve_with_token();
    let a = server.local_addr();
    let r = get_auth(a, "/v1/hosts/10.0.0.5", "t0ken");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["app"], "flightqma");
    let r = request(
        a,
        "POST",
        "/v1/hosts/lookup",
        &[("Authorization", "bearer t0ken")],
        br#"{"ips": ["10.0.0.5"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get_auth(a, "/metrics", "t0ken").status, 200);
    server.shutdown();
}

#[test]
fn healthz_stays_open() {
    let server = serve_with_token();
    let r = get(server.local_addr(), "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    server.shutdown();
}

#[test]
fn refused_requests_are_counted() {
    let server = serve_with_token();
    let a = server.local_addr();
    get(a, "/v1/hosts/10.0.0.5");
    get(a, "/v1/hosts/10.0.0.5");
    let text = get_auth(a, "/metrics", "t0ken").body;
    assert_eq!(
        metric(
            &text,
            r#"envid_http_requests_total{endpoint="get_host",status="401"}"#
        ),
        Some(2.0),
        "{text}"
    );
    // Refused requests look nothing up.
    assert_eq!(
        metric(&text, "envid_ips_looked_up_total"),
        Some(0.0),
        "{text}"
    );
    server.shutdown();
}

#[test]
fn empty_token_is_refused_at_start() {
    let mut c = config(example_registry());
    c.token = Some(" ".into());
    let err = envid_server::spawn(c).unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
    assert!(
        matches!(
            err,
            envid_server::ServerError::Config { field: "token", .. }
        ),
        "{err:?}"
    );
}

#[test]
fn config_debug_redacts_the_tokens() {
    let mut c = common::config(common::example_registry());
    c.token = Some("read-s3cret".into());
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
