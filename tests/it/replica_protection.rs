//! Protection against mass deletion, against the real reference service on
//! 127.0.0.1 (see README.md, "Protection against mass deletion"): a replica
//! of 1,000 records whose service is wiped, or loses 70% at once, keeps
//! answering all of them until the records come back; 20% deleted is
//! applied; a deploy that doubles then halves the fleet is no collapse; a
//! service that lost its state is refilled by registrants re-registering
//! on `404` while no replica drops below its protected view; the cache
//! file's age and problems are reported. Counts before, during and after are
//! printed (`cargo test --test it replica_protection -- --nocapture`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use envid::client::{CacheProblem, ClientError};
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration, Renewal};
use envid::replica::{CacheFileStatus, Replica, ReplicaBuilder};
use envid::ServiceConfig;

/// A registry file of `n` single-IP records, 10.100.x.y, starting at `first`.
fn registry(first: usize, n: usize) -> String {
    let mut t = String::from("schema = 1\n");
    for i in first..first + n {
        t.push_str(&format!(
            "[[records]]\nip = \"10.100.{}.{}\"\napp = \"app{i}\"\nenv = \"prod\"\nidc = \"cn0\"\n",
            i / 250,
            i % 250 + 1
        ));
    }
    t
}

fn nth(i: usize) -> IpAddr {
    format!("10.100.{}.{}", i / 250, i % 250 + 1)
        .parse()
        .unwrap()
}

/// Replaces the file atomically (the reloader never sees half a file).
pub(crate) fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The service these tests and tests/it/events.rs run against.
pub(crate) struct Service {
    dir: tempfile::TempDir,
    handle: Option<envid_server::ServerHandle>,
    pub(crate) addr: SocketAddr,
}

impl Service {
    /// A service on `text`, applying mass deletions (the replica is under test).
    pub(crate) fn start(text: &str, listen: Option<SocketAddr>) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        std::fs::write(&path, text).unwrap();
        let mut config = envid_server::Config::new(&path);
        // Replication under churn, not trust: registration open to the test.
        config.insecure_open_registration = true;
        config.listen = listen.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        config.reload_interval = Duration::from_millis(20);
        config.allow_mass_delete = true;
        config.drain_timeout = Duration::from_millis(200);
        config.register_limit = 1000;
        let handle = envid_server::spawn(config).expect("service starts");
        let addr = handle.local_addr();
        Service {
            dir,
            handle: Some(handle),
            addr,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("registry.toml")
    }

    fn records(&self) -> usize {
        let body = ureq::get(format!("{}/healthz", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["records"].as_u64().unwrap() as usize
    }

    pub(crate) fn stop(mut self) {
        self.handle.take().unwrap().shutdown();
    }
}

/// The connection settings of these tests and tests/it/events.rs.
pub(crate) fn config(url: &str) -> ServiceConfig {
    ServiceConfig::builder()
        .endpoint(url)
        .connect_timeout(Duration::from_millis(300))
        .per_phase_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn replica(url: &str) -> ReplicaBuilder {
    Replica::builder(config(url))
        .poll_wait(Duration::from_secs(2))
        .min_poll_interval(Duration::from_millis(10))
        .backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(200))
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// How many of the IPs 0..n the replica answers.
fn answered(r: &Replica, n: usize) -> usize {
    (0..n).filter(|i| r.lookup(nth(*i)).is_some()).count()
}

#[test]
fn wiped_or_70_percent_deleted_is_protected_20_percent_is_applied() {
    let svc = Service::start(&registry(0, 1000), None);
    let r = replica(&svc.url()).build().unwrap();
    let s = r.stats();
    assert_eq!(
        (s.records, s.normal_records, s.protected),
        (1000, 1000, false)
    );
    println!(
        "before: service 1000, replica {} (normal {})",
        s.records, s.normal_records
    );

    // The service's store is wiped (an empty registry file, applied).
    write(&svc.path(), "schema = 1\n");
    wait_until("protection", Duration::from_secs(10), || {
        r.stats().protected
    });
    let s = r.stats();
    assert_eq!(svc.records(), 0);
    assert_eq!((s.records, s.held_deletes), (1000, 1000), "{s:?}");
    assert!(s.protected_since.is_some());
    assert_eq!(answered(&r, 1000), 1000, "every record still answers");
    assert!(r.last_error().unwrap().contains("mass deletion"));
    println!(
        "wiped: service 0, replica {} (protected, {} deletes held)",
        s.records, s.held_deletes
    );

    // 700 back (70% < 75%): still protected; then 800 (80%): protection ends
    // and the 200 still deleted are applied.
    write(&svc.path(), &registry(0, 700));
    wait_until("700 back", Duration::from_secs(10), || {
        r.stats().held_deletes == 300
    });
    assert!(r.stats().protected);
    assert_eq!(r.stats().records, 1000);
    println!(
        "700 back: replica {} (still protected, 300 held)",
        r.stats().records
    );
    write(&svc.path(), &registry(0, 800));
    wait_until("the end of protection", Duration::from_secs(10), || {
        !r.stats().protected
    });
    let s = r.stats();
    assert_eq!((s.records, s.held_deletes), (800, 0), "{s:?}");
    assert_eq!(answered(&r, 1000), 800);
    println!("800 back: replica {} (protection ended)", s.records);

    // All 1,000 back, then 70% deleted at once: protected again; a new
    // record meanwhile is served (upserts are never held).
    write(&svc.path(), &registry(0, 1000));
    wait_until("1000 back", Duration::from_secs(10), || {
        r.stats().records == 1000
    });
    let mut text = registry(0, 300);
    text.push_str(&registry(1000, 5).replace("schema = 1\n", ""));
    write(&svc.path(), &text);
    wait_until("protection", Duration::from_secs(10), || {
        r.stats().protected
    });
    let s = r.stats();
    assert_eq!(svc.records(), 305);
    assert_eq!((s.records, s.held_deletes), (1005, 700), "{s:?}");
    assert_eq!(answered(&r, 1005), 1005);
    println!(
        "70% deleted (+5 new): service 305, replica {} (protected, {} held)",
        s.records, s.held_deletes
    );
    write(&svc.path(), &registry(0, 1000));
    wait_until("the end of protection", Duration::from_secs(10), || {
        !r.stats().protected
    });
    assert_eq!(r.stats().records, 1000, "the 5 new ones were deleted since");
    println!("restored: replica {} (protection ended)", r.stats().records);

    // 20% deleted: applied at once.
    write(&svc.path(), &registry(0, 800));
    wait_until("the deletes", Duration::from_secs(10), || {
        r.stats().records == 800
    });
    let s = r.stats();
    assert!(!s.protected && s.held_deletes == 0, "{s:?}");
    assert_eq!(answered(&r, 1000), 800);
    println!("20% deleted: service 800, replica {} (applied)", s.records);
    svc.stop();
}

#[test]
fn scale_out_then_in_is_no_collapse() {
    let svc = Service::start(&registry(0, 500), None);
    let r = Arc::new(replica(&svc.url()).build().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ever = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (r, stop, ever) = (r.clone(), stop.clone(), ever.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if r.stats().protected {
                    ever.store(true, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    write(&svc.path(), &registry(0, 1000));
    wait_until("scale-out", Duration::from_secs(10), || {
        r.stats().records == 1000
    });
    write(&svc.path(), &registry(500, 500));
    wait_until("scale-in", Duration::from_secs(10), || {
        r.stats().records == 500 && r.lookup(nth(0)).is_none()
    });
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let s = r.stats();
    assert!(!ever.load(Ordering::Relaxed), "never protected: {s:?}");
    assert_eq!(s.normal_records, 1000);
    println!(
        "deploy: 500 -> 1000 -> 500 (the old half gone): replica {}, never protected",
        s.records
    );
    svc.stop();
}

#[test]
fn protection_can_be_turned_off_and_tuned() {
    let svc = Service::start(&registry(0, 100), None);
    let off = replica(&svc.url()).protection(false).build().unwrap();
    let strict = replica(&svc.url())
        .protection_thresholds(0.9, 0.95)
        .build()
        .unwrap();
    write(&svc.path(), &registry(0, 85));
    wait_until("the deletes", Duration::from_secs(10), || {
        off.stats().records == 85
    });
    wait_until("protection", Duration::from_secs(10), || {
        strict.stats().protected
    });
    assert_eq!(strict.stats().records, 100);
    write(&svc.path(), "schema = 1\n");
    wait_until("the wipe", Duration::from_secs(10), || {
        off.stats().records == 0
    });
    assert!(!off.stats().protected);
    svc.stop();
}

/// A registrant: `Registrar::renew_or_register` every `period` until stopped.
fn registrant(
    url: String,
    ip: IpAddr,
    lease: Duration,
    stop: Arc<AtomicBool>,
    again: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let registrar = Registrar::new(config(&url));
        let mut record: HostRecord = serde_json::from_value(serde_json::json!({
            "app": "fleet", "env": "prod", "idc": "cn0",
        }))
        .unwrap();
        record.ip = None;
        let reg = Registration { record, lease };
        while registrar.register(ip, &reg).is_err() {
            thread::sleep(Duration::from_millis(50));
        }
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(lease / 3);
            if let Ok(Renewal::Registered) = registrar.renew_or_register(ip, &reg) {
                again.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[test]
fn service_losing_its_state_is_refilled_and_replicas_never_drop() {
    const N: usize = 40;
    let statics = registry(0, 10);
    let svc = Service::start(&statics, None);
    let addr = svc.addr;
    let url = svc.url();
    let lease = Duration::from_secs(3);
    let stop = Arc::new(AtomicBool::new(false));
    let again = Arc::new(AtomicUsize::new(0));
    let fleet: Vec<_> = (0..N)
        .map(|i| {
            let ip: IpAddr = format!("10.200.0.{}", i + 1).parse().unwrap();
            registrant(url.clone(), ip, lease, stop.clone(), again.clone())
        })
        .collect();
    let r = Arc::new(replica(&url).build().unwrap());
    wait_until("the fleet", Duration::from_secs(10), || {
        r.stats().records == 10 + N
    });
    let before = r.stats().records;
    println!("before: service {}, replica {before}", svc.records());

    // The lowest count the replica ever served, sampled all along.
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (r, lowest, sampling) = (r.clone(), lowest.clone(), sampling.clone());
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                lowest.fetch_min(r.view().len(), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // The service goes away for longer than the leases and comes back
    // without its registrations (no state file).
    svc.stop();
    thread::sleep(lease + Duration::from_millis(500));
    let svc = Service::start(&statics, Some(addr));
    wait_until("protection", Duration::from_secs(10), || {
        r.stats().protected
    });
    let during = r.stats();
    println!(
        "service back empty: service {}, replica {} (protected, {} held)",
        svc.records(),
        during.records,
        during.held_deletes
    );
    // Registrants get 404 on renewal and register again, spread by jitter.
    wait_until("the refill", Duration::from_secs(15), || {
        svc.records() == 10 + N && r.stats().records == 10 + N && !r.stats().protected
    });
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let after = r.stats();
    println!(
        "refilled: service {}, replica {} ({} re-registrations), lowest served {}",
        svc.records(),
        after.records,
        again.load(Ordering::Relaxed),
        lowest.load(Ordering::Relaxed)
    );
    assert_eq!(after.records, 10 + N);
    assert!(
        again.load(Ordering::Relaxed) >= N,
        "every registrant came back"
    );
    // The collapsed view (10) was never served: the replica held its view
    // until the registry was back to 75% of it, and then served what the
    // service had (the last registrants were re-registering, jittered).
    let floor = (before * 3).div_ceil(4);
    assert!(
        lowest.load(Ordering::Relaxed) >= floor,
        "never below 75% of the protected view ({floor})"
    );
    stop.store(true, Ordering::Relaxed);
    for t in fleet {
        t.join().unwrap();
    }
    svc.stop();
}

#[test]
fn cache_file_age_and_problems_are_reported() {
    let svc = Service::start(&registry(0, 20), None);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let r = replica(&svc.url())
        .cache_file(&cache)
        .cache_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let s = r.stats();
    assert_eq!(
        s.cache,
        CacheFileStatus::Present,
        "written after the first sync"
    );
    assert!(s.cache_age.unwrap() < Duration::from_secs(5));
    // A stable registry still leaves a fresh file: rewritten every cache_interval.
    let first = std::fs::metadata(&cache).unwrap().modified().unwrap();
    wait_until("a rewrite", Duration::from_secs(10), || {
        std::fs::metadata(&cache).unwrap().modified().unwrap() > first
    });
    assert!(r.stats().cache_age.unwrap() < Duration::from_secs(3));
    drop(r);
    let url = svc.url();
    svc.stop();

    // Service down: from the file, with its age.
    thread::sleep(Duration::from_millis(1100));
    let r = replica(&url).cache_file(&cache).build().unwrap();
    let s = r.stats();
    assert!(s.from_cache && s.cache == CacheFileStatus::Present, "{s:?}");
    let age = s.cache_age.unwrap();
    assert!(
        age >= Duration::from_secs(1) && age < Duration::from_secs(30),
        "{age:?}"
    );
    assert_eq!(s.records, 20);
    println!("from the cache file: {} records, {age:?} old", s.records);
    drop(r);

    // Corrupt and missing are said as such.
    std::fs::write(&cache, b"{\"format\": \"envid-replica-1\", \"vers").unwrap();
    match replica(&url).cache_file(&cache).build().unwrap_err() {
        ClientError::NoReplicaData { problem, path, .. } => {
            assert!(matches!(problem, CacheProblem::Corrupt(_)), "{problem}");
            assert!(path.ends_with("cache.json"));
        }
        e => panic!("{e:?}"),
    }
    let r = replica(&url)
        .cache_file(&cache)
        .require_initial_sync(false)
        .build()
        .unwrap();
    assert_eq!(r.stats().cache, CacheFileStatus::Corrupt);
    assert_eq!(r.stats().cache_age, None);
    drop(r);
    std::fs::remove_file(&cache).unwrap();
    let e = replica(&url).cache_file(&cache).build().unwrap_err();
    assert!(
        matches!(
            &e,
            ClientError::NoReplicaData {
                problem: CacheProblem::Missing,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("is missing"), "{e}");
    let r = replica(&url)
        .cache_file(&cache)
        .require_initial_sync(false)
        .build()
        .unwrap();
    assert_eq!(r.stats().cache, CacheFileStatus::Missing);
}

#[test]
fn renew_or_register_waits_out_429_when_registering_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, registry(0, 1)).unwrap();
    let mut c = envid_server::Config::new(&path);
    c.insecure_open_registration = true;
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.register_limit = 1;
    c.register_window = Duration::from_secs(2);
    let svc = envid_server::spawn(c).unwrap();
    let registrar = Registrar::new(config(&svc.base_url()));
    let mut record: HostRecord =
        serde_json::from_value(serde_json::json!({"app": "limited", "env": "prod", "idc": "cn0"}))
            .unwrap();
    record.ip = None;
    let reg = Registration {
        record,
        lease: Duration::from_secs(3),
    };
    let ip: IpAddr = "10.201.0.1".parse().unwrap();
    registrar.register(ip, &reg).unwrap();
    assert_eq!(
        registrar.renew_or_register(ip, &reg).unwrap(),
        Renewal::Renewed
    );
    // The service forgets it; the next PUT is over the limit (1 per 2 s).
    registrar.deregister(ip).unwrap();
    let started = Instant::now();
    assert_eq!(
        registrar.renew_or_register(ip, &reg).unwrap(),
        Renewal::Registered
    );
    println!(
        "re-registered after {:?} (429 waited out)",
        started.elapsed()
    );
    assert!(registrar.renew(ip).unwrap());
}
