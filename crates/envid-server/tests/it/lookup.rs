//! Lookups over real HTTP: single and batch, CIDR matching, most specific
//! wins, IPv6, unknown IPs, and every kind of bad request.

use crate::common;

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

#[test]
fn cidr_match_and_most_specific_wins() {
    let server = serve_example();
    let a = server.local_addr();
    // Only the /16 contains it.
    let r = get(a, "/v1/hosts/10.8.2.9");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["cidr"], "10.8.0.0/16");
    // The /24 is narrower than the /16 (and the /8).
    let r = get(a, "/v1/hosts/10.8.1.9");
    assert_eq!(r.json()["cidr"], "10.8.1.0/24");
    assert_eq!(r.json()["app"], "flight_order");
    // The single IP beats every range containing it.
    let r = get(a, "/v1/hosts/10.8.1.77");
    let j = r.json();
    assert_eq!(j["ip"], "10.8.1.77");
    assert_eq!(j["env"], "betanoah");
    assert_eq!(j["env_type"], "beta");
    assert_eq!(j["k8s"]["namespace"], "flight");
    assert_eq!(j["release"]["batch"], 2);
    assert!(j.get("cidr").is_none());
    // Only the /8.
    let r = get(a, "/v1/hosts/10.200.3.4");
    assert_eq!(r.json()["cidr"], "10.0.0.0/8");
    assert_eq!(r.json()["env"], "dev");
    server.shutdown();
}

#[test]
fn ipv6_single_and_ranges() {
    let server = serve_example();
    let a = server.local_addr();
    let r = get(a, "/v1/hosts/2001:db8::10");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["app"], "pay_gateway");
    // Non-canonical spelling of the same address.
    let r = get(a, "/v1/hosts/2001:0DB8:0:0::10");
    assert_eq!(r.json()["app"], "pay_gateway");
    let r = get(a, "/v1/hosts/2001:db8:5:1::abcd");
    assert_eq!(r.json()["cidr"], "2001:db8:5:1::/64");
    let r = get(a, "/v1/hosts/2001:db8:5:2::1");
    assert_eq!(r.json()["cidr"], "2001:db8:5::/48");
    assert_eq!(get(a, "/v1/hosts/2001:db8:6::1").status, 404);
    // An IPv4-mapped IPv6 address is looked up as the IPv4 address.
    let r = get(a, "/v1/hosts/::ffff:10.0.0.5");
    assert_eq!(r.json()["app"], "flightqma");
    server.shutdown();
}

#[test]
fn unknown_ip_is_404_with_json_error() {
    let server = serve_example();
    let r = get(server.local_addr(), "/v1/hosts/192.168.1.1");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    assert!(r.error_message().contains("192.168.1.1"), "{}", r.body);
    server.shutdown();
}

#[test]
fn invalid_ip_in_path_is_400_naming_it() {
    let server = serve_example();
    let r = get(server.local_addr(), "/v1/hosts/10.0.0.300");
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_ip");
    assert!(r.error_message().contains("10.0.0.300"), "{}", r.body);
    server.shutdown();
}

#[test]
fn batch_lookup_mixes_hits_and_nulls_in_request_order() {
    let server = serve_example();
    let ips = [
        "10.8.1.77",
        "192.168.1.1",
        "10.8.1.9",
        "2001:db8::10",
        "10.8.1.77",
    ];
    let r = lookup(server.local_addr(), &ips);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let hosts = j["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 4, "duplicates answered once: {}", r.body);
    assert_eq!(hosts["10.8.1.77"]["env"], "betanoah");
    assert!(hosts["192.168.1.1"].is_null());
    assert_eq!(hosts["10.8.1.9"]["cidr"], "10.8.1.0/24");
    assert_eq!(hosts["2001:db8::10"]["app"], "pay_gateway");
    // Keys come back in request order (first occurrence); serde_json's map
    // sorts, so look at the raw body.
    let pos = |ip: &str| r.body.find(&format!("\"{ip}\":")).unwrap();
    assert!(pos("10.8.1.77") < pos("192.168.1.1"), "{}", r.body);
    assert!(pos("192.168.1.1") < pos("10.8.1.9"), "{}", r.body);
    assert!(pos("10.8.1.9") < pos("2001:db8::10"), "{}", r.body);
    server.shutdown();
}

#[test]
fn batch_of_exactly_the_limit_is_accepted_and_one_more_refused() {
    let server = serve_example();
    let a = server.local_addr();
    let ips: Vec<String> = (0..1001)
        .map(|i| format!("10.9.{}.{}", i / 250, i % 250))
        .collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let r = lookup(a, &refs[..1000]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["hosts"].as_object().unwrap().len(), 1000);
    let r = lookup(a, &refs);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "too_many_ips");
    let msg = r.error_message();
    assert!(msg.contains("1001") && msg.contains("1000"), "{msg}");
    server.shutdown();
}

#[test]
fn empty_batch_is_an_empty_answer() {
    let server = serve_example();
    let r = lookup(server.local_addr(), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"hosts": {}}));
    server.shutdown();
}

#[test]
fn env_type_is_filled_from_the_alias_table_when_the_record_has_none() {
    let server = serve_example();
    let a = server.local_addr();
    let r = get(a, "/v1/hosts/10.0.0.5");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["env"], "beta");
    assert_eq!(r.json()["env_type"], "beta", "{}", r.body);
    let r = request(
        a,
        "PUT",
        "/v1/hosts/192.0.2.77",
        &[OPERATOR_AUTH],
        br#"{"env": "PROD", "idc": "cn0", "lease_seconds": 60}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(a, "/v1/hosts/192.0.2.77");
    assert_eq!(r.json()["env_type"], "prod", "{}", r.body);
    server.shutdown();
}

#[test]
fn invalid_ip_in_batch_is_400_naming_it() {
    let server = serve_example();
    let r = lookup(server.local_addr(), &["10.0.0.5", "not-an-ip", "10.0.0.6"]);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_ip");
    assert!(r.error_message().contains("not-an-ip"), "{}", r.body);
    assert!(r.error_message().contains("index 1"), "{}", r.body);

    // Every bad IP is named, up to 20, with the count of the rest.
    let mut ips: Vec<String> = (0..30).map(|i| format!("bad-{i}")).collect();
    ips.insert(0, "10.0.0.5".into());
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let r = lookup(server.local_addr(), &refs);
    assert_eq!(r.status, 400);
    let m = r.error_message();
    assert!(m.starts_with("30 invalid IP addresses of 31: "), "{m}");
    assert!(
        m.contains("\"bad-0\" at index 1") && m.contains("\"bad-19\""),
        "{m}"
    );
    assert!(
        !m.contains("\"bad-20\"") && m.ends_with(" and 10 more"),
        "{m}"
    );
    server.shutdown();
}

#[test]
fn bad_json_is_400() {
    let server = serve_example();
    let a = server.local_addr();
    for body in [
        "{\"ips\": [",
        "not json",
        "{\"addresses\": []}",
        "{\"ips\": [1, 2]}",
        "",
    ] {
        let r = post_json(a, "/v1/hosts/lookup", body);
        assert_eq!(r.status, 400, "body {body:?}: {}", r.body);
        assert_eq!(r.error_code(), "invalid_json", "body {body:?}");
        assert!(r.error_message().contains("ips"), "{}", r.body);
    }
    server.shutdown();
}

#[test]
fn oversized_body_is_413() {
    let mut config = config(example_registry());
    config.max_body_bytes = 1024;
    let server = envid_server::spawn(config).unwrap();
    let a = server.local_addr();
    let ips: Vec<String> = (0..200).map(|i| format!("10.1.1.{}", i % 250)).collect();
    let body = serde_json::json!({ "ips": ips }).to_string();
    assert!(body.len() > 1024);
    let r = post_json(a, "/v1/hosts/lookup", &body);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error_code(), "body_too_large");
    assert!(r.error_message().contains("1024"), "{}", r.body);
    // A small one still works on the same server.
    assert_eq!(lookup(a, &["10.0.0.5"]).status, 200);
    server.shutdown();
}

#[test]
fn unknown_path_and_wrong_method_get_json_errors() {
    let server = serve_example();
    let a = server.local_addr();
    let r = get(a, "/v2/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = request(a, "DELETE", "/v1/hosts/lookup", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "method_not_allowed");
    server.shutdown();
}

#[test]
fn healthz() {
    let server = serve_example();
    let r = get(server.local_addr(), "/healthz");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["version"], 1);
    assert_eq!(j["records"], 10);
    server.shutdown();
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = serve_example();
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for ip in ["10.0.0.5", "10.5.0.21"] {
        write!(s, "GET /v1/hosts/{ip} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        assert!(String::from_utf8(body).unwrap().contains(ip));
    }
    server.shutdown();
}
