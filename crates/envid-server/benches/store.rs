//! The stores against the registry's size: registration throughput at
//! 100,000 records against 1,000, lookup throughput while registrations run
//! against idle, how fast 1,000 waiting long polls hear of a change, and
//! memory per record, for the embedded store (state file on) and the etcd
//! store (a 1-member etcd on loopback). Each figure is measured against a
//! real service process (`envid-server`), over loopback.
//!
//! `cargo bench -p envid-server --bench store` (`STORE_BENCH_RECORDS` sets
//! the large size, default 100,000; `STORE_BENCH_ETCD=0` skips etcd). Not
//! criterion: what matters is the ratios between two runs of one service,
//! which it prints.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd::{etcd_available, Cluster, Service};
use common::{get, request};

const WRITERS: usize = 8;
const REGISTRATIONS: usize = 4_000;

fn put(a: SocketAddr, ip: &str) -> u16 {
    let body = r#"{"app": "bench", "env": "beta", "idc": "cn0", "lease_seconds": 600}"#;
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .status
}

/// Registrations per second from `WRITERS` threads; `salt` keeps runs apart.
fn registration_rate(a: SocketAddr, salt: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REGISTRATIONS {
                    return;
                }
                let ip = format!("172.{}.{}.{}", 16 + salt, i / 256, i % 256);
                assert_eq!(put(a, &ip), 200);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    REGISTRATIONS as f64 / started.elapsed().as_secs_f64()
}

/// Lookups per second from 2 threads over `for_how_long`.
fn lookup_rate(a: SocketAddr, n: usize, for_how_long: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut i = t;
                while started.elapsed() < for_how_long {
                    let k = (i * 7_919) % n;
                    let ip = format!("10.{}.{}.{}", k / 65_536, k / 256 % 256, k % 256);
                    assert_eq!(get(a, &format!("/v1/hosts/{ip}")).status, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 2;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// How long after a change each of `n` waiting long polls is answered (ms, sorted).
fn long_poll_latencies(a: SocketAddr, n: usize) -> Vec<f64> {
    let h = get(a, "/healthz").json();
    let v = h["version"].as_u64().unwrap();
    let mut socks: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            write!(
                s,
                "GET /v1/registry?since={v}&wait=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    // Let them all get to waiting.
    std::thread::sleep(Duration::from_millis(1_500));
    for s in &socks {
        s.set_nonblocking(true).unwrap();
    }
    let changed = Instant::now();
    assert_eq!(put(a, "192.0.2.77"), 200);
    let mut answered = vec![None; n];
    let mut left = n;
    let mut buf = [0u8; 1];
    while left > 0 && changed.elapsed() < Duration::from_secs(20) {
        for (i, s) in socks.iter_mut().enumerate() {
            if answered[i].is_none() && matches!(s.read(&mut buf), Ok(1)) {
                answered[i] = Some(changed.elapsed().as_secs_f64() * 1000.0);
                left -= 1;
            }
        }
    }
    let mut ms: Vec<f64> = answered
        .into_iter()
        .map(|a| a.unwrap_or(f64::INFINITY))
        .collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ms
}

fn bench(name: &str, args: &dyn Fn(&std::path::Path) -> Vec<String>, small: usize, large: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rates = Vec::new();
    let mut rss = Vec::new();
    for (salt, n) in [small, large].into_iter().enumerate() {
        let reg = common::large_registry(dir.path(), n);
        let mut a = vec!["--registry".to_string(), reg.display().to_string()];
        a.extend(args(&dir.path().join(format!("run{salt}"))));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let svc = Service::spawn(&refs);
        common::wait_until("ready", Duration::from_secs(120), || {
            get(svc.addr, "/healthz").status == 200
        });
        rss.push(rss_bytes(svc.child.id()));
        let rate = registration_rate(svc.addr, salt);
        println!("{name}: {rate:>8.0} registrations/s at {n} records");
        rates.push(rate);
        if n == large {
            let idle = lookup_rate(svc.addr, n, Duration::from_secs(3));
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let stop = stop.clone();
                let a = svc.addr;
                std::thread::spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        put(a, &format!("172.30.{}.{}", i / 256 % 256, i % 256));
                        i += 1;
                    }
                })
            };
            let busy = lookup_rate(svc.addr, n, Duration::from_secs(3));
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            println!(
                "{name}: lookups {idle:>8.0}/s idle, {busy:>8.0}/s while registering: ratio {:.2}",
                busy / idle
            );
            let ms = long_poll_latencies(svc.addr, 1_000);
            println!(
                "{name}: 1,000 long polls answered after a change: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                ms[ms.len() / 2],
                ms[ms.len() * 99 / 100 - 1],
                ms[ms.len() - 1]
            );
        }
        svc.stop();
    }
    println!(
        "{name}: registration throughput at {large} / at {small} records: {:.2}",
        rates[1] / rates[0]
    );
    println!(
        "{name}: memory: {:.0} bytes per record (RSS {} MB at {large}, {} MB at {small})",
        (rss[1] as f64 - rss[0] as f64) / (large - small) as f64,
        rss[1] / 1_000_000,
        rss[0] / 1_000_000
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let large: usize = std::env::var("STORE_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let small = 1_000;
    bench(
        "embedded",
        &|dir| {
            std::fs::create_dir_all(dir).unwrap();
            vec![
                "--state".into(),
                dir.join("state.json").display().to_string(),
            ]
        },
        small,
        large,
    );
    if !cfg!(feature = "etcd") {
        println!("etcd: skipped (built without the etcd store: add --features etcd)");
        return;
    }
    if std::env::var("STORE_BENCH_ETCD").as_deref() == Ok("0") || !etcd_available() {
        println!("etcd: skipped");
        return;
    }
    // The static set is one value: room for 100,000 records.
    let cluster = Cluster::start_with(1, &["--max-request-bytes", "67108864"]);
    let endpoints = cluster.endpoints();
    let counter = AtomicUsize::new(0);
    bench(
        "etcd",
        &|_| {
            // A prefix per run: the two sizes do not see each other.
            let i = counter.fetch_add(1, Ordering::Relaxed);
            vec![
                "--etcd".into(),
                endpoints.clone(),
                "--etcd-prefix".into(),
                format!("/bench{i}/"),
            ]
        },
        small,
        large,
    );
}
