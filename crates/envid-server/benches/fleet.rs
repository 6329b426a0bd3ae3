//! The service at fleet size (issue 24): one instance, N long-poll
//! replicas over loopback, R records, and a release wave of 2,000
//! registrations and 2,000 deregistrations, measured against N etcd
//! watchers on the same etcd in the same run.
//!
//! `cargo bench -p envid-server --bench fleet [--features etcd]`. Settings
//! (environment): `FLEET_REPLICAS` (default `1000,5000,10000`),
//! `FLEET_RECORDS` (`10000,100000`), `FLEET_WAVE_SECS` (60),
//! `FLEET_WAVE_WRITES` (2,000 of each), `FLEET_STORES` (`embedded,etcd`;
//! etcd needs the feature and an `etcd` binary), `FLEET_WATCHERS`
//! (`1`: compare with etcd watchers, `0`: not), `FLEET_FANOUT_RATE` (the
//! service's `--fanout-rate`; its default when unset). A wave the service
//! stretches past three times its length is stopped, and says so.
//!
//! Each replica is a task with one keep-alive connection from a source
//! address of its own (200 replicas share one, 127.1.x.y), following
//! `GET /v1/registry?since=H:N&wait=10` as `envid::replica` does: the next
//! poll at least 200 ms (`min_poll_interval`) after the previous one
//! started. They start from the version of one snapshot rather than each
//! fetching it: 10,000 snapshots of 100,000 records are 100 GB over
//! loopback and say nothing about the wave. A replica reads only each
//! answer's version (the first field). The service is a child process
//! (`envid-server`), so its CPU time and memory are its own
//! (`/proc/<pid>/stat`, `/proc/<pid>/status`). An etcd watcher is what an
//! informer runs: its own client connection (etcd-client) watching the
//! prefix from the revision after the wave's start, so it too skips the
//! list.
//!
//! Figures per run: from each write's acknowledgement to the last
//! follower having it (p50, p99, max over the writes), and per delivery
//! (write × follower: p50, p99); service CPU per 1,000 deliveries; service
//! memory per waiting replica; bytes a replica received per change; errors.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::Service;
use common::{get, metric, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a replica's long poll may wait (the replica's default).
const POLL_WAIT_SECS: u64 = 10;
/// The least time between the starts of two polls (the replica's default).
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Replicas sharing one source address.
const PER_ADDRESS: usize = 200;
/// How many times its asked length a wave may take before it is stopped.
const WAVE_LIMIT: u32 = 3;

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based) of the whole line,
    // 11 and 12 (0-based) after the command.
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) / hz
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

/// What one follower (replica or watcher) saw.
#[derive(Default)]
struct Log {
    /// (when, version) each time a newer version arrived.
    seen: Vec<(Instant, u64)>,
    /// Bytes received (heads and bodies).
    bytes: u64,
    /// Answers that brought a newer version.
    deliveries: u64,
    errors: Vec<String>,
}

type Logs = Vec<Arc<Mutex<Log>>>;

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The source address of replica `i`: 127.1.x.y, [`PER_ADDRESS`] each.
fn source(i: usize) -> IpAddr {
    let a = i / PER_ADDRESS;
    IpAddr::V4(Ipv4Addr::new(127, 1, (a / 250) as u8, (a % 250 + 1) as u8))
}

/// One answer of the service: status and body.
async fn read_answer(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>, usize)> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let total = head_end + length;
    Ok((status, buf[head_end..total].to_vec(), total))
}

/// The `"version"` of a snapshot or delta body (its first field).
fn version_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(&body[..body.len().min(64)]).ok()?;
    let rest = text.split_once("\"version\":")?.1;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A replica following the service from `version` until `stop`.
async fn replica(
    i: usize,
    to: SocketAddr,
    history: Arc<str>,
    mut version: u64,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = Vec::with_capacity(4096);
    let mut conn: Option<tokio::net::TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = tokio::time::Instant::now();
        let s = match conn.as_mut() {
            Some(s) => s,
            None => match connect_from(source(i), to).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    lock(&log).errors.push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let req = format!(
            "GET /v1/registry?since={history}:{version}&wait={POLL_WAIT_SECS} HTTP/1.1\r\nHost: envid\r\n\r\n"
        );
        let answer = match s.write_all(req.as_bytes()).await {
            Ok(()) => read_answer(s, &mut buf).await,
            Err(e) => Err(e),
        };
        let ok = match answer {
            Ok((200, body, n)) => {
                let now = Instant::now();
                let mut l = lock(&log);
                l.bytes += n as u64;
                match version_of(&body) {
                    Some(v) if v > version => {
                        version = v;
                        l.seen.push((now, v));
                        l.deliveries += 1;
                    }
                    Some(_) => {}
                    None => l.errors.push("a 200 without a version".into()),
                }
                true
            }
            Ok((status, body, _)) => {
                if !stop.load(Ordering::Relaxed) {
                    lock(&log)
                        .errors
                        .push(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
                false
            }
            Err(e) => {
                if !stop.load(Ordering::Relaxed) {
                    lock(&log).errors.push(format!("poll: {e}"));
                }
                conn = None;
                false
            }
        };
        let pause = if ok {
            MIN_POLL_INTERVAL
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep_until(started + pause).await;
    }
}

/// One write of the wave: when it was acknowledged, and its version.
#[derive(Clone, Copy)]
struct Write {
    acked: Instant,
    version: u64,
}

fn put(a: SocketAddr, ip: &str) -> (u16, Option<u64>) {
    let body = r#"{"app": "fleet", "env": "prod", "idc": "cn0", "lease_seconds": 3600}"#;
    let r = request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let v = (r.status == 200)
        .then(|| r.json()["version"].as_u64())
        .flatten();
    (r.status, v)
}

fn old_ip(i: usize) -> String {
    format!("10.200.{}.{}", i / 256, i % 256)
}

fn new_ip(i: usize) -> String {
    format!("10.201.{}.{}", i / 256, i % 256)
}

/// The instances of the previous release, registered before the wave.
fn register_old(a: SocketAddr, writes: usize, salt: usize) {
    for i in 0..writes {
        let (status, _) = put(a, &old_ip(i + salt * writes));
        assert_eq!(status, 200, "registering the old release");
    }
}

/// The release wave: new instance i registers, old instance i leaves,
/// evenly over `wave`. A deregistration's answer carries no version; the
/// one writer makes every version, so it is the previous one + 1 (checked
/// against the service's at the end).
fn release_wave(a: SocketAddr, writes: usize, salt: usize, wave: Duration) -> (Vec<Write>, usize) {
    let mut done = Vec::with_capacity(2 * writes);
    let mut errors = 0;
    let step = wave / (2 * writes) as u32;
    let start = Instant::now();
    let mut last = get(a, "/healthz").json()["version"].as_u64().unwrap();
    // A wave stretched this far describes another load than the one
    // asked for: stopped, with what it did and why.
    let limit = wave * WAVE_LIMIT;
    for k in 0..2 * writes {
        if start.elapsed() > limit {
            println!(
                "    stopped the wave after {k} of {} writes and {:.0} s ({WAVE_LIMIT}× the {:.0} s asked): writes were acknowledged too late to keep its rate (the service, or the etcd behind it, short of CPU)",
                2 * writes,
                start.elapsed().as_secs_f64(),
                wave.as_secs_f64()
            );
            break;
        }
        let due = start + step * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = k / 2 + salt * writes;
        if k % 2 == 0 {
            match put(a, &new_ip(i)) {
                (200, Some(v)) => {
                    last = v;
                    done.push(Write {
                        acked: Instant::now(),
                        version: v,
                    });
                }
                _ => errors += 1,
            }
        } else {
            let r = request(a, "DELETE", &format!("/v1/hosts/{}", old_ip(i)), &[], b"");
            if r.status == 204 {
                last += 1;
                done.push(Write {
                    acked: Instant::now(),
                    version: last,
                });
            } else {
                errors += 1;
            }
        }
    }
    let took = start.elapsed();
    if took > wave + wave / 10 {
        // The writer waits for each acknowledgement: a service short of
        // CPU stretches the wave, and every figure then describes a
        // slower wave than asked for.
        println!(
            "    the wave took {:.1} s, not {:.0} s: writes were acknowledged late",
            took.as_secs_f64(),
            wave.as_secs_f64()
        );
    }
    (done, errors)
}

/// Latencies of one run, in ms.
struct Latency {
    /// Per write, until the last follower had it: p50, p99, max.
    last: (f64, f64, f64),
    /// Per (write, follower): p50, p99.
    each: (f64, f64),
    /// (write, follower) pairs never delivered.
    missing: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// How many errors the followers logged, and the first three.
fn follower_errors(logs: &Logs) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut first = Vec::new();
    for l in logs {
        let l = lock(l);
        count += l.errors.len();
        first.extend(l.errors.iter().take(3 - first.len().min(3)).cloned());
    }
    (count, first)
}

fn latencies(writes: &[Write], logs: &Logs) -> Latency {
    // Per-delivery latencies in a histogram of 0.1 ms buckets (40M pairs at
    // 10,000 followers would not fit a vector comfortably).
    const BUCKET_MS: f64 = 0.1;
    let mut histogram = vec![0u64; 1_200_000];
    let mut last = vec![0f64; writes.len()];
    let mut missing = 0u64;
    for log in logs {
        let log = lock(log);
        let mut j = 0;
        for &(at, v) in &log.seen {
            while j < writes.len() && writes[j].version <= v {
                let ms = at.saturating_duration_since(writes[j].acked).as_secs_f64() * 1e3;
                last[j] = last[j].max(ms);
                let b = ((ms / BUCKET_MS) as usize).min(histogram.len() - 1);
                histogram[b] += 1;
                j += 1;
            }
        }
        missing += (writes.len() - j) as u64;
    }
    let total: u64 = histogram.iter().sum();
    let at = |p: f64| {
        let target = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (b, n) in histogram.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return (b + 1) as f64 * BUCKET_MS;
            }
        }
        f64::NAN
    };
    last.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Latency {
        last: (
            percentile(&last, 0.5),
            percentile(&last, 0.99),
            last.last().copied().unwrap_or(f64::NAN),
        ),
        each: (at(0.5), at(0.99)),
        missing,
    }
}

/// One run's figures.
struct Figures {
    what: String,
    followers: usize,
    records: usize,
    latency: Latency,
    /// CPU seconds of the measured process over the wave.
    cpu: f64,
    /// CPU seconds of the other process over the same wave (etcd during
    /// the replicas' wave, the service during the watchers'), which does
    /// the same writes but follows nothing.
    other_cpu: Option<f64>,
    /// Answers (or watch responses) that carried changes.
    deliveries: u64,
    /// Writes × followers.
    changes: u64,
    /// Memory per waiting follower, bytes (replicas only).
    memory_per_follower: Option<f64>,
    /// Bytes received per change per follower (replicas only).
    bytes_per_change: Option<f64>,
    errors: usize,
    first_errors: Vec<String>,
}

impl Figures {
    fn print(&self) {
        let l = &self.latency;
        println!(
            "{} | N={} R={} | to last follower p50 {:.0} / p99 {:.0} / max {:.0} ms | per delivery p50 {:.1} / p99 {:.1} ms | CPU {:.2} s = {:.3} s per 1,000 deliveries ({} answers), {:.4} s per 1,000 changes delivered | {} | {} | errors {} (undelivered {})",
            self.what,
            self.followers,
            self.records,
            l.last.0,
            l.last.1,
            l.last.2,
            l.each.0,
            l.each.1,
            self.cpu,
            self.cpu * 1000.0 / self.deliveries.max(1) as f64,
            self.deliveries,
            self.cpu * 1000.0 / self.changes.max(1) as f64,
            self.memory_per_follower
                .map_or("-".into(), |m| format!("{:.1} KiB per waiting replica", m / 1024.0)),
            self.bytes_per_change
                .map_or("-".into(), |b| format!("{b:.0} B per change per replica")),
            self.errors,
            l.missing,
        );
        for e in &self.first_errors {
            println!("    error: {e}");
        }
        let _ = std::io::stdout().flush();
    }
}

/// envid's replicas against etcd's watchers over the same wave: what
/// following cost each, net of the writes (the other process's CPU over
/// the other side's wave, when it followed nothing, per write), per change
/// delivered to a follower, and the ratios. Per change, because a wave the
/// bench had to stop (see [`WAVE_LIMIT`]) made fewer changes.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
fn compare_runs(envid: &Figures, etcd: &Figures) {
    let (Some(etcd_writes), Some(service_writes)) = (envid.other_cpu, etcd.other_cpu) else {
        return;
    };
    let writes = |f: &Figures| (f.changes / f.followers.max(1) as u64).max(1) as f64;
    // The service's CPU for writes alone, per write, from the etcd side's
    // wave; etcd's likewise from envid's.
    let envid_follow = envid.cpu - service_writes / writes(etcd) * writes(envid);
    let etcd_follow = etcd.cpu - etcd_writes / writes(envid) * writes(etcd);
    let per_change = |cpu: f64, f: &Figures| cpu * 1e6 / f.changes.max(1) as f64;
    println!(
        "    compared, N={}: envid {:.2} s less {:.2} s of writes = {:.2} s for {} changes delivered ({:.2} µs each); etcd {:.2} s less {:.2} s = {:.2} s for {} ({:.2} µs each); CPU per delivered change envid/etcd = {:.2}; delivery p99 envid/etcd = {:.2}",
        envid.followers,
        envid.cpu,
        envid.cpu - envid_follow,
        envid_follow,
        envid.changes,
        per_change(envid_follow, envid),
        etcd.cpu,
        etcd.cpu - etcd_follow,
        etcd_follow,
        etcd.changes,
        per_change(etcd_follow, etcd),
        per_change(envid_follow, envid) / per_change(etcd_follow, etcd),
        envid.latency.last.1 / etcd.latency.last.1,
    );
}

/// Waits until every follower has `version` or `limit` passes.
fn wait_delivered(logs: &Logs, version: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let behind = logs
            .iter()
            .filter(|l| lock(l).seen.last().is_none_or(|&(_, v)| v < version))
            .count();
        if behind == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn long_polls_waiting(a: SocketAddr) -> f64 {
    metric(&get(a, "/metrics").body, "envid_long_polls_in_flight").unwrap_or(0.0)
}

struct Wave {
    writes: usize,
    duration: Duration,
}

/// N replicas against the service at `a` (process `pid`) through one wave.
#[allow(clippy::too_many_arguments)]
fn run_replicas(
    rt: &tokio::runtime::Runtime,
    what: &str,
    a: SocketAddr,
    pid: u32,
    other_pid: Option<u32>,
    n: usize,
    records: usize,
    wave: &Wave,
    salt: usize,
) -> Figures {
    register_old(a, wave.writes, salt);
    let h = get(a, "/healthz").json();
    let version = h["version"].as_u64().unwrap();
    let history: Arc<str> = h["history"].as_str().unwrap_or_default().into();
    // One snapshot, as a replica's start (its bytes are not the wave's).
    let snapshot = get(a, "/v1/registry");
    assert_eq!(snapshot.status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_bytes(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let logs: Logs = (0..n).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            rt.spawn(replica(
                i,
                a,
                history.clone(),
                version,
                log.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let t0 = Instant::now();
    while long_polls_waiting(a) < n as f64 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let waiting = long_polls_waiting(a);
    std::thread::sleep(Duration::from_millis(500));
    let rss_waiting = rss_bytes(pid);
    println!(
        "{what}: {waiting} of {n} replicas waiting after {:.1} s; service RSS {:.1} -> {:.1} MiB",
        t0.elapsed().as_secs_f64(),
        rss_before as f64 / 1048576.0,
        rss_waiting as f64 / 1048576.0
    );
    let bytes_before: u64 = logs.iter().map(|l| lock(l).bytes).sum();
    let cpu_before = cpu_seconds(pid);
    let other_before = other_pid.map(cpu_seconds);
    let (writes, write_errors) = release_wave(a, wave.writes, salt, wave.duration);
    let last = writes.last().map_or(version, |w| w.version);
    wait_delivered(&logs, last, Duration::from_secs(30));
    let cpu = cpu_seconds(pid) - cpu_before;
    let other_cpu = other_pid.zip(other_before).map(|(p, b)| cpu_seconds(p) - b);
    let service_version = get(a, "/healthz").json()["version"].as_u64().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    let bytes: u64 = logs.iter().map(|l| lock(l).bytes).sum::<u64>() - bytes_before;
    let deliveries: u64 = logs.iter().map(|l| lock(l).deliveries).sum();
    let (follower_errors, mut first_errors) = follower_errors(&logs);
    let mut errors = write_errors + follower_errors;
    if service_version != last {
        errors += 1;
        first_errors.push(format!(
            "the service is at version {service_version}, the writer counted {last}: versions inferred wrongly"
        ));
    }
    let latency = latencies(&writes, &logs);
    errors += latency.missing as usize;
    // Let the aborted tasks close their sockets before the next run.
    std::thread::sleep(Duration::from_secs(1));
    Figures {
        what: what.into(),
        followers: n,
        records,
        latency,
        cpu,
        other_cpu,
        deliveries,
        changes: (writes.len() * n) as u64,
        memory_per_follower: Some((rss_waiting as f64 - rss_before as f64) / n as f64),
        bytes_per_change: Some(bytes as f64 / (writes.len() * n) as f64),
        errors,
        first_errors,
    }
}

#[cfg(feature = "etcd")]
#[path = "fleet/watchers.rs"]
mod watchers;

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let limit = common::raise_nofile_limit();
    println!("open-files limit: {limit}");
    println!(
        "service --fanout-rate: {}",
        std::env::var("FLEET_FANOUT_RATE").unwrap_or_else(|_| "its default".into())
    );
    let replicas = env_list("FLEET_REPLICAS", "1000,5000,10000");
    let records = env_list("FLEET_RECORDS", "10000,100000");
    let wave = Wave {
        writes: env_num("FLEET_WAVE_WRITES", 2_000) as usize,
        duration: Duration::from_secs(env_num("FLEET_WAVE_SECS", 60)),
    };
    let stores = std::env::var("FLEET_STORES").unwrap_or_else(|_| "embedded,etcd".into());
    let compare = env_num("FLEET_WATCHERS", 1) == 1;
    println!(
        "release wave: {} registrations and {} deregistrations in {:?}",
        wave.writes, wave.writes, wave.duration
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fleet-followers")
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let most = replicas.iter().copied().max().unwrap_or(0);
    let mut all = Vec::new();
    for store in stores.split(',') {
        let etcd = store == "etcd";
        if etcd && !(cfg!(feature = "etcd") && common::etcd::etcd_available()) {
            println!("etcd: skipped (needs --features etcd and an etcd binary)");
            continue;
        }
        #[cfg(feature = "etcd")]
        let cluster = etcd.then(|| {
            common::etcd::Cluster::start_with(
                1,
                &[
                    "--max-request-bytes",
                    "67108864",
                    "--quota-backend-bytes",
                    "8589934592",
                ],
            )
        });
        for (k, &r) in records.iter().enumerate() {
            let reg = common::large_registry(dir.path(), r);
            let mut args = vec![
                "--registry".to_string(),
                reg.display().to_string(),
                // Long polls may hold seven eighths of the connections.
                "--max-connections".into(),
                (most * 8 / 7 + 2_000).to_string(),
                "--max-long-polls".into(),
                (most + 1_000).to_string(),
            ];
            if let Ok(rate) = std::env::var("FLEET_FANOUT_RATE") {
                args.extend(["--fanout-rate".into(), rate]);
            }
            let prefix = format!("/fleet{k}/");
            #[cfg(feature = "etcd")]
            if let Some(c) = &cluster {
                args.extend([
                    "--etcd".into(),
                    c.endpoints(),
                    "--etcd-prefix".into(),
                    prefix.clone(),
                ]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let svc = Service::spawn(&refs);
            common::wait_until("the service", Duration::from_secs(120), || {
                get(svc.addr, "/healthz").status == 200
            });
            let pid = svc.child.id();
            for (salt, &n) in replicas.iter().enumerate() {
                // The followers' sockets are this process's; the service's
                // its own (same limit, inherited).
                if (n + 1_000) as u64 > limit {
                    println!(
                        "{store} N={n} R={r}: skipped: the open-files limit {limit} is below {n} + 1,000"
                    );
                    continue;
                }
                let what = format!("envid ({store})");
                #[cfg(feature = "etcd")]
                let etcd_pid = cluster.as_ref().and_then(|c| c.pid(0));
                #[cfg(not(feature = "etcd"))]
                let etcd_pid = None;
                let f = run_replicas(&rt, &what, svc.addr, pid, etcd_pid, n, r, &wave, salt * 2);
                f.print();
                #[cfg(feature = "etcd")]
                if let (true, Some(c)) = (compare, &cluster) {
                    let w = watchers::run(
                        &rt,
                        svc.addr,
                        &c.endpoint_list()[0],
                        &prefix,
                        c.pid(0).unwrap(),
                        pid,
                        n,
                        r,
                        &wave,
                        salt * 2 + 1,
                    );
                    w.print();
                    compare_runs(&f, &w);
                    all.push(w);
                }
                all.push(f);
            }
            svc.stop();
        }
    }
    println!("\nsummary:");
    for f in &all {
        f.print();
    }
    let errors: usize = all.iter().map(|f| f.errors).sum();
    println!("errors in all: {errors}");
}
