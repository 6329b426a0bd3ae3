//! Replica mode and registration against the real reference service on
//! 127.0.0.1: snapshot then deltas, 410 → snapshot again, a long poll woken
//! by a change, churn under concurrent readers, outage with the cache file,
//! prompt shutdown. Every service listens on an ephemeral loopback port and
//! every wait is bounded. Speed is measured in benches/replica.rs, never
//! asserted here: bounds below are an order of magnitude above the figures,
//! so a loaded machine cannot fail them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use envid::client::{ClientError, HttpTransport, Request, Transport};
use envid::lookup::LookupClient;
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};
use envid::replica::{Replica, ReplicaBuilder};
use envid::ServiceConfig;

const REGISTRY: &str = include_str!("../../testdata/registry-loopback.toml");

struct Service {
    _dir: tempfile::TempDir,
    handle: Option<envid_server::ServerHandle>,
}

impl Service {
    fn start(history_limit: usize) -> Service {
        Self::start_with(history_limit, |_| {})
    }

    fn start_with(history_limit: usize, tune: impl FnOnce(&mut envid_server::Config)) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        std::fs::write(&path, REGISTRY).unwrap();
        let mut config = envid_server::Config::new(&path);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.history_limit = history_limit;
        // These tests are about replication, not who may register (that is
        // crates/envid-server/tests/trust.rs): anyone may, for any IP.
        config.insecure_open_registration = true;
        tune(&mut config);
        config.drain_timeout = Duration::from_millis(500);
        let handle = envid_server::spawn(config).expect("service starts");
        Service {
            _dir: dir,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        self.handle.as_ref().unwrap().base_url()
    }

    fn stop(mut self) {
        self.handle.take().unwrap().shutdown();
    }

    fn registrar(&self) -> Registrar {
        Registrar::new(
            ServiceConfig::builder()
                .endpoint(self.url())
                .build()
                .unwrap(),
        )
    }

    /// The service's registry version, from its snapshot.
    fn version(&self) -> u64 {
        let body = ureq::get(format!("{}/v1/registry", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["version"].as_u64().unwrap()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn replica(url: &str) -> ReplicaBuilder {
    let config = ServiceConfig::builder()
        .endpoint(url)
        .connect_timeout(Duration::from_millis(300))
        .per_phase_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    Replica::builder(config)
        .poll_wait(Duration::from_secs(2))
        .backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
}

fn registration(app: &str, round: u64) -> Registration {
    let mut record: HostRecord = serde_json::from_value(serde_json::json!({
        "app": app,
        "env": "beta",
        "idc": "cn0",
        "hostname": format!("{app}-host"),
        "labels": {"round": round.to_string(), "app": app},
    }))
    .unwrap();
    record.ip = None;
    Registration {
        record,
        lease: Duration::from_secs(3600),
    }
}

/// Registers, waiting out `429`s as the service asks.
fn register(reg: &Registrar, ip: IpAddr, r: &Registration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reg.register(ip, r) {
            Ok(()) => return,
            Err(ClientError::RateLimited { retry_after, .. }) if Instant::now() < deadline => {
                thread::sleep(retry_after.unwrap_or(Duration::from_millis(100)))
            }
            Err(e) => panic!("register {ip}: {e}"),
        }
    }
}

/// Waits (bounded) until `cond` holds; returns how long it took.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

fn cache_path(dir: &Path) -> PathBuf {
    dir.join("replica-cache.json")
}

#[test]
fn snapshot_then_deltas() {
    let svc = Service::start(1000);
    let dir = tempfile::tempdir().unwrap();
    let r = replica(&svc.url())
        .cache_file(cache_path(dir.path()))
        .build()
        .unwrap();
    let s = r.stats();
    assert_eq!(s.snapshots, 1);
    assert_eq!(s.records, 5);
    assert_eq!(s.version, svc.version());
    assert!(!s.from_cache);
    assert!(s.age.unwrap() < Duration::from_secs(5));

    // Longest prefix, locally.
    assert_eq!(
        r.lookup(ip("10.0.0.5")).unwrap().app.as_deref(),
        Some("flightqma")
    );
    assert_eq!(
        r.lookup(ip("10.20.30.7")).unwrap().app.as_deref(),
        Some("hotel")
    );
    assert_eq!(
        r.lookup(ip("10.20.1.1")).unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert_eq!(
        r.lookup(ip("::ffff:10.20.1.1")).unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert_eq!(
        r.lookup(ip("2001:db8:42::9")).unwrap().app.as_deref(),
        Some("v6app")
    );
    assert!(r.lookup(ip("192.0.2.1")).is_none());

    // A registration arrives as a delta (an upsert) …
    let reg = svc.registrar();
    register(&reg, ip("10.20.30.40"), &registration("newapp", 1));
    wait_until("the upsert", Duration::from_secs(5), || {
        r.lookup(ip("10.20.30.40"))
            .and_then(|x| x.app.clone())
            .as_deref()
            == Some("newapp")
    });
    let rec = r.lookup(ip("10.20.30.40")).unwrap();
    assert_eq!(rec.ip, Some(ip("10.20.30.40")));
    assert_eq!(rec.labels.get("round").map(String::as_str), Some("1"));
    // … and a deregistration as a delete: the range answers again.
    reg.deregister(ip("10.20.30.40")).unwrap();
    reg.deregister(ip("10.20.30.40")).unwrap(); // idempotent
    wait_until("the delete", Duration::from_secs(5), || {
        r.lookup(ip("10.20.30.40"))
            .and_then(|x| x.app.clone())
            .as_deref()
            == Some("hotel")
    });
    wait_until("the version", Duration::from_secs(5), || {
        r.version() == svc.version()
    });
    let s = r.stats();
    assert_eq!(s.snapshots, 1, "deltas, not snapshots: {s:?}");
    assert!(s.deltas >= 2, "{s:?}");
    assert_eq!(s.sync_errors, 0, "{:?}", r.last_error());
    // Renewing an unknown IP says so; a known one is extended.
    assert!(!reg.renew(ip("10.20.30.40")).unwrap());
    register(&reg, ip("10.20.30.41"), &registration("newapp", 2));
    assert!(reg.renew(ip("10.20.30.41")).unwrap());
    drop(r);
    svc.stop();
}

#[test]
fn gone_fetches_the_snapshot_again() {
    let svc = Service::start(2);
    let r = replica(&svc.url()).background_sync(false).build().unwrap();
    let v0 = r.version();
    let reg = svc.registrar();
    for i in 0..6u8 {
        register(&reg, IpAddr::from([10, 5, 0, i]), &registration("gone", 1));
    }
    // The replica is 6 versions behind a service that keeps 2: 410 Gone.
    r.sync_once().unwrap();
    assert_eq!(r.version(), v0, "a 410 installs nothing");
    r.sync_once().unwrap();
    let s = r.stats();
    assert_eq!(s.snapshots, 2, "{s:?}");
    assert_eq!(s.version, svc.version());
    assert_eq!(s.sync_errors, 0, "{:?}", r.last_error());
    for i in 0..6u8 {
        assert_eq!(
            r.lookup(IpAddr::from([10, 5, 0, i]))
                .unwrap()
                .app
                .as_deref(),
            Some("gone")
        );
    }
    // Up to date now: the next poll is a delta again.
    register(&reg, ip("10.5.1.1"), &registration("gone", 2));
    r.sync_once().unwrap();
    assert_eq!(r.stats().snapshots, 2);
    assert_eq!(r.stats().deltas, 1);
    assert!(r.lookup(ip("10.5.1.1")).is_some());
    svc.stop();
}

#[test]
fn long_poll_wakes_before_its_wait_ends() {
    let svc = Service::start(1000);
    let r = replica(&svc.url())
        .poll_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let reg = svc.registrar();
    for i in 0..5u8 {
        // Let the sync thread park in its long poll (after the default
        // 200 ms `min_poll_interval` that follows the previous delta).
        thread::sleep(Duration::from_millis(300));
        let target = IpAddr::from([10, 6, 0, i]);
        register(&reg, target, &registration("wake", 1));
        // A poll that was not woken would bring the change only when its
        // 5 s wait ends; woken, it takes ~25 ms (benches/replica.rs, "long-poll
        // wake"), so 2 s tells the two apart without timing the wake.
        wait_until("the change", Duration::from_secs(2), || {
            r.lookup(target).is_some()
        });
    }
    svc.stop();
}

#[test]
fn registrar_gets_retry_after_on_the_fourth_put_and_renewals_still_work() {
    let svc = Service::start_with(1000, |c| c.register_window = Duration::from_secs(1));
    let reg = svc.registrar();
    let target = ip("10.7.0.1");
    let r = registration("crashloop", 1);
    for _ in 0..3 {
        reg.register(target, &r).unwrap();
    }
    let retry_after = match reg.register(target, &r) {
        Err(ClientError::RateLimited { retry_after, .. }) => retry_after.expect("Retry-After"),
        other => panic!("expected 429, got {other:?}"),
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1),
        "{retry_after:?}"
    );
    // Renewals are not limited.
    for _ in 0..5 {
        assert!(reg.renew(target).unwrap());
    }
    // Honouring Retry-After is enough for the next registration.
    thread::sleep(retry_after + Duration::from_millis(100));
    reg.register(target, &r).unwrap();
    svc.stop();
}

#[test]
fn churn_readers_see_old_or_new_never_torn() {
    const IPS: u8 = 250;
    const ROUNDS: u64 = 4;
    let svc = Service::start(100_000);
    // Each round deletes every registration at once: a mass deletion that
    // protection would hold (tests/replica_protection.rs); here the subject
    // is torn reads, so every delete must apply.
    let r = Arc::new(replica(&svc.url()).protection(false).build().unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let ip_of = |i: u8| IpAddr::from([10, 99, 1, i]);

    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (r, done, lookups) = (r.clone(), done.clone(), lookups.clone());
            thread::spawn(move || {
                // Per IP, the highest round seen: rounds never go backwards.
                let mut seen: HashMap<u8, u64> = HashMap::new();
                let mut n = 0u64;
                let mut i = t as u8;
                while !done.load(Ordering::Relaxed) {
                    i = i.wrapping_add(7) % IPS;
                    let rec = r
                        .lookup(ip_of(i))
                        .expect("the 10.99.0.0/16 range always answers");
                    n += 1;
                    match rec.app.as_deref() {
                        Some("base") => assert_eq!(rec.cidr, Some("10.99.0.0/16".parse().unwrap())),
                        Some(app) => {
                            // One registration, whole: app, hostname, labels and key agree.
                            let round: u64 = app.strip_prefix("churn-r").unwrap().parse().unwrap();
                            assert_eq!(rec.ip, Some(ip_of(i)));
                            assert_eq!(rec.hostname.as_deref(), Some(&*format!("{app}-host")));
                            assert_eq!(rec.labels.get("round"), Some(&round.to_string()));
                            assert_eq!(rec.labels.get("app").map(String::as_str), Some(app));
                            let prev = seen.entry(i).or_insert(0);
                            assert!(round >= *prev, "IP {i}: round {round} after {prev}");
                            *prev = round;
                        }
                        None => panic!("record without app: {rec:?}"),
                    }
                }
                lookups.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();

    // 2,000 changes: each round registers every IP (a new app, so the
    // per-(app, IP) limit is never reached), and every other round is
    // followed by deleting them all again.
    let reg = svc.registrar();
    let start = Instant::now();
    let mut changes = 0;
    for round in 1..=ROUNDS {
        let app = format!("churn-r{round}");
        let reg_body = registration(&app, round);
        for i in 0..IPS {
            register(&reg, ip_of(i), &reg_body);
            changes += 1;
        }
        for i in 0..IPS {
            reg.deregister(ip_of(i)).unwrap();
            changes += 1;
        }
    }
    assert_eq!(changes, 2000);
    let writes = start.elapsed();
    let target = svc.version();
    let converge = wait_until("convergence", Duration::from_secs(10), || {
        r.version() >= target
    });
    done.store(true, Ordering::Relaxed);
    for h in readers {
        h.join()
            .expect("no reader saw a torn or out-of-order record");
    }
    assert_eq!(r.version(), svc.version());
    for i in 0..IPS {
        assert_eq!(r.lookup(ip_of(i)).unwrap().app.as_deref(), Some("base"));
    }
    let s = r.stats();
    println!(
        "churn: 2,000 changes in {writes:?}, converged {converge:?} after the last; {} lookups by 4 readers; {s:?}",
        lookups.load(Ordering::Relaxed)
    );
    assert_eq!(s.sync_errors, 0, "{:?}", r.last_error());
    drop(r);
    svc.stop();
}

#[test]
fn outage_keeps_serving_and_restart_reads_the_cache_file() {
    let svc = Service::start(1000);
    let url = svc.url();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_path(dir.path());
    let r = replica(&url)
        .cache_file(&cache)
        .cache_write_interval(Duration::ZERO)
        .build()
        .unwrap();
    register(&svc.registrar(), ip("10.7.0.1"), &registration("cached", 1));
    wait_until("the upsert", Duration::from_secs(5), || {
        r.lookup(ip("10.7.0.1")).is_some()
    });
    let version = r.version();
    // The delta reached the cache file too (written right after it).
    wait_until("the cache file", Duration::from_secs(5), || {
        std::fs::read_to_string(&cache).is_ok_and(|t| t.contains("10.7.0.1"))
    });

    svc.stop();
    // The running replica keeps answering, and counts the failed syncs.
    wait_until("a sync error", Duration::from_secs(10), || {
        r.stats().sync_errors > 0
    });
    assert_eq!(
        r.lookup(ip("10.7.0.1")).unwrap().app.as_deref(),
        Some("cached")
    );
    assert_eq!(
        r.lookup(ip("10.20.30.1")).unwrap().app.as_deref(),
        Some("hotel")
    );
    assert_eq!(r.version(), version);
    assert!(r.last_error().is_some());
    drop(r);

    // A new replica with the service still down starts from the cache file.
    let started = Instant::now();
    let r2 = replica(&url).cache_file(&cache).build().unwrap();
    let s = r2.stats();
    assert!(s.from_cache, "{s:?}");
    assert_eq!(s.version, version);
    assert_eq!(s.age, None, "never synced with the service");
    assert!(s.sync_errors >= 1);
    assert_eq!(
        r2.lookup(ip("10.7.0.1")).unwrap().app.as_deref(),
        Some("cached")
    );
    assert_eq!(
        r2.lookup(ip("10.20.1.1")).unwrap().app.as_deref(),
        Some("flight_order")
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(r2);

    // A corrupt cache file is reported and ignored.
    std::fs::write(
        &cache,
        b"{\"format\": \"envid-replica-1\", \"version\": 3, \"rec",
    )
    .unwrap();
    // Typed: the service's error and the file's problem, each as such.
    let e = replica(&url).cache_file(&cache).build().unwrap_err();
    match &e {
        ClientError::NoReplicaData {
            service, problem, ..
        } => {
            assert!(
                matches!(
                    **service,
                    ClientError::Connect { .. } | ClientError::Timeout { .. }
                ),
                "{e}"
            );
            assert!(
                matches!(problem, envid::client::CacheProblem::Corrupt(_)),
                "{e}"
            );
        }
        other => panic!("expected NoReplicaData, got {other:?}"),
    }
    let r3 = replica(&url)
        .cache_file(&cache)
        .require_initial_sync(false)
        .build()
        .unwrap();
    let s = r3.stats();
    assert_eq!(
        (s.records, s.cache_errors, s.from_cache),
        (0, 1, false),
        "{s:?}"
    );
    let msg = r3.last_error().unwrap();
    assert!(
        msg.contains("replica-cache.json") && msg.contains("not a replica cache"),
        "{msg}"
    );
    assert!(r3.lookup(ip("10.7.0.1")).is_none());
}

#[test]
fn drop_stops_the_sync_thread_promptly() {
    let svc = Service::start(1000);
    let r = replica(&svc.url())
        .poll_wait(Duration::from_secs(30))
        .build()
        .unwrap();
    thread::sleep(Duration::from_millis(100)); // parked in a long poll
    let start = Instant::now();
    drop(r);
    let took = start.elapsed();
    // The drop waits at most 250 ms for the thread, not for the 30 s poll.
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    // Dropped while backing off (service down): woken at once.
    let url = svc.url();
    svc.stop();
    let r = replica(&url)
        .require_initial_sync(false)
        .backoff(Duration::from_secs(20))
        .max_backoff(Duration::from_secs(20))
        .build()
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    drop(r);
    // Not the 20 s backoff.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
}

#[test]
fn bad_configuration_is_refused() {
    assert!(matches!(
        ServiceConfig::builder().build(),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        ServiceConfig::builder().endpoint("envsvc:7070").build(),
        Err(ClientError::InvalidEndpoint { .. })
    ));
}

/// Records every request, then hands it to the real HTTP transport.
struct Recording {
    inner: HttpTransport,
    seen: Mutex<Vec<String>>,
}

impl Transport for Recording {
    fn send(&self, r: &Request<'_>) -> Result<Option<Vec<u8>>, ClientError> {
        let poll = if r.long_poll.is_some() {
            " (long poll)"
        } else {
            ""
        };
        self.seen
            .lock()
            .unwrap()
            .push(format!("{:?} {}{poll}", r.method, r.path));
        self.inner.send(r)
    }
}

#[test]
fn all_three_clients_go_through_one_transport_seam() {
    let svc = Service::start(64);
    let config = ServiceConfig::builder()
        .endpoint(svc.url())
        .build()
        .unwrap();
    let t = Arc::new(Recording {
        inner: HttpTransport::new(&config),
        seen: Mutex::new(Vec::new()),
    });
    let registrar = Registrar::with_transport(config.clone(), t.clone());
    let me = ip("10.77.0.1");
    register(&registrar, me, &registration("seam", 1));
    assert!(registrar.renew(me).unwrap());
    let client = LookupClient::builder(config.clone())
        .build_with_transport(t.clone())
        .unwrap();
    assert_eq!(
        client.lookup(me).unwrap().unwrap().app.as_deref(),
        Some("seam")
    );
    assert_eq!(client.lookup_many(&[ip("10.0.0.5"), me]).len(), 2);
    let replica = Replica::builder(config)
        .background_sync(false)
        .poll_wait(Duration::from_secs(1))
        .build_with_transport(t.clone())
        .unwrap();
    assert_eq!(replica.lookup(me).unwrap().app.as_deref(), Some("seam"));
    replica.sync_once().unwrap();
    // Renewals and the removal name the registration the PUT got.
    let id = registrar.registration(me).expect("the PUT answered an id");
    registrar.deregister(me).unwrap();
    let seen = t.seen.lock().unwrap().clone();
    let v = replica.version();
    // The replica sends back the history its version belongs to.
    let h = replica
        .view()
        .history()
        .expect("the service names a history")
        .to_string();
    for want in [
        "Put /v1/hosts/10.77.0.1".to_string(),
        format!("Post /v1/hosts/10.77.0.1/renew?registration={id}"),
        "Get /v1/hosts/10.77.0.1".into(),
        "Post /v1/hosts/lookup".into(),
        "Get /v1/registry".into(),
        format!("Get /v1/registry?since={v}&wait=1&history={h} (long poll)"),
        format!("Delete /v1/hosts/10.77.0.1?registration={id}"),
    ] {
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }
    svc.stop();
}
