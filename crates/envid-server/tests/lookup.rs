//! Lookups over real HTTP: single and batch, CIDR matching, most specific
//! wins, IPv6, unknown IPs, and every kind of bad request.

mod common;

use common::*;

#[test]
fn single_ip_record() {
    let server = serve_example();
    let r = get(server.local_addr(), "/v1/hosts/10.0.0.5");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let j = r.json();
    assert_eq!(j["ip"], "10.0.0.5");
    assert_eq!(j["app"], "flightqma");
    assert_eq!(j["env"], "beta");
    assert_eq!(j["idc"], "cn0");
    assert_eq!(j["platform"], "kvm");
    assert_eq!(j["hostname"], "l-flightqma9.f.beta.cn0");
    assert!(j.get("token").is_none());
    server.shutdown();
}
