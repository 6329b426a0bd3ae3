//! The etcd store against real etcd members on loopback (see
//! `common/etcd.rs`): several instances, failover, leases, compaction,
//! members lost and back, and `kill -9` of an instance mid-burst.

use crate::common;

/// The common config with registration open (these tests are about the
/// store, not who may register).
fn open_config() -> envid_server::Config {
    let mut c = common::config(common::example_registry());
    c.apps_path = None;
    c.insecure_open_registration = true;
    c
}

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::{Cluster, Service};
use common::{example_registry, get, request, wait_until, Resp};
use envid::replica::Replica;
use envid::ServiceConfig;
use envid_server::ServerHandle;

macro_rules! need_etcd {
    () => {
        if !envid_testkit::require_program("etcd", "the etcd store is tested on real members") {
            return;
        }
    };
}

fn instance(cluster: &Cluster, prefix: &str) -> ServerHandle {
    let mut c = open_config();
    c.etcd = cluster.endpoint_list();
    c.etcd_prefix = prefix.to_string();
    c.register_limit = 0;
    let svc = envid_server::spawn(c).expect("server starts");
    wait_ready(svc.local_addr());
    svc
}

fn wait_ready(a: SocketAddr) {
    wait_until("the instance lists etcd", Duration::from_secs(20), || {
        get(a, "/healthz").status == 200
    });
}

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

fn host(a: SocketAddr, ip: &str) -> Resp {
    get(a, &format!("/v1/hosts/{ip}"))
}

fn health(a: SocketAddr) -> serde_json::Value {
    get(a, "/healthz").json()
}

#[test]
fn two_instances_serve_one_registry_and_a_replica_fails_over() {
    need_etcd!();
    let cluster = Cluster::start(3);
    let a = instance(&cluster, "/envid/");
    let b = instance(&cluster, "/envid/");
    let (aa, ba) = (a.local_addr(), b.local_addr());
    // Both read the same file: it is written once, the histories agree.
    assert_eq!(health(aa)["history"], health(ba)["history"]);
    assert_eq!(cluster.get_prefix("/envid/static").len(), 2);
    let r = put(aa, "192.0.2.1", "one", 60);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("B answers A's registration", Duration::from_secs(5), || {
        host(ba, "192.0.2.1").status == 200
    });
    assert_eq!(host(ba, "192.0.2.1").json()["app"], "one");
    assert_eq!(host(ba, "10.0.0.5").status, 200, "static records on B");

    // A replica on A, then A goes away mid-stream: it goes on from B with
    // deltas (one snapshot in all) and ends where etcd is.
    let config = ServiceConfig::builder()
        .endpoint(a.base_url())
        .endpoint(b.base_url())
        .connect_timeout(Duration::from_millis(300))
        .per_phase_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let replica = Replica::builder(config)
        .poll_wait(Duration::from_secs(2))
        .backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
        .build()
        .unwrap();
    wait_until("the replica syncs", Duration::from_secs(5), || {
        replica.lookup("192.0.2.1".parse().unwrap()).is_some()
    });
    assert_eq!(put(aa, "192.0.2.2", "two", 60).status, 200);
    wait_until(
        "the replica gets a delta from A",
        Duration::from_secs(5),
        || replica.lookup("192.0.2.2".parse().unwrap()).is_some(),
    );
    drop(a);
    for i in 3..10 {
        assert_eq!(put(ba, &format!("192.0.2.{i}"), "b", 60).status, 200);
    }
    let r = request(ba, "DELETE", "/v1/hosts/192.0.2.1", &[], b"");
    assert_eq!(r.status, 204);
    let b_version = health(ba)["version"].as_u64().unwrap();
    wait_until(
        "the replica converges on B",
        Duration::from_secs(10),
        || replica.stats().version == b_version,
    );
    let stats = replica.stats();
    assert_eq!(stats.snapshots, 1, "failed over with deltas: {stats:?}");
    assert!(replica.lookup("192.0.2.1".parse().unwrap()).is_none());
    // The same records as etcd holds.
    let registered: BTreeSet<String> = cluster
        .get_prefix("/envid/hosts/")
        .into_iter()
        .map(|(k, _)| k.trim_start_matches("/envid/hosts/").to_string())
        .collect();
    let view = replica.view();
    let replica_ips: BTreeSet<String> = view
        .records()
        .filter(|r| {
            r.ip.is_some_and(|ip| ip.to_string().starts_with("192.0.2."))
        })
        .map(|r| r.ip.unwrap().to_string())
        .collect();
    assert_eq!(replica_ips, registered);
    let snapshot: envid::protocol::RegistrySnapshot =
        serde_json::from_str(&get(ba, "/v1/registry").body).unwrap();
    assert_eq!(view.len(), snapshot.records.len());
    assert_eq!(view.history(), snapshot.history.as_deref());
}

#[test]
fn leases_renewal_deregistration_and_compaction() {
    need_etcd!();
    let cluster = Cluster::start(1);
    let svc = instance(&cluster, "/t/");
    let a = svc.local_addr();
    // Expiry by etcd: the lease ends, etcd deletes, the watch shows it.
    assert_eq!(put(a, "192.0.2.1", "gone", 2).status, 200);
    assert_eq!(put(a, "192.0.2.2", "kept", 2).status, 200);
    let v = health(a)["version"].as_u64().unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let r = request(a, "POST", "/v1/hosts/192.0.2.2/renew", &[], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("etcd expires the lease", Duration::from_secs(10), || {
        host(a, "192.0.2.1").status == 404
    });
    assert_eq!(host(a, "192.0.2.2").json()["app"], "kept");
    let d = get(a, &format!("/v1/registry?since={v}")).json();
    assert_eq!(d["deletes"], serde_json::json!(["192.0.2.1"]));
    // etcd's minimum lease is 2 s, and the answer says so.
    let r = put(a, "192.0.2.5", "short", 1);
    assert_eq!(r.json()["lease_seconds"], 2, "{}", r.body);
    // Renewal of an unknown IP; deregistration twice.
    let r = request(a, "POST", "/v1/hosts/192.0.2.9/renew", &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_registered"));
    assert_eq!(
        request(a, "DELETE", "/v1/hosts/192.0.2.2", &[], b"").status,
        204
    );
    assert_eq!(
        request(a, "DELETE", "/v1/hosts/192.0.2.2", &[], b"").status,
        204
    );
    assert_eq!(host(a, "192.0.2.2").status, 404);
    // A since from another history is 410, never a delta.
    let r = get(
        a,
        &format!("/v1/registry?since={v}&history=0123456789abcdef"),
    );
    assert_eq!(r.status, 410);
    let h = health(a)["history"].as_str().unwrap().to_string();
    assert_eq!(get(a, &format!("/v1/registry?since={h}:{v}")).status, 200);
    // Compaction past the view's history: an old since is 410 after the
    // view re-lists (a watch from a compacted revision cannot resume).
    let old = health(a)["version"].as_u64().unwrap();
    for i in 0..5 {
        assert_eq!(put(a, &format!("192.0.2.{}", 20 + i), "c", 60).status, 200);
    }
    cluster.compact(cluster.revision());
    let svc2 = {
        let mut c = open_config();
        c.etcd = cluster.endpoint_list();
        c.etcd_prefix = "/t/".into();
        c.history_limit = 2;
        let s = envid_server::spawn(c).unwrap();
        wait_ready(s.local_addr());
        s
    };
    let r = get(svc2.local_addr(), &format!("/v1/registry?since={old}"));
    assert_eq!(r.status, 410, "{}", r.body);
}

#[test]
fn one_member_lost_is_nothing_two_lost_is_stale_reads_and_503_writes() {
    need_etcd!();
    let mut cluster = Cluster::start(3);
    let svc = instance(&cluster, "/envid/");
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "x", 60).status, 200);
    cluster.kill(0);
    let r = put(a, "192.0.2.2", "y", 60);
    assert_eq!(r.status, 200, "one member down: {}", r.body);
    let started = Instant::now();
    wait_until("the view shows it", Duration::from_secs(10), || {
        host(a, "192.0.2.2").status == 200
    });
    eprintln!("visible after {:?}", started.elapsed());
    cluster.kill(1);
    // No quorum: writes 503 + Retry-After; reads and long polls answered.
    let started = Instant::now();
    let r = put(a, "192.0.2.3", "z", 60);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(host(a, "192.0.2.1").status, 200);
    assert_eq!(host(a, "10.0.0.5").status, 200);
    let v = health(a)["version"].as_u64().unwrap();
    let r = get(a, &format!("/v1/registry?since={v}&wait=1"));
    assert_eq!(r.status, 200);
    assert_eq!(get(a, "/v1/registry").status, 200);
    wait_until("/healthz says stale", Duration::from_secs(10), || {
        health(a)["status"] == "stale"
    });
    let m = get(a, "/metrics").body;
    assert_eq!(common::metric(&m, "envid_store_stale"), Some(1.0), "{m}");
    // Members back: writes work again, without a restart.
    cluster.restart(0);
    cluster.restart(1);
    cluster.wait_healthy(Duration::from_secs(30));
    wait_until("writes commit again", Duration::from_secs(20), || {
        put(a, "192.0.2.3", "z", 60).status == 200
    });
    wait_until("/healthz says ok", Duration::from_secs(10), || {
        health(a)["status"] == "ok"
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while host(a, "192.0.2.3").status != 200 {
        if Instant::now() > deadline {
            let m = get(a, "/metrics").body;
            panic!(
                "not visible: {} rev {} {m}",
                get(a, "/healthz").body,
                cluster.revision()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_instance_started_while_etcd_is_down_waits_and_says_why() {
    need_etcd!();
    let mut cluster = Cluster::start(1);
    cluster.kill(0);
    let mut c = open_config();
    c.etcd = cluster.endpoint_list();
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();
    std::thread::sleep(Duration::from_millis(500));
    let r = get(a, "/healthz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["status"], "starting");
    assert!(r.json()["reason"].as_str().is_some());
    assert_eq!(host(a, "10.0.0.5").status, 503);
    cluster.restart(0);
    wait_ready(a);
    assert_eq!(host(a, "10.0.0.5").status, 200);
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_registration() {
    need_etcd!();
    let cluster = Cluster::start(3);
    let registry = example_registry();
    let endpoints = cluster.endpoints();
    let args = [
        "--registry",
        registry.to_str().unwrap(),
        "--etcd",
        &endpoints,
    ];
    let svc = Service::spawn(&args);
    let a = svc.addr;
    wait_ready(a);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let acked = acked.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                for i in 0..125 {
                    let ip = format!("10.{}.{}.{}", 100 + t, i / 250, i % 250);
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
    svc.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 250);
    let held: BTreeSet<String> = cluster
        .get_prefix("/envid/hosts/")
        .into_iter()
        .map(|(k, _)| k.trim_start_matches("/envid/hosts/").to_string())
        .collect();
    for ip in &acked {
        assert!(held.contains(ip), "{ip} acknowledged, not in etcd");
    }
    let svc = Service::spawn(&args);
    wait_ready(svc.addr);
    for ip in &acked {
        assert_eq!(
            host(svc.addr, ip).status,
            200,
            "{ip} acknowledged, not served"
        );
    }
}
