//! The embedded store across crashes: every acknowledged registration
//! survives `kill -9`, and a replica's version from a run that crashed or
//! whose file was corrupt gets `410`, never a delta from another history.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::etcd::Service;
use common::{example_registry, get, request, wait_until, Resp};

fn put(a: SocketAddr, ip: &str, app: &str, lease: u64) -> Resp {
    let body = serde_json::json!({"app": app, "env": "beta", "idc": "cn0", "lease_seconds": lease});
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn history_version(a: SocketAddr) -> (String, u64) {
    let h = get(a, "/healthz").json();
    (
        h["history"].as_str().unwrap().to_string(),
        h["version"].as_u64().unwrap(),
    )
}

#[test]
fn kill_9_mid_burst_keeps_every_acknowledged_registration_and_changes_history() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let registry = example_registry();
    let args = [
        "--registry",
        registry.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let svc = Service::spawn(&args);
    let a = svc.addr;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let acked = acked.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                for i in 0..125 {
                    let ip = format!("10.{}.0.{}", 100 + t, i);
                    let ok = std::panic::catch_unwind(|| put(a, &ip, "burst", 600).status == 200)
                        .unwrap_or(false);
                    if ok {
                        acked.lock().unwrap().push(ip);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    wait_until("250 acknowledgements", Duration::from_secs(60), || {
        count.load(Ordering::SeqCst) >= 250
    });
    // What a replica saw last (possibly not on disk yet).
    let (h0, seen) = history_version(a);
    svc.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 250);

    let svc = Service::spawn(&args);
    let a = svc.addr;
    for ip in &acked {
        let r = get(a, &format!("/v1/hosts/{ip}"));
        assert_eq!(r.status, 200, "{ip} was acknowledged, then lost");
    }
    let (h1, _) = history_version(a);
    assert_ne!(h0, h1, "a crashed run's versions are another history");
    let r = get(a, &format!("/v1/registry?since={seen}&history={h0}"));
    assert_eq!(r.status, 410, "{}", r.body);
    let r = get(a, &format!("/v1/registry?since={h0}:{seen}"));
    assert_eq!(r.status, 410, "{}", r.body);

    // A clean stop keeps the history: a replica's since still means the same.
    assert_eq!(put(a, "192.0.2.1", "x", 600).status, 200);
    let (h1, v1) = history_version(a);
    svc.stop();
    let svc = Service::spawn(&args);
    let (h2, v2) = history_version(svc.addr);
    assert_eq!(h1, h2);
    assert!(v2 > v1);
    svc.kill9();

    // A corrupt file: moved aside, a new history, the old since is 410.
    std::fs::write(&state, b"{\"schema\": 2, \"vers").unwrap();
    let svc = Service::spawn(&args);
    let a = svc.addr;
    let (h3, _) = history_version(a);
    assert_ne!(h3, h2);
    assert!(dir.path().join("state.json.corrupt").exists());
    let r = get(a, &format!("/v1/registry?since={h2}:{v2}"));
    assert_eq!(r.status, 410, "{}", r.body);
    let m = get(a, "/metrics").body;
    assert_eq!(
        common::metric(&m, "envid_store_errors_total{kind=\"corrupt\"}"),
        Some(1.0),
        "{m}"
    );
}
