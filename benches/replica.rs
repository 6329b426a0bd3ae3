//! Replica benchmarks against the real reference service on loopback.
//!
//! * Lookups on a replica of 10,000 single IPs and 1,116 ranges of four
//!   prefix lengths: an exact IP, an IP answered by a range, an unknown IP
//!   (goal: ≤ 100 ns).
//! * A delta of 1,000 changes: decoding its JSON and applying it to a copy
//!   of the view (criterion, no network); then, end to end, the service
//!   reloads a registry file in which 1,000 records changed and the time of
//!   `sync_once` (request, decode, copy, apply, swap) is taken, while reader
//!   threads keep a latency histogram, against one taken while nothing is
//!   applied (goal: readers never block, so the two are alike).
//! * Long-poll wake: a registration `PUT` until a background-synced
//!   replica answers for it, the sync thread parked in its long poll first
//!   (a quiet spell; the README's "~25 ms after a quiet spell").
//!   tests/replica.rs checks that the poll is woken, not how fast.
//!
//! `cargo bench --bench replica` (add `-- --quick` for a short run).

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};
use envid::replica::Replica;
use envid::ServiceConfig;

const SINGLE: u32 = 10_000;

/// 10,000 single IPs in 10.1.0.0/16 and ranges of lengths 8, 16, 20 and 24;
/// the first 1,000 single IPs carry `round` in their app name.
fn registry(round: u32) -> String {
    let mut t = String::from("schema = 1\n");
    for i in 0..SINGLE {
        let app = if i < 1000 {
            format!("app{i}-r{round}")
        } else {
            format!("app{i}")
        };
        let _ = write!(
            t,
            "[[records]]\nip = \"10.1.{}.{}\"\napp = \"{app}\"\nenv = \"prod\"\nidc = \"cn0\"\n",
            i / 256,
            i % 256
        );
    }
    for a in 20..30u32 {
        let _ = write!(
            t,
            "[[records]]\ncidr = \"{a}.0.0.0/8\"\nenv = \"prod\"\nidc = \"cn5\"\n"
        );
    }
    for b in 0..90u32 {
        let _ = write!(
            t,
            "[[records]]\ncidr = \"20.{b}.0.0/16\"\nenv = \"beta\"\nidc = \"cn5\"\n"
        );
    }
    for c in 0..16u32 {
        let _ = write!(
            t,
            "[[records]]\ncidr = \"20.1.{}.0/20\"\nenv = \"uat\"\nidc = \"cn5\"\n",
            c * 16
        );
    }
    for c in 0..1000u32 {
        let _ = write!(
            t,
            "[[records]]\ncidr = \"21.{}.{}.0/24\"\nenv = \"dev\"\nidc = \"cn2\"\n",
            c / 256,
            c % 256
        );
    }
    t
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, registry(0)).unwrap();
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.reload_interval = Duration::from_millis(20);
    let svc = envid_server::spawn(config).expect("service starts");
    let replica = Arc::new(
        Replica::builder(
            ServiceConfig::builder()
                .endpoint(svc.base_url())
                .build()
                .unwrap(),
        )
        .background_sync(false)
        .poll_wait(Duration::from_secs(5))
        .build()
        .expect("snapshot"),
    );
    println!("replica: {:?}", replica.stats());

    let exact: IpAddr = "10.1.7.42".parse().unwrap();
    let in_range: IpAddr = "21.2.17.9".parse().unwrap();
    let unknown: IpAddr = "192.0.2.1".parse().unwrap();
    assert!(replica.lookup(exact).unwrap().ip.is_some());
    assert!(replica.lookup(in_range).unwrap().cidr.is_some());
    assert!(replica.lookup(unknown).is_none());

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("replica lookup single IP", |b| {
        b.iter(|| replica.lookup(black_box(exact)))
    });
    c.bench_function("replica lookup CIDR (/24 of 4 lengths)", |b| {
        b.iter(|| replica.lookup(black_box(in_range)))
    });
    c.bench_function("replica lookup unknown IP", |b| {
        b.iter(|| replica.lookup(black_box(unknown)))
    });
    apply_benches(&mut c, &replica);
    wake_latency(&mut c);
    c.final_summary();

    delta_apply(&path, svc.local_addr(), &replica);
    svc.shutdown();
}

/// Long-poll wake latency: from a registration `PUT` to the replica
/// answering for the new IP, against a service of its own (registration
/// open, one record).
fn wake_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        "schema = 1\n[[records]]\ncidr = \"10.6.0.0/16\"\nenv = \"prod\"\nidc = \"cn0\"\n",
    )
    .unwrap();
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.insecure_open_registration = true;
    let svc = envid_server::spawn(config).expect("service starts");
    let service = ServiceConfig::builder()
        .endpoint(svc.base_url())
        .build()
        .unwrap();
    let replica = Replica::builder(service.clone())
        .poll_wait(Duration::from_secs(5))
        .build()
        .expect("snapshot");
    let registrar = Registrar::new(service);
    let registration = Registration {
        record: serde_json::from_str::<HostRecord>(
            r#"{"app": "wake", "env": "beta", "idc": "cn0"}"#,
        )
        .unwrap(),
        lease: Duration::from_secs(3600),
    };
    let mut next = 0u32;
    let mut g = c.benchmark_group("long-poll wake");
    // Each iteration also waits, untimed, 300 ms for the poll to park: a
    // sample is one iteration (criterion warns that 10 do not fit in the
    // measurement time; they are not meant to).
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(500));
    g.bench_function("registration PUT → visible in the replica", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // After a delta the sync thread pauses `min_poll_interval`
                // (200 ms), then parks in its long poll.
                thread::sleep(Duration::from_millis(300));
                next += 1;
                let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes([10, 6, 0, 0]) + next));
                let t0 = Instant::now();
                registrar.register(ip, &registration).expect("registered");
                while replica.lookup(ip).and_then(|r| r.ip).is_none() {
                    assert!(t0.elapsed() < Duration::from_secs(10), "no wake");
                    thread::sleep(Duration::from_micros(100));
                }
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    drop(replica);
    svc.shutdown();
}

/// Latencies in power-of-two nanosecond buckets (bucket i holds
/// [2^i, 2^(i+1)) ns).
#[derive(Clone)]
struct Histogram([u64; 40]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([0; 40])
    }
}

impl Histogram {
    fn record(&mut self, ns: u64) {
        self.0[(64 - ns.max(1).leading_zeros() as usize - 1).min(39)] += 1;
    }
    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    /// The upper bound of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> Duration {
        let target = (self.count() as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return Duration::from_nanos(1 << (i + 1));
            }
        }
        Duration::ZERO
    }
    fn max(&self) -> Duration {
        self.0
            .iter()
            .rposition(|&n| n > 0)
            .map_or(Duration::ZERO, |i| Duration::from_nanos(1 << (i + 1)))
    }
    fn summary(&self) -> String {
        format!(
            "{} lookups: p50 < {:?}, p99 < {:?}, p99.9 < {:?}, p99.99 < {:?}, max < {:?}",
            self.count(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.quantile(0.9999),
            self.max()
        )
    }
}

/// Readers on other threads look up in a loop and keep a latency histogram.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Histogram>>,
}

impl Readers {
    fn start(replica: &Arc<Replica>, n: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|t| {
                let (r, stop) = (replica.clone(), stop.clone());
                thread::spawn(move || {
                    let mut i = t as u32;
                    let mut h = Histogram::default();
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 7) % SINGLE;
                        let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
                        let t0 = Instant::now();
                        black_box(r.lookup(ip));
                        h.record(t0.elapsed().as_nanos() as u64);
                    }
                    h
                })
            })
            .collect();
        Readers { stop, threads }
    }

    fn stop(self) -> Histogram {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Histogram::default();
        for t in self.threads {
            all.merge(&t.join().unwrap());
        }
        all
    }
}

/// The service's registry version, from `/metrics`.
fn service_version(addr: std::net::SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| {
            l.strip_prefix("envid_registry_version ")?
                .trim()
                .parse()
                .ok()
        })
        .expect("envid_registry_version in /metrics")
}

/// Pure apply (no network): decode a 1,000-upsert delta, and apply it to a
/// copy of the 11,116-record view.
fn apply_benches(c: &mut Criterion, replica: &Replica) {
    use envid::fuzzing::fuzz_view as internals;
    use envid::protocol::{RegistryDelta, RegistrySnapshot};
    let view = replica.view();
    let records: Vec<_> = view.records().map(|r| (**r).clone()).collect();
    let base = internals::from_snapshot(RegistrySnapshot {
        version: view.version(),
        history: None,
        records: records.clone(),
    })
    .unwrap();
    let upserts: Vec<_> = records
        .iter()
        .filter(|r| r.ip.is_some())
        .take(1000)
        .map(|r| {
            let mut r = r.clone();
            r.app = Some(format!("{}-next", r.app.as_deref().unwrap_or("x")));
            r
        })
        .collect();
    let delta = RegistryDelta {
        version: view.version() + 1,
        history: None,
        upserts,
        deletes: Vec::new(),
    };
    let body = serde_json::to_vec(&delta).unwrap();
    println!("a 1,000-upsert delta is {} bytes of JSON", body.len());
    c.bench_function("delta of 1,000 changes: decode JSON", |b| {
        b.iter(|| serde_json::from_slice::<RegistryDelta>(black_box(&body)).unwrap())
    });
    c.bench_function(
        "delta of 1,000 changes: copy view + apply (11,116 records)",
        |b| {
            b.iter_batched(
                || delta.clone(),
                |d| internals::apply(&base, d).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        },
    );
}

fn delta_apply(path: &std::path::Path, addr: std::net::SocketAddr, replica: &Arc<Replica>) {
    let readers_n = thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let mut syncs = Vec::new();
    let mut during = Histogram::default();
    let mut idle = Histogram::default();
    for round in 1..=10u32 {
        let before = replica.stats();
        std::fs::write(path, registry(round)).unwrap();
        // Wait for the service to reload the file, so the timed sync below
        // is the delta itself, not a long poll waiting for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while service_version(addr) <= before.version {
            assert!(Instant::now() < deadline, "the service did not reload");
            thread::sleep(Duration::from_millis(10));
        }

        let readers = Readers::start(replica, readers_n);
        thread::sleep(Duration::from_millis(50));
        idle.merge(&readers.stop());

        let readers = Readers::start(replica, readers_n);
        thread::sleep(Duration::from_millis(2));
        let t0 = Instant::now();
        replica.sync_once().expect("delta");
        syncs.push(t0.elapsed());
        thread::sleep(Duration::from_millis(2));
        during.merge(&readers.stop());

        let after = replica.stats();
        assert_eq!(after.deltas, before.deltas + 1, "one delta per round");
        assert_eq!(
            replica
                .lookup("10.1.0.5".parse().unwrap())
                .unwrap()
                .app
                .as_deref(),
            Some(&*format!("app5-r{round}"))
        );
    }
    syncs.sort();
    println!(
        "sync_once bringing a 1,000-change delta to a 11,116-record replica (request + decode + copy + apply + swap), 10 rounds: median {:?}, max {:?}",
        syncs[syncs.len() / 2],
        syncs.last().unwrap()
    );
    println!(
        "reader latency on {readers_n} thread(s) while the deltas were applied: {}",
        during.summary()
    );
    println!(
        "reader latency on {readers_n} thread(s) with nothing applied:         {}",
        idle.summary()
    );
}
