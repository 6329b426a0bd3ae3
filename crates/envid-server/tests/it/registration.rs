//! Registration over real HTTP: leases and renewals, deregistration, the
//! per-(caller, IP) limit, load shedding, validation, persistence across
//! restarts, and metrics. These register as the operator (any IP, any app);
//! who may register what is tests/trust.rs.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn put_as(addr: SocketAddr, ip: &str, body: serde_json::Value, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request(
        addr,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &headers,
        body.to_string().as_bytes(),
    )
}

fn put(addr: SocketAddr, ip: &str, app: &str, lease: u64) -> Resp {
    let body = serde_json::json!({"app": app, "env": "beta", "idc": "cn0", "lease_seconds": lease});
    put_as(addr, ip, body, Some(OPERATOR))
}

fn renew(addr: SocketAddr, ip: &str) -> Resp {
    request(
        addr,
        "POST",
        &format!("/v1/hosts/{ip}/renew"),
        &[OPERATOR_AUTH],
        b"",
    )
}

fn delete(addr: SocketAddr, ip: &str) -> Resp {
    request(
        addr,
        "DELETE",
        &format!("/v1/hosts/{ip}"),
        &[OPERATOR_AUTH],
        b"",
    )
}

fn host(addr: SocketAddr, ip: &str) -> Resp {
    get(addr, &format!("/v1/hosts/{ip}"))
}

#[test]
fn unrenewed_lease_expires_renewed_one_stays() {
    let svc = serve_example();
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "gone", 1).status, 200);
    assert_eq!(put(a, "192.0.2.2", "kept", 1).status, 200);
    let v = get(a, "/healthz").json()["version"].as_u64().unwrap();
    assert_eq!(host(a, "192.0.2.1").json()["app"], "gone");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        assert_eq!(renew(a, "192.0.2.2").status, 200);
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = host(a, "192.0.2.1");
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(host(a, "192.0.2.2").json()["app"], "kept");
    // The expiry is a version with a delete.
    let r = get(a, &format!("/v1/registry?since={v}"));
    assert!(r.body.contains("\"deletes\":[\"192.0.2.1\"]"), "{}", r.body);
    assert_eq!(renew(a, "192.0.2.1").status, 404);
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_lease_expiries_total"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "envid_renewals_total").unwrap() >= 5.0,
        "{text}"
    );
}

#[test]
fn renew_unknown_is_404_and_deregister_is_idempotent() {
    let svc = serve_example();
    let a = svc.local_addr();
    let r = renew(a, "192.0.2.99");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_registered"));
    assert_eq!(delete(a, "192.0.2.99").status, 204);
    assert_eq!(put(a, "192.0.2.99", "app", 60).status, 200);
    assert_eq!(delete(a, "192.0.2.99").status, 204);
    assert_eq!(delete(a, "192.0.2.99").status, 204);
    assert_eq!(host(a, "192.0.2.99").status, 404);
    // A renewal body is empty or `{}`: it cannot change the lease.
    assert_eq!(put(a, "192.0.2.98", "app", 60).status, 200);
    let renew_with = |body: &[u8]| {
        request(
            a,
            "POST",
            "/v1/hosts/192.0.2.98/renew",
            &[OPERATOR_AUTH],
            body,
        )
    };
    let r = renew_with(br#"{"lease_seconds": 120}"#);
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_json"));
    for bad in [&b"[]"[..], b"null", b"{} {}", b"{\"a\":1}"] {
        assert_eq!(
            renew_with(bad).status,
            400,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let r = renew_with(b"{}");
    assert_eq!(r.json()["lease_seconds"], 60, "{}", r.body);
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_registrations_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "envid_deregistrations_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "envid_registry_registrations"),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn static_records_are_never_replaced_or_removed_by_registration() {
    let svc = serve_example();
    let a = svc.local_addr();
    let before = host(a, "10.0.0.5").json();
    let body = serde_json::json!({"app": "dyn", "env": "prod", "idc": "cn9", "lease_seconds": 60});
    // Not even by an operator; IPv4-mapped IPv6 is the same host.
    for ip in ["10.0.0.5", "::ffff:10.0.0.5"] {
        let r = put_as(a, ip, body.clone(), Some(OPERATOR));
        assert_eq!((r.status, r.error_code().as_str()), (409, "static_record"));
        assert!(r.error_message().contains("10.0.0.5"), "{}", r.body);
        assert!(r.error_message().contains("flightqma"), "{}", r.body);
        let r = delete(a, ip);
        assert_eq!((r.status, r.error_code().as_str()), (409, "static_record"));
        assert!(r.error_message().contains("registry file"), "{}", r.body);
    }
    assert_eq!(host(a, "10.0.0.5").json(), before);
    assert_eq!(get(a, "/healthz").json()["version"], 1);
}

#[test]
fn fourth_registration_in_a_window_is_429_while_renewals_work() {
    let svc = serve_example();
    let a = svc.local_addr();
    for _ in 0..3 {
        assert_eq!(put(a, "192.0.2.7", "loop", 60).status, 200);
    }
    let r = put(a, "192.0.2.7", "loop", 60);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "rate_limited"),
        "{}",
        r.body
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // No work was done: the version did not move.
    let v = get(a, "/healthz").json()["version"].as_u64().unwrap();
    assert_eq!(put(a, "192.0.2.7", "loop", 60).status, 429);
    assert_eq!(get(a, "/healthz").json()["version"].as_u64().unwrap(), v);
    for _ in 0..10 {
        assert_eq!(renew(a, "192.0.2.7").status, 200);
    }
    // The limit counts the token's principal, not the body's app name:
    // another name on the IP is the same caller. Another IP has its own window.
    assert_eq!(put(a, "192.0.2.7", "other", 60).status, 429);
    assert_eq!(put(a, "192.0.2.8", "loop", 60).status, 200);
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_rate_limited_total{reason=\"registration\"}"),
        Some(3.0),
        "{text}"
    );
}

#[test]
fn window_frees_after_retry_after() {
    let mut c = config(example_registry());
    c.register_window = Duration::from_secs(1);
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    for _ in 0..3 {
        assert_eq!(put(a, "192.0.2.7", "loop", 60).status, 200);
    }
    let r = put(a, "192.0.2.7", "loop", 60);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(put(a, "192.0.2.7", "loop", 60).status, 200);
}

#[test]
fn bad_registrations_are_400() {
    let svc = serve_example();
    let a = svc.local_addr();
    let cases = [
        (
            serde_json::json!({"env": "beta", "idc": "cn0"}),
            "invalid_lease",
        ),
        (
            serde_json::json!({"env": "beta", "idc": "cn0", "lease_seconds": 0}),
            "invalid_lease",
        ),
        (
            serde_json::json!({"env": "beta", "idc": "cn0", "lease_seconds": 86401}),
            "invalid_lease",
        ),
        (
            serde_json::json!({"env": "beta", "idc": "cn0", "lease_seconds": "60"}),
            "invalid_lease",
        ),
        (
            serde_json::json!({"idc": "cn0", "lease_seconds": 60}),
            "invalid_record",
        ),
        (
            serde_json::json!({"env": " ", "idc": "cn0", "lease_seconds": 60}),
            "invalid_record",
        ),
        (
            serde_json::json!({"env": "b", "idc": "cn0", "lease_seconds": 60, "token": "x"}),
            "invalid_record",
        ),
        (
            serde_json::json!({"env": "b", "idc": "cn0", "lease_seconds": 60, "cidr": "192.0.2.0/24"}),
            "invalid_record",
        ),
        (
            serde_json::json!({"env": "b", "idc": "cn0", "lease_seconds": 60, "ip": "192.0.2.2"}),
            "invalid_record",
        ),
        (
            serde_json::json!({"env": "b", "idc": "cn0", "lease_seconds": 60, "evn": "x"}),
            "invalid_record",
        ),
        (serde_json::json!([1, 2]), "invalid_json"),
    ];
    for (body, code) in cases {
        let r = put_as(a, "192.0.2.1", body.clone(), Some(OPERATOR));
        assert_eq!(
            (r.status, r.error_code()),
            (400, code.to_string()),
            "{body}: {}",
            r.body
        );
    }
    let r = put(a, "not-an-ip", "x", 60);
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_ip"));
    // None of these did any work.
    assert_eq!(get(a, "/healthz").json()["version"], 1);
    // A matching ip in the body is fine.
    let body =
        serde_json::json!({"env": "b", "idc": "cn0", "lease_seconds": 60, "ip": "192.0.2.1"});
    assert_eq!(put_as(a, "192.0.2.1", body, Some(OPERATOR)).status, 200);
}

#[test]
fn overload_is_shed_with_429_but_not_health_or_long_polls() {
    let mut c = config(example_registry());
    c.max_in_flight = 1;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    // A long poll waiting does not take the one slot.
    let poll = std::thread::spawn(move || get(a, "/v1/registry?since=1&wait=2"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(host(a, "10.0.0.5").status, 200);
    // A request whose body is still arriving holds the slot.
    let hold_slot = || {
        let mut stuck = TcpStream::connect(a).unwrap();
        stuck
            .write_all(
                b"POST /v1/hosts/lookup HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ips\"",
            )
            .unwrap();
        stuck.set_nonblocking(true).unwrap();
        stuck
    };
    let mut stuck = hold_slot();
    wait_until("the slot to be taken", Duration::from_secs(5), || {
        if host(a, "10.0.0.5").status == 429 {
            return true;
        }
        // A probe that got in first sheds the held request instead: its
        // answer is already there. Hold the slot again.
        if stuck.read(&mut [0u8; 64]).is_ok() {
            stuck = hold_slot();
        }
        false
    });
    let r = host(a, "10.0.0.5");
    assert_eq!((r.status, r.error_code().as_str()), (429, "overloaded"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(get(a, "/healthz").status, 200);
    drop(stuck);
    wait_until("the slot to be free", Duration::from_secs(5), || {
        host(a, "10.0.0.5").status == 200
    });
    assert_eq!(poll.join().unwrap().status, 200);
    let text = get(a, "/metrics").body;
    assert!(metric(&text, "envid_rate_limited_total{reason=\"overload\"}").unwrap() >= 2.0);
}

#[test]
fn every_registration_has_an_id_of_its_own_kept_by_renewals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(example_registry());
    c.state_path = Some(dir.path().join("state.json"));
    c.register_limit = 0;
    let svc = envid_server::spawn(c.clone()).unwrap();
    let a = svc.local_addr();
    let id = |a| {
        host(a, "192.0.2.7").json()["registration"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(put(a, "192.0.2.7", "first", 600).status, 200);
    let first = id(a).expect("a registered record names its registration");
    assert!(
        first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    assert_eq!(renew(a, "192.0.2.7").status, 200);
    assert_eq!(id(a).as_deref(), Some(first.as_str()), "a renewal keeps it");
    // The same IP registered again (another host, or the same after a
    // restart) is another registration, even with the same content.
    assert_eq!(put(a, "192.0.2.7", "first", 600).status, 200);
    let second = id(a).unwrap();
    assert_ne!(second, first);
    // Snapshots carry it; static records have none.
    let snapshot = get(a, "/v1/registry").json();
    let records = snapshot["records"].as_array().unwrap();
    let mine = records.iter().find(|r| r["ip"] == "192.0.2.7").unwrap();
    assert_eq!(mine["registration"], second.as_str());
    assert!(records
        .iter()
        .filter(|r| r["ip"] != "192.0.2.7")
        .all(|r| r.get("registration").is_none()));
    // A client cannot choose it.
    let body = serde_json::json!({"app": "x", "env": "beta", "idc": "cn0", "lease_seconds": 60, "registration": "mine"});
    assert_eq!(put_as(a, "192.0.2.8", body, Some(OPERATOR)).status, 400);
    svc.shutdown();
    let svc = envid_server::spawn(c).unwrap();
    assert_eq!(
        id(svc.local_addr()).as_deref(),
        Some(second.as_str()),
        "kept on disk"
    );
}

#[test]
fn registrations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut c = config(example_registry());
    c.state_path = Some(state.clone());
    let svc = envid_server::spawn(c.clone()).unwrap();
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "kept", 600).status, 200);
    assert_eq!(put(a, "192.0.2.2", "short", 1).status, 200);
    assert_eq!(put(a, "192.0.2.3", "removed", 600).status, 200);
    assert_eq!(delete(a, "192.0.2.3").status, 204);
    let v = get(a, "/healthz").json()["version"].as_u64().unwrap();
    // Acknowledged means on disk: the log beside the state file holds
    // every change already.
    let log = std::fs::read_to_string(dir.path().join("state.json.log")).unwrap();
    assert!(
        log.contains("kept") && log.contains("\"op\":\"delete\""),
        "{log}"
    );
    svc.shutdown();
    std::thread::sleep(Duration::from_millis(1100)); // the 1 s lease ends while down
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    assert_eq!(host(a, "192.0.2.1").json()["app"], "kept");
    assert_eq!(host(a, "192.0.2.2").status, 404);
    assert_eq!(host(a, "192.0.2.3").status, 404);
    assert_eq!(renew(a, "192.0.2.1").status, 200);
    // Versions continue past the previous run's, so its replicas re-sync.
    let v2 = get(a, "/healthz").json()["version"].as_u64().unwrap();
    assert!(v2 > v, "{v2} > {v}");
    assert_eq!(get(a, &format!("/v1/registry?since={v}")).status, 410);
}

#[test]
fn corrupt_state_file_starts_empty_and_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut c = config(example_registry());
    c.state_path = Some(state.clone());
    // A good file, then the same file cut in half (a torn write).
    {
        let svc = envid_server::spawn(c.clone()).unwrap();
        assert_eq!(put(svc.local_addr(), "192.0.2.1", "a", 600).status, 200);
        svc.shutdown();
    }
    let good = std::fs::read(&state).unwrap();
    // Each corrupt file is kept, beside (never over) an earlier one.
    for (bad, aside) in [
        (&good[..good.len() / 2], "state.json.corrupt"),
        (b"\x00\xffgarbage".as_slice(), "state.json.corrupt.1"),
    ] {
        std::fs::write(&state, bad).unwrap();
        let svc = envid_server::spawn(c.clone()).unwrap();
        let a = svc.local_addr();
        assert_eq!(host(a, "192.0.2.1").status, 404);
        assert_eq!(host(a, "10.0.0.5").status, 200, "static records serve");
        let aside = dir.path().join(aside);
        assert_eq!(std::fs::read(&aside).unwrap(), bad);
        // Registering works and writes a fresh, good file.
        assert_eq!(put(a, "192.0.2.4", "b", 600).status, 200);
        svc.shutdown();
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains("192.0.2.4"), "{text}");
    }
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}
