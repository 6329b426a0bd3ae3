//! Replica benchmarks against the real reference service on loopback.
//!
//! * Lookups on a replica of 10,000 single IPs and 1,116 ranges of four
//!   prefix lengths: an exact IP, an IP answered by a range, an unknown IP
//!   (goal: ≤ 100 ns).
//! * A delta of 1,000 changes (the service reloads a registry file in which
//!   1,000 records changed): the time of `sync_once` (request, decode, copy,
//!   apply, swap), and the worst lookup latency seen by reader threads while
//!   it runs, against the worst seen while nothing is applied (goal: readers
//!   never block, so the two are alike).
//!
//! `cargo bench --bench replica` (add `-- --quick` for a short run).

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use envid::lookup::Replica;

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
        Replica::builder()
            .endpoint(svc.base_url())
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
    c.final_summary();

    delta_apply(&path, &replica);
    svc.shutdown();
}

/// Readers on other threads look up in a loop and keep their worst latency.
struct Readers {
    stop: Arc<AtomicBool>,
    worst_ns: Arc<AtomicU64>,
    lookups: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Readers {
    fn start(replica: &Arc<Replica>, n: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let worst_ns = Arc::new(AtomicU64::new(0));
        let lookups = Arc::new(AtomicU64::new(0));
        let threads = (0..n)
            .map(|t| {
                let (r, stop, worst, count) = (
                    replica.clone(),
                    stop.clone(),
                    worst_ns.clone(),
                    lookups.clone(),
                );
                thread::spawn(move || {
                    let mut i = t as u32;
                    let mut local_worst = 0u64;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 7) % SINGLE;
                        let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
                        let t0 = Instant::now();
                        black_box(r.lookup(ip));
                        local_worst = local_worst.max(t0.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    worst.fetch_max(local_worst, Ordering::Relaxed);
                    count.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        Readers {
            stop,
            worst_ns,
            lookups,
            threads,
        }
    }

    /// Stops them: (worst latency, lookups).
    fn stop(self) -> (Duration, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            Duration::from_nanos(self.worst_ns.load(Ordering::Relaxed)),
            self.lookups.load(Ordering::Relaxed),
        )
    }
}

fn delta_apply(path: &std::path::Path, replica: &Arc<Replica>) {
    let readers_n = thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let mut applies = Vec::new();
    let mut worst_during = Vec::new();
    let mut worst_idle = Vec::new();
    for round in 1..=10u32 {
        let before = replica.stats();
        std::fs::write(path, registry(round)).unwrap();
        // Let the service reload the file (one version with 1,000 upserts).
        thread::sleep(Duration::from_millis(300));

        let idle = Readers::start(replica, readers_n);
        thread::sleep(Duration::from_millis(20));
        worst_idle.push(idle.stop().0);

        let readers = Readers::start(replica, readers_n);
        thread::sleep(Duration::from_millis(2));
        // The sync that brings the delta (earlier ones may be empty polls
        // while the service has not reloaded the file yet).
        let deadline = Instant::now() + Duration::from_secs(20);
        let took = loop {
            let t0 = Instant::now();
            replica.sync_once().expect("delta");
            let took = t0.elapsed();
            if replica.stats().deltas > before.deltas {
                break took;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not reload the file"
            );
        };
        thread::sleep(Duration::from_millis(2));
        let (worst, _) = readers.stop();
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
        applies.push(took);
        worst_during.push(worst);
    }
    applies.sort();
    worst_during.sort();
    worst_idle.sort();
    let med = |v: &[Duration]| v[v.len() / 2];
    println!(
        "delta of 1,000 changes on a 11,116-record replica (sync_once: request + decode + copy + apply + swap), 10 rounds: median {:?}, max {:?}",
        med(&applies),
        applies.last().unwrap()
    );
    println!(
        "worst single lookup on {readers_n} reader thread(s): during apply median {:?} / max {:?}; idle median {:?} / max {:?}",
        med(&worst_during),
        worst_during.last().unwrap(),
        med(&worst_idle),
        worst_idle.last().unwrap()
    );
}
