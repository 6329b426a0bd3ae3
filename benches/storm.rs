//! Storm simulation: what the central service receives when containers churn,
//! with 50 servers answering from replicas versus asking on demand.
//!
//! Workload (the same for both modes, against the real reference service on
//! loopback): 50 servers; 10,000 IP changes in 100 waves, each wave a rolling
//! deploy step where 50 new containers register (`PUT`) and the 50 oldest
//! deregister (`DELETE`). After each wave, every new IP calls every server 4
//! times (each call is one lookup of the caller's IP by that server), and each
//! server gets one stray call from an IP that has just been deregistered.
//!
//! * replica mode: each server keeps a [`Replica`]; the wave's lookups start
//!   once all 50 replicas have reached the service's version;
//! * on-demand mode: each server keeps its own [`LookupClient`] (default
//!   TTLs; a real fleet has one per process, so no sharing across servers).
//!
//! Reported from the service's own `/metrics`: read requests (snapshot, long
//! polls, host lookups) per mode, the registration requests (the same 10,000
//! in both), and how many stray calls were answered with a record that no
//! longer exists (stale).
//!
//! `cargo bench --bench storm` (`STORM_WAVES=10` for a short run). Not a
//! criterion benchmark: it counts requests; the wall time is printed for
//! context only. With `STORM_ETCD=URL[,URL...]` (an etcd cluster), the
//! replica mode runs once more against two service instances on that etcd,
//! half of the replicas preferring each, and prints the requests per
//! instance.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use envid::lookup::LookupClient;
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};
use envid::replica::Replica;
use envid::ServiceConfig;

const SERVERS: usize = 50;
const STARTS_PER_WAVE: usize = 50;
const CALLS_PER_IP: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Replica,
    OnDemand,
}

/// What one run cost the service.
#[derive(Debug, Default)]
struct Figures {
    reads: u64,
    snapshots_and_polls: u64,
    host_gets: u64,
    registrations: u64,
    lookups: u64,
    stale: u64,
    unknown_new: u64,
    wall: Duration,
}

/// The wave-th container's IP (10.200.0.0/16 and up: never in the file).
fn container_ip(n: usize) -> IpAddr {
    IpAddr::from([10, 200 + (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

fn registration(n: usize) -> Registration {
    let mut record: HostRecord = serde_json::from_value(serde_json::json!({
        "app": format!("svc{}", n % 40),
        "env": "prod",
        "idc": "cn0",
        "hostname": format!("pod-{n}"),
    }))
    .expect("a record");
    record.ip = None;
    Registration {
        record,
        lease: Duration::from_secs(3600),
    }
}

/// The service's `/metrics` text (counted under its own endpoint label).
fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics connect");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("metrics request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("metrics body");
    body
}

/// The sum of the samples of `name` whose labels contain `label`.
fn sample(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `envid_http_requests_total{endpoint=…}` summed over statuses.
fn requests(addr: SocketAddr, endpoint: &str) -> u64 {
    sample(
        &metrics(addr),
        "envid_http_requests_total",
        &format!("endpoint=\"{endpoint}\""),
    )
}

fn run(mode: Mode, waves: usize) -> Figures {
    run_on(mode, waves, None).0
}

/// [`run`]; with `etcd`, two instances on it (the figures sum both), and the
/// read requests each received.
fn run_on(mode: Mode, waves: usize, etcd: Option<&str>) -> (Figures, Vec<u64>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        "schema = 1\n[[records]]\ncidr = \"10.0.0.0/16\"\nenv = \"prod\"\nidc = \"cn0\"\n",
    )
    .expect("registry file");
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.history_limit = 100_000;
    config.max_in_flight = 4096;
    config.register_limit = 0;
    // Measures the registry under churn, not authentication.
    config.insecure_open_registration = true;
    if let Some(etcd) = etcd {
        config.etcd = etcd.split(',').map(str::to_string).collect();
        // A prefix of its own: runs do not see each other's records.
        config.etcd_prefix = format!("/storm-{}/", std::process::id());
    }
    let svc = envid_server::spawn(config.clone()).expect("service starts");
    let second = etcd.map(|_| envid_server::spawn(config).expect("second instance starts"));
    let url = svc.base_url();
    let addr = svc.local_addr();
    for a in std::iter::once(addr).chain(second.as_ref().map(|s| s.local_addr())) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !metrics_ok(a) {
            assert!(Instant::now() < deadline, "instance {a} not ready");
            thread::sleep(Duration::from_millis(20));
        }
    }
    let config = ServiceConfig::builder()
        .endpoint(&url)
        .build()
        .expect("config");
    let registrar = Registrar::new(config.clone());
    // Half of the replicas prefer the second instance (when there is one).
    let replica_config = |i: usize| match &second {
        Some(b) if i % 2 == 1 => ServiceConfig::builder()
            .endpoint(b.base_url())
            .endpoint(&url)
            .build()
            .expect("config"),
        Some(b) => ServiceConfig::builder()
            .endpoint(&url)
            .endpoint(b.base_url())
            .build()
            .expect("config"),
        None => config.clone(),
    };

    let replicas: Vec<Arc<Replica>> = match mode {
        Mode::Replica => (0..SERVERS)
            .map(|i| {
                Arc::new(
                    Replica::builder(replica_config(i))
                        .poll_wait(Duration::from_secs(5))
                        .build()
                        .expect("replica"),
                )
            })
            .collect(),
        Mode::OnDemand => Vec::new(),
    };
    let clients: Vec<Arc<LookupClient>> = match mode {
        Mode::OnDemand => (0..SERVERS)
            .map(|_| {
                Arc::new(
                    LookupClient::builder(config.clone())
                        .build()
                        .expect("client"),
                )
            })
            .collect(),
        Mode::Replica => Vec::new(),
    };

    let started = Instant::now();
    let mut live: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    // A fleet already running: the first wave's stops have someone to stop.
    for _ in 0..STARTS_PER_WAVE {
        registrar
            .register(container_ip(next), &registration(next))
            .expect("register");
        live.push_back(next);
        next += 1;
    }
    let reads_before: u64 = std::iter::once(addr)
        .chain(second.as_ref().map(|s| s.local_addr()))
        .map(|a| requests(a, "registry") + requests(a, "get_host"))
        .sum();
    let mut figures = Figures::default();
    let barrier = Arc::new(Barrier::new(SERVERS));
    for _ in 0..waves {
        let mut new_ips = Vec::new();
        for _ in 0..STARTS_PER_WAVE {
            registrar
                .register(container_ip(next), &registration(next))
                .expect("register");
            new_ips.push(container_ip(next));
            live.push_back(next);
            next += 1;
        }
        let mut stopped = Vec::new();
        for _ in 0..STARTS_PER_WAVE {
            let n = live.pop_front().expect("a live container");
            registrar.deregister(container_ip(n)).expect("deregister");
            stopped.push(container_ip(n));
        }
        if mode == Mode::Replica {
            let target = replicas_target(addr);
            let deadline = Instant::now() + Duration::from_secs(30);
            while replicas.iter().any(|r| r.version() < target) {
                assert!(Instant::now() < deadline, "replicas did not converge");
                thread::sleep(Duration::from_millis(1));
            }
        }
        let new_ips = Arc::new(new_ips);
        let stopped = Arc::new(stopped);
        let handles: Vec<_> = (0..SERVERS)
            .map(|s| {
                let (new_ips, stopped, barrier) =
                    (new_ips.clone(), stopped.clone(), barrier.clone());
                let replica = replicas.get(s).cloned();
                let client = clients.get(s).cloned();
                thread::spawn(move || {
                    let ask = |ip: IpAddr| -> Option<Arc<HostRecord>> {
                        match (&replica, &client) {
                            (Some(r), _) => r.lookup(ip),
                            (_, Some(c)) => c.lookup(ip).expect("lookup"),
                            _ => unreachable!("each server has one mode"),
                        }
                    };
                    barrier.wait();
                    let (mut lookups, mut unknown_new, mut stale) = (0u64, 0u64, 0u64);
                    for _ in 0..CALLS_PER_IP {
                        for &ip in new_ips.iter() {
                            lookups += 1;
                            if ask(ip).and_then(|r| r.ip) != Some(ip) {
                                unknown_new += 1;
                            }
                        }
                    }
                    let gone = stopped[s % stopped.len()];
                    lookups += 1;
                    if ask(gone).and_then(|r| r.ip) == Some(gone) {
                        stale += 1;
                    }
                    (lookups, unknown_new, stale)
                })
            })
            .collect();
        for h in handles {
            let (l, u, s) = h.join().expect("server thread");
            figures.lookups += l;
            figures.unknown_new += u;
            figures.stale += s;
        }
    }
    figures.wall = started.elapsed();
    // Let the replicas' last long polls be counted before reading.
    thread::sleep(Duration::from_millis(50));
    let b = second.as_ref().map(|s| s.local_addr());
    let both = |endpoint: &str| requests(addr, endpoint) + b.map_or(0, |b| requests(b, endpoint));
    let per_instance: Vec<u64> = std::iter::once(addr)
        .chain(b)
        .map(|a| requests(a, "registry") + requests(a, "get_host"))
        .collect();
    figures.snapshots_and_polls = both("registry");
    figures.host_gets = both("get_host");
    figures.reads = figures.snapshots_and_polls + figures.host_gets - reads_before;
    figures.registrations = both("register") + both("deregister");
    drop(replicas);
    drop(clients);
    svc.shutdown();
    drop(second);
    (figures, per_instance)
}

/// Whether `/metrics` answers (an etcd instance answers 503 until listed).
fn metrics_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200")
}

/// The service's current registry version.
fn replicas_target(addr: SocketAddr) -> u64 {
    sample(&metrics(addr), "envid_registry_version", "")
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to configure from arguments.
    let waves = std::env::var("STORM_WAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize);
    let changes = waves * STARTS_PER_WAVE * 2;
    println!(
        "storm: {SERVERS} servers, {changes} IP changes in {waves} waves ({STARTS_PER_WAVE} starts + {STARTS_PER_WAVE} stops each), {CALLS_PER_IP} calls from each new IP to each server"
    );
    let replica = run(Mode::Replica, waves);
    println!("replica:   {replica:?}");
    let on_demand = run(Mode::OnDemand, waves);
    println!("on demand: {on_demand:?}");
    println!(
        "read requests the service received: replica {} vs on demand {} ({:.1}x fewer); registrations {} / {}; stale answers to stopped IPs: replica {} vs on demand {} of {}",
        replica.reads,
        on_demand.reads,
        on_demand.reads as f64 / replica.reads.max(1) as f64,
        replica.registrations,
        on_demand.registrations,
        replica.stale,
        on_demand.stale,
        waves * SERVERS,
    );
    if let Ok(etcd) = std::env::var("STORM_ETCD") {
        let (two, per_instance) = run_on(Mode::Replica, waves, Some(&etcd));
        println!("replica, two instances on etcd: {two:?}");
        println!(
            "two instances on etcd: read requests {} (one instance: {}), per instance {:?}; registrations {}; stale {}",
            two.reads, replica.reads, per_instance, two.registrations, two.stale
        );
    }
}
