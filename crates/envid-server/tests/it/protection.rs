//! Protection against mass deletion, over real HTTP: a reload of an empty
//! or truncated registry file is refused and the old registry keeps
//! serving (said on `/healthz` and `/metrics`), `allow_mass_delete` applies
//! it; lease self-preservation holds leases when renewals collapse and
//! lets a few lapse normally. Counts are printed (`-- --nocapture`).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// A registry of `n` single-IP records.
fn registry(n: usize) -> String {
    let mut t = String::from("schema = 1\n");
    for i in 0..n {
        t.push_str(&format!(
            "[[records]]\nip = \"10.50.0.{}\"\napp = \"a{i}\"\nenv = \"prod\"\nidc = \"cn0\"\n",
            i + 1
        ));
    }
    t
}

fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn records(a: SocketAddr) -> u64 {
    get(a, "/healthz").json()["records"].as_u64().unwrap()
}

#[test]
fn empty_or_truncated_reload_is_refused_and_the_old_registry_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    let full = registry(10);
    write(&path, &full);
    let svc = envid_server::spawn(config(&path)).unwrap();
    let a = svc.local_addr();
    assert_eq!(records(a), 10);
    let v = get(a, "/healthz").json();
    assert!(v["reload_refused"].is_null(), "{v}");

    // An empty file.
    write(&path, "");
    wait_until("the refusal", Duration::from_secs(5), || {
        !get(a, "/healthz").json()["reload_refused"].is_null()
    });
    let h = get(a, "/healthz").json();
    assert_eq!(h["records"], 10, "{h}");
    assert_eq!(h["reload_refused"]["would_delete"], 10, "{h}");
    assert!(
        h["reload_refused"]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-mass-delete"),
        "{h}"
    );
    assert_eq!(get(a, "/v1/hosts/10.50.0.3").status, 200);
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_registry_reload_refused"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "envid_registry_reloads_total{result=\"refused\"}"),
        Some(1.0),
        "{text}"
    );
    println!("empty file: refused, still serving {} records", records(a));

    // A file cut in the middle: 10 records -> 3.
    let cut = &full[..full.find("10.50.0.4").unwrap()];
    let cut = &cut[..cut.rfind("[[records]]").unwrap()];
    write(&path, cut);
    wait_until("the second refusal", Duration::from_secs(5), || {
        get(a, "/healthz").json()["reload_refused"]["would_delete"] == 7
    });
    assert_eq!(records(a), 10);
    println!(
        "truncated file (3 of 10): refused, still serving {}",
        records(a)
    );

    // Half deleted is applied (not more than half).
    write(&path, &registry(5));
    wait_until("the reload", Duration::from_secs(5), || records(a) == 5);
    let h = get(a, "/healthz").json();
    assert!(h["reload_refused"].is_null(), "{h}");
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_registry_reload_refused"),
        Some(0.0),
        "{text}"
    );
    println!("half deleted (5 of 10): applied, serving {}", records(a));
    svc.shutdown();

    // The override applies an empty file.
    write(&path, &full);
    let mut c = config(&path);
    c.allow_mass_delete = true;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    write(&path, "");
    wait_until("the wipe", Duration::from_secs(5), || records(a) == 0);
    assert!(get(a, "/healthz").json()["reload_refused"].is_null());
    println!(
        "--allow-mass-delete: empty file applied, serving {}",
        records(a)
    );
}

fn put(a: SocketAddr, ip: &str, lease: u64) -> u16 {
    let body =
        serde_json::json!({"app": "fleet", "env": "beta", "idc": "cn0", "lease_seconds": lease});
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json"), OPERATOR_AUTH],
        body.to_string().as_bytes(),
    )
    .status
}

fn renew(a: SocketAddr, ip: &str) -> u16 {
    request(
        a,
        "POST",
        &format!("/v1/hosts/{ip}/renew"),
        &[OPERATOR_AUTH],
        b"",
    )
    .status
}

fn ip(i: usize) -> String {
    format!("192.0.2.{}", i + 1)
}

#[test]
fn lease_self_preservation_holds_a_collapse_and_lets_a_few_lapse() {
    const N: usize = 40;
    let mut c = config(example_registry());
    c.register_limit = 1000;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let statics = records(a);
    for i in 0..N {
        assert_eq!(put(a, &ip(i), 4), 200);
    }
    println!("before: {} records ({N} leases of 4 s)", records(a));

    // Nobody renews (the fleet cannot reach the service): all lapse within
    // one lease period. At most 15% may go before the collapse is seen
    // (the registrations were spread over the sweeps); the rest is held.
    wait_until("self-preservation", Duration::from_secs(10), || {
        !get(a, "/healthz").json()["lease_self_preservation"].is_null()
    });
    std::thread::sleep(Duration::from_millis(500));
    let h = get(a, "/healthz").json();
    let held = h["lease_self_preservation"]["held"].as_u64().unwrap();
    let lapsed = N as u64 - held;
    assert!(
        lapsed as f64 <= 0.15 * N as f64,
        "{lapsed} lapsed first: {h}"
    );
    assert_eq!(h["records"].as_u64().unwrap(), statics + held, "{h}");
    assert_eq!(h["lease_self_preservation"]["live"], held, "{h}");
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_lease_self_preservation"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "envid_leases_held"),
        Some(held as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, "envid_lease_expiries_total"),
        Some(lapsed as f64),
        "{text}"
    );
    println!(
        "renewals collapsed: {} records served, {held} leases held, {lapsed} lapsed first",
        h["records"]
    );
    // Still held a lease period later.
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(records(a), statics + held);

    // Renewals recover: all but the first 3 renew (a lease that lapsed
    // first answers 404); preservation ends and the unrenewed expire.
    let renewed: Vec<usize> = (3..N).filter(|&i| renew(a, &ip(i)) == 200).collect();
    assert!(renewed.len() as u64 >= held - 3, "{renewed:?}");
    wait_until("the end of preservation", Duration::from_secs(10), || {
        get(a, "/healthz").json()["lease_self_preservation"].is_null()
    });
    wait_until("the unrenewed expiries", Duration::from_secs(10), || {
        records(a) == statics + renewed.len() as u64
    });
    println!("renewals back: {} records (the unrenewed gone)", records(a));

    // Steady renewals with a few (3 and 4) lapsing: expired normally.
    let steady: Vec<usize> = renewed.iter().copied().filter(|&i| i >= 5).collect();
    let start = Instant::now();
    // Past one 4 s lease: the unrenewed ones lapse meanwhile.
    while start.elapsed() < Duration::from_millis(5000) {
        for &i in &steady {
            renew(a, &ip(i));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let h = get(a, "/healthz").json();
    assert!(h["lease_self_preservation"].is_null(), "{h}");
    assert_eq!(
        h["records"].as_u64().unwrap(),
        statics + steady.len() as u64,
        "{h}"
    );
    let text = get(a, "/metrics").body;
    assert_eq!(
        metric(&text, "envid_lease_expiries_total"),
        Some((N - steady.len()) as f64),
        "{text}"
    );
    println!("a few lapse: expired normally, {} records", h["records"]);
}

#[test]
fn preservation_can_be_turned_off() {
    let mut c = config(example_registry());
    c.register_limit = 1000;
    c.lease_preservation = false;
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    let statics = records(a);
    for i in 0..20 {
        assert_eq!(put(a, &ip(i), 1), 200);
    }
    wait_until("the expiries", Duration::from_secs(5), || {
        records(a) == statics
    });
    assert!(get(a, "/healthz").json()["lease_self_preservation"].is_null());
}
