//! `/metrics`: request counts by endpoint and status, IPs looked up, the
//! registry version and size.

use crate::common;

use common::*;

#[test]
fn counters_have_the_right_values() {
    let server = serve_example();
    let a = server.local_addr();
    assert_eq!(get(a, "/v1/hosts/10.0.0.5").status, 200);
    assert_eq!(get(a, "/v1/hosts/10.0.0.5").status, 200);
    assert_eq!(get(a, "/v1/hosts/192.168.0.1").status, 404);
    assert_eq!(get(a, "/v1/hosts/bogus").status, 400);
    assert_eq!(
        lookup(a, &["10.0.0.5", "10.8.1.9", "192.168.0.1"]).status,
        200
    );
    assert_eq!(lookup(a, &["nope"]).status, 400);
    assert_eq!(get(a, "/healthz").status, 200);

    let r = get(a, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").unwrap().contains("text"),
        "{:?}",
        r.headers
    );
    let text = r.body;
    let m = |series: &str| metric(&text, series);
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="get_host",status="200"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="get_host",status="404"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="get_host",status="400"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="lookup",status="200"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="lookup",status="400"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m(r#"envid_http_requests_total{endpoint="healthz",status="200"}"#),
        Some(1.0),
        "{text}"
    );
    // 3 single (the invalid one is not looked up) + 3 in the valid batch.
    assert_eq!(m("envid_ips_looked_up_total"), Some(6.0), "{text}");
    assert_eq!(m("envid_registry_version"), Some(1.0), "{text}");
    assert_eq!(m("envid_registry_records"), Some(10.0), "{text}");
    assert!(
        text.contains("# TYPE envid_http_requests counter"),
        "{text}"
    );

    // The scrape itself shows up in the next one.
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(
            &text,
            r#"envid_http_requests_total{endpoint="metrics",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    server.shutdown();
}
