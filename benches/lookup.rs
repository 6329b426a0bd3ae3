//! The lookup client against the reference service on loopback.
//!
//! `cargo bench -p envid --bench lookup`
//!
//! * `hit`: a cache hit on one thread (goal ≤ 100 ns).
//! * `miss` and `bare_get` in the same run: a lookup of a never-seen IP (a
//!   real request each time) against a bare keep-alive `GET` of the same kind
//!   of URL with a plain ureq agent (goal: miss ≤ 1.3× bare); and a miss
//!   with the optional strict whole-request deadline (`total_timeout`).
//! * `circuit_open`: a lookup of a never-seen IP while the breaker of the
//!   only endpoint is open: the error comes without a request (tests/lookup.rs
//!   checks that nothing is sent, not how fast).
//! * `storm_*`: the deploy-storm simulation, 2,000 lookups of 500 fresh IPs
//!   from 8 threads; the requests that reached the service are read from its
//!   own `/metrics` and printed (goal ≤ 500 single requests; ≤ 1 per batch).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use envid::lookup::LookupClient;
use envid::ServiceConfig;

/// One /10 range so any IP below 10.64.0.0/10 is known to the service.
const REGISTRY: &str = r#"
schema = 1
[[records]]
ip = "10.0.0.5"
app = "flightqma"
env = "beta"
idc = "cn0"
[[records]]
cidr = "10.64.0.0/10"
app = "flight_order"
env = "prod"
idc = "cn5"
"#;

/// Fresh IPs from 10.64.0.0/10, never repeated within one bench run.
static NEXT: AtomicU32 = AtomicU32::new(0);
fn fresh_ip() -> IpAddr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (1 << 22);
    IpAddr::V4(std::net::Ipv4Addr::from(
        u32::from_be_bytes([10, 64, 0, 0]) + n,
    ))
}

fn requests_seen(url: &str, endpoint: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let body = agent
        .get(format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let needle = format!("endpoint=\"{endpoint}\"");
    body.lines()
        .filter(|l| l.starts_with("envid_http_requests_total") && l.contains(&needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// 8 threads, each looking up 250 of 500 fresh IPs (each IP by 4 threads).
fn storm(url: &str, batch: bool) -> (u64, Duration) {
    let client = Arc::new(
        LookupClient::builder(
            ServiceConfig::builder()
                .endpoint(url)
                .per_phase_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap(),
    );
    let ips: Arc<Vec<IpAddr>> = Arc::new((0..500).map(|_| fresh_ip()).collect());
    let barrier = Arc::new(Barrier::new(8));
    let endpoint = if batch { "lookup" } else { "get_host" };
    let before = requests_seen(url, endpoint);
    let t0 = std::time::Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (client, ips, barrier) = (client.clone(), ips.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mine: Vec<IpAddr> = (0..250).map(|i| ips[(t * 63 + i) % 500]).collect();
                barrier.wait();
                if batch {
                    for r in client.lookup_many(&mine) {
                        assert!(r.unwrap().is_some());
                    }
                } else {
                    for ip in mine {
                        assert!(client.lookup(ip).unwrap().is_some());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let took = t0.elapsed();
    (requests_seen(url, endpoint) - before, took)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, REGISTRY).unwrap();
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = envid_server::spawn(config).unwrap();
    let url = server.base_url();

    let config = ServiceConfig::builder().endpoint(&url).build().unwrap();
    let client = LookupClient::builder(config).build().unwrap();
    let warm: IpAddr = "10.0.0.5".parse().unwrap();
    client.lookup(warm).unwrap().unwrap();
    c.bench_function("hit", |b| {
        b.iter(|| black_box(client.lookup(black_box(warm)).unwrap()))
    });

    let mut g = c.benchmark_group("miss_vs_bare");
    g.bench_function("miss", |b| {
        b.iter(|| black_box(client.lookup(fresh_ip()).unwrap()))
    });
    // The same request shape with a bare keep-alive agent.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    g.bench_function("bare_get", |b| {
        b.iter(|| {
            let mut resp = agent
                .get(format!("{url}/v1/hosts/{}", fresh_ip()))
                .call()
                .unwrap();
            black_box(resp.body_mut().read_to_vec().unwrap())
        })
    });
    // The same with a strict whole-request deadline (`total_timeout`): the
    // cost of re-arming the socket timeout on every read and write.
    let strict_config = ServiceConfig::builder()
        .endpoint(&url)
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let strict = LookupClient::builder(strict_config).build().unwrap();
    g.bench_function("miss_total_timeout", |b| {
        b.iter(|| black_box(strict.lookup(fresh_ip()).unwrap()))
    });
    g.finish();

    // A dead endpoint (a port nothing listens on); one failed lookup opens
    // its breaker for longer than the bench runs.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let open = LookupClient::builder(
        ServiceConfig::builder()
            .endpoint(format!("http://{dead}"))
            .build()
            .unwrap(),
    )
    .max_retries(0)
    .breaker_threshold(1)
    .breaker_cool_down(Duration::from_secs(3600))
    .build()
    .unwrap();
    assert!(open.lookup(fresh_ip()).is_err());
    c.bench_function("circuit_open", |b| {
        b.iter(|| black_box(open.lookup(fresh_ip()).unwrap_err()))
    });
    assert_eq!(open.stats().requests, 1, "only the first lookup was sent");

    let (single, t_single) = storm(&url, false);
    let (batched, t_batch) = storm(&url, true);
    println!(
        "storm: 2,000 lookups of 500 fresh IPs from 8 threads: {single} requests reached \
         the service with lookup() ({t_single:?}); {batched} requests for 8 lookup_many \
         batches ({t_batch:?})"
    );

    let mut g = c.benchmark_group("storm");
    g.sample_size(10);
    g.bench_function("single", |b| b.iter(|| storm(&url, false)));
    g.bench_function("batch", |b| b.iter(|| storm(&url, true)));
    g.finish();
    server.shutdown();
}

criterion_group!(lookup, benches);
criterion_main!(lookup);
