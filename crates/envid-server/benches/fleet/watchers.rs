//! N etcd watchers, as informers: a client connection each, watching
//! the service's prefix.

use super::*;
use etcd_client::{Client, WatchOptions};

async fn watcher(
    endpoint: String,
    prefix: String,
    from: i64,
    log: Arc<Mutex<Log>>,
    ready: Arc<AtomicUsize>,
) {
    let mut client = match Client::connect([endpoint], None).await {
        Ok(c) => c,
        Err(e) => return lock(&log).errors.push(format!("connect: {e}")),
    };
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = match client.watch(prefix, Some(options)).await {
        Ok(s) => s,
        Err(e) => return lock(&log).errors.push(format!("watch: {e}")),
    };
    ready.fetch_add(1, Ordering::Relaxed);
    loop {
        match stream.message().await {
            Ok(Some(r)) => {
                let newest = r
                    .events()
                    .iter()
                    .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
                    .max();
                if let Some(rev) = newest {
                    let mut l = lock(&log);
                    l.seen.push((Instant::now(), rev as u64));
                    l.deliveries += 1;
                }
            }
            Ok(None) => return,
            Err(e) => return lock(&log).errors.push(format!("watch stream: {e}")),
        }
    }
}

/// The same wave through the service at `a`, followed by `n` etcd
/// watchers; CPU is etcd's (`etcd_pid`).
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    rt: &tokio::runtime::Runtime,
    a: SocketAddr,
    endpoint: &str,
    prefix: &str,
    etcd_pid: u32,
    service_pid: u32,
    n: usize,
    records: usize,
    wave: &Wave,
    salt: usize,
) -> Figures {
    register_old(a, wave.writes, salt);
    let version = get(a, "/healthz").json()["version"].as_u64().unwrap();
    let ready = Arc::new(AtomicUsize::new(0));
    let logs: Logs = (0..n).map(|_| Arc::default()).collect();
    let t0 = Instant::now();
    let tasks: Vec<_> = logs
        .iter()
        .map(|log| {
            rt.spawn(watcher(
                endpoint.to_string(),
                prefix.to_string(),
                version as i64 + 1,
                log.clone(),
                ready.clone(),
            ))
        })
        .collect();
    while ready.load(Ordering::Relaxed) < n && t0.elapsed() < Duration::from_secs(120) {
        if logs.iter().any(|l| !lock(l).errors.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "etcd watchers: {} of {n} watching after {:.1} s",
        ready.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(etcd_pid);
    let service_before = cpu_seconds(service_pid);
    let (writes, write_errors) = release_wave(a, wave.writes, salt, wave.duration);
    let last = writes.last().map_or(version, |w| w.version);
    wait_delivered(&logs, last, Duration::from_secs(30));
    let cpu = cpu_seconds(etcd_pid) - cpu_before;
    let other_cpu = Some(cpu_seconds(service_pid) - service_before);
    for t in &tasks {
        t.abort();
    }
    let deliveries: u64 = logs.iter().map(|l| lock(l).deliveries).sum();
    let (follower_errors, first_errors) = follower_errors(&logs);
    let mut errors = write_errors + follower_errors;
    let latency = latencies(&writes, &logs);
    errors += latency.missing as usize;
    std::thread::sleep(Duration::from_secs(2));
    Figures {
        what: "etcd watchers".into(),
        followers: n,
        records,
        latency,
        cpu,
        other_cpu,
        deliveries,
        changes: (writes.len() * n) as u64,
        memory_per_follower: None,
        bytes_per_change: None,
        errors,
        first_errors,
    }
}
