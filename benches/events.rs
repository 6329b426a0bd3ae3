//! Join and leave events (`envid::events`) against the real reference
//! service on loopback, in one run:
//!
//! * Latency at 1,000 consumers: from a registration's acknowledgement
//!   (`Registrar::register` returned) to each consumer's `next()` handing
//!   out the join (each consumer a thread with its own checkpoint, acking
//!   every event), against the same for 1,000 replicas (the registration's
//!   IP visible in each replica's view: a scanner thread looks every
//!   50 µs). Both follow the registry through the same stream
//!   (`replica::follow`) with the same settings; p50, p99 and the ratios
//!   (goal ≤ 1.2×): without a checkpoint, with one on disk (1,000 journals
//!   fsynced on one disk), and with one on tmpfs (everything a checkpoint
//!   costs but the disk).
//! * Memory at 100,000 joined IPs: a child process (this bench run again)
//!   builds a consumer with a checkpoint, takes the 100,000 joins, and
//!   reports its resident memory (VmRSS, VmHWM) over its baseline, the
//!   checkpoint's size and the time of a restart from it; and a replica of
//!   the same registry for comparison.
//!
//! `cargo bench -p envid --bench events` (about a minute).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use envid::events::{Events, Filter};
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};
use envid::replica::Replica;
use envid::ServiceConfig;

const CONSUMERS: usize = 1000;
const REGISTRATIONS: u32 = 20;
const MEMORY_IPS: usize = 100_000;
const CHILD: &str = "ENVID_BENCH_EVENTS_CHILD";

fn main() {
    if let Ok(what) = std::env::var(CHILD) {
        let url = std::env::var("ENVID_BENCH_URL").unwrap();
        match what.as_str() {
            "events" => child_events(&url),
            _ => child_replica(&url),
        }
        return;
    }
    latency();
    memory();
}

fn service(registry: &str) -> (tempfile::TempDir, envid_server::ServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, registry).unwrap();
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.insecure_open_registration = true;
    config.register_limit = 0;
    (dir, envid_server::spawn(config).expect("service starts"))
}

fn config(url: &str) -> ServiceConfig {
    ServiceConfig::builder().endpoint(url).build().unwrap()
}

fn registration() -> Registration {
    Registration {
        record: serde_json::from_str::<HostRecord>(
            r#"{"app": "bench", "env": "prod", "idc": "cn0"}"#,
        )
        .unwrap(),
        lease: Duration::from_secs(3600),
    }
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes([10, 7, 0, 0]) + n))
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Registers `count` IPs from `first`, each once every follower is parked
/// in its long poll, calling `acked` as each is acknowledged.
fn register_spaced(
    reg: &Registrar,
    first: u32,
    count: u32,
    mut acked: impl FnMut(IpAddr, Instant),
) {
    let r = registration();
    for n in first..first + count {
        // Past min_poll_interval (200 ms): every follower waits in its poll.
        thread::sleep(Duration::from_millis(500));
        reg.register(ip(n), &r).expect("registered");
        acked(ip(n), Instant::now());
    }
}

fn latency() {
    let (_dir, svc) = service("schema = 1\n");
    let url = svc.base_url();
    let reg = Registrar::new(config(&url));

    // Replicas: the baseline.
    let replicas: Vec<Replica> = (0..CONSUMERS)
        .map(|_| Replica::builder(config(&url)).build().expect("snapshot"))
        .collect();
    let replicas = Arc::new(replicas);
    let (tx, rx) = mpsc::channel::<(IpAddr, Instant)>();
    let scanner = {
        let replicas = replicas.clone();
        thread::spawn(move || {
            let mut lat = Vec::new();
            for (ip, acked) in rx {
                let mut seen = vec![false; replicas.len()];
                let mut left = replicas.len();
                let start = Instant::now();
                while left > 0 {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "replicas too slow"
                    );
                    for (i, r) in replicas.iter().enumerate() {
                        if !seen[i] && r.lookup(ip).is_some() {
                            seen[i] = true;
                            left -= 1;
                            lat.push(Instant::now().saturating_duration_since(acked));
                        }
                    }
                    thread::sleep(Duration::from_micros(50));
                }
            }
            lat
        })
    };
    register_spaced(&reg, 0, REGISTRATIONS + 1, |ip, at| {
        tx.send((ip, at)).unwrap()
    });
    drop(tx);
    let mut replica_lat = scanner.join().unwrap();
    // The first registration only warmed up (connections, polls parked).
    replica_lat.drain(..CONSUMERS);
    // A dropped replica waits up to 250 ms for its long poll: drop them
    // all at once, so the replicas have stopped before the consumers start.
    let replicas = Arc::try_unwrap(replicas).ok().unwrap();
    let drops: Vec<_> = replicas
        .into_iter()
        .map(|r| thread::spawn(move || drop(r)))
        .collect();
    for d in drops {
        d.join().unwrap();
    }

    let plain = events_phase(&url, &reg, None, 100);
    let disk = tempfile::tempdir().unwrap();
    let checkpointed = events_phase(&url, &reg, Some(disk.path()), 200);
    // The same checkpoints where an fsync costs nothing: what a checkpoint
    // costs but the disk, which 1,000 consumers on one machine share here
    // and consumers on their own hosts do not.
    let shm = tempfile::tempdir_in("/dev/shm").ok();
    let in_memory = shm
        .as_ref()
        .map(|d| events_phase(&url, &reg, Some(d.path()), 300));

    replica_lat.sort();
    let (r50, r99) = (quantile(&replica_lat, 0.5), quantile(&replica_lat, 0.99));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "latency from the registration's acknowledgement, {CONSUMERS} followers, \
         {REGISTRATIONS} registrations ({} samples each):",
        replica_lat.len()
    );
    let _ = writeln!(
        out,
        "  replicas (the IP in the view):           p50 {}  p99 {}",
        ms(r50),
        ms(r99)
    );
    let mut rows = vec![
        ("events, no checkpoint (next() returned)", plain),
        ("events, checkpoint fsynced per batch   ", checkpointed),
    ];
    match in_memory {
        Some(lat) => rows.push(("events, checkpoint on tmpfs (/dev/shm)", lat)),
        None => {
            let _ = writeln!(out, "  (no /dev/shm: the tmpfs row is left out)");
        }
    }
    for (name, mut lat) in rows {
        lat.sort();
        let (e50, e99) = (quantile(&lat, 0.5), quantile(&lat, 0.99));
        let _ = writeln!(
            out,
            "  {name}: p50 {}  p99 {}  ratio to replicas p50 {:.2}x p99 {:.2}x (goal <= 1.2x)",
            ms(e50),
            ms(e99),
            e50.as_secs_f64() / r50.as_secs_f64(),
            e99.as_secs_f64() / r99.as_secs_f64()
        );
    }
    print!("{out}");
    svc.shutdown();
}

/// 1,000 consumers of events (a thread each, acking every event, with a
/// checkpoint of their own or none) while `REGISTRATIONS` IPs from
/// `first` register: the latencies.
fn events_phase(
    url: &str,
    reg: &Registrar,
    checkpoints: Option<&std::path::Path>,
    first: u32,
) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    // The hosts of app bench registered so far: joins before timing.
    let already = registry_count(url);
    let (tx, rx) = mpsc::channel::<(IpAddr, Instant)>();
    let threads: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            let (url, tx, stop, ready) = (url.to_string(), tx.clone(), stop.clone(), ready.clone());
            let cp = checkpoints.map(|d| d.join(format!("c{i}.json")));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut b = Events::builder(config(&url)).filter(Filter::new().app("bench"));
                    if let Some(cp) = cp {
                        b = b.checkpoint(cp);
                    }
                    let mut ev = b.build().expect("events");
                    let mut warm = 0;
                    while warm < already {
                        if let Some(e) = ev.next(Duration::from_secs(10)).unwrap() {
                            ev.ack(&e).unwrap();
                            warm += 1;
                        }
                    }
                    ready.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(e) = ev.next(Duration::from_secs(10)).unwrap() {
                            let now = Instant::now();
                            ev.ack(&e).unwrap();
                            if tx.send((e.ip, now)).is_err() {
                                break;
                            }
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    drop(tx);
    while ready.load(Ordering::SeqCst) < CONSUMERS {
        thread::sleep(Duration::from_millis(50));
    }
    let mut acks = Vec::new();
    register_spaced(reg, first, REGISTRATIONS + 1, |ip, at| acks.push((ip, at)));
    let mut lat = Vec::new();
    for _ in 0..acks.len() * CONSUMERS {
        let (ip, at) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("events too slow");
        let acked = acks.iter().find(|(i, _)| *i == ip).unwrap().1;
        // The first registration only warmed up (connections, polls parked).
        if ip != acks[0].0 {
            lat.push(at.saturating_duration_since(acked));
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Ends every long poll, so the threads see `stop`.
    reg.register(ip(first + 99), &registration()).unwrap();
    for t in threads {
        let _ = t.join();
    }
    lat
}

/// How many records the service has.
fn registry_count(url: &str) -> usize {
    let r = Replica::builder(config(url))
        .background_sync(false)
        .build()
        .unwrap();
    r.stats().records
}

/// (VmRSS, VmHWM) of this process, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn memory() {
    let mut t = String::from("schema = 1\n");
    for n in 0..MEMORY_IPS as u32 {
        let _ = write!(
            t,
            "[[records]]\nip = \"{}\"\napp = \"mem\"\nenv = \"prod\"\nidc = \"cn0\"\nhostname = \"mem-{n}\"\n",
            IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes([10, 8, 0, 0]) + n))
        );
    }
    let (_dir, svc) = service(&t);
    for child in ["events", "replica"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(CHILD, child)
            .env("ENVID_BENCH_URL", svc.base_url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    svc.shutdown();
}

fn child_events(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("events.json");
    let (base, _) = rss();
    let started = Instant::now();
    let mut ev = Events::builder(config(url))
        .checkpoint(&cp)
        .build()
        .unwrap();
    let mut joins = 0;
    while joins < MEMORY_IPS {
        if let Some(e) = ev.next(Duration::from_secs(10)).unwrap() {
            ev.ack(&e).unwrap();
            joins += 1;
        }
    }
    ev.flush().unwrap();
    let took = started.elapsed();
    let (now, peak) = rss();
    drop(ev);
    let size = std::fs::metadata(&cp).unwrap().len()
        + std::fs::metadata(dir.path().join("events.json.journal"))
            .unwrap()
            .len();
    // A restart: the checkpoint, then a snapshot diffed against it.
    let restarted = Instant::now();
    let mut ev = Events::builder(config(url))
        .checkpoint(&cp)
        .build()
        .unwrap();
    let loaded = restarted.elapsed();
    while ev.stats().snapshots == 0 {
        assert!(ev.next(Duration::from_millis(50)).unwrap().is_none());
    }
    assert_eq!(ev.stats().joined, MEMORY_IPS);
    let resumed = restarted.elapsed();
    let (after, peak2) = rss();
    println!(
        "events consumer, {MEMORY_IPS} joined IPs (child process): RSS {} over a baseline of {}, \
         peak {}; first {MEMORY_IPS} joins in {:.2} s; checkpoint + journal {:.1} MiB",
        mib(now - base),
        mib(base),
        mib(peak - base),
        took.as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  restart from the checkpoint: read in {}, snapshot diffed in {} more; RSS then {} over baseline (peak {})",
        ms(loaded),
        ms(resumed - loaded),
        mib(after - base),
        mib(peak2 - base)
    );
}

fn child_replica(url: &str) {
    let (base, _) = rss();
    let replica = Replica::builder(config(url)).build().unwrap();
    assert_eq!(replica.stats().records, MEMORY_IPS);
    let (now, peak) = rss();
    println!(
        "replica of the same registry (child process): RSS {} over baseline, peak {}",
        mib(now - base),
        mib(peak - base)
    );
}
