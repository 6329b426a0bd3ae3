//! `envid events` as a process against the real service (in this process,
//! on 127.0.0.1): consumers killed with `kill -9` at random moments while
//! 1,000 hosts register and 600 expire still end believing exactly what
//! the service has, having acted on every event; a failing hook is logged
//! and shown in the status file; SIGTERM lets the running hook finish.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envid::client::ClientError;
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};
use envid::ServiceConfig;

/// The service: registration open, loopback addresses allowed, no
/// registration rate limit, and leases left to expire however many lapse
/// (self-preservation would keep them: this test is about the consumer).
fn service(registry: &str) -> (tempfile::TempDir, envid_server::ServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, registry).unwrap();
    let mut config = envid_server::Config::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.insecure_open_registration = true;
    config.allow_loopback_registration = true;
    config.register_limit = 0;
    config.lease_preservation = false;
    config.drain_timeout = Duration::from_millis(200);
    (dir, envid_server::spawn(config).expect("service starts"))
}

/// `envid events ARGS`, its stdout dropped and its stderr lines sent to
/// the receiver.
fn consumer(url: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .arg("events")
        .args(["--endpoint", url, "--timeout-ms", "2000"])
        .args(args)
        .env_remove("ENVID_ENDPOINT")
        .env_remove("ENVID_LOOKUP_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // Read to the end even when nobody listens: a consumer whose
        // stderr pipe closed would fail on its next line.
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// The exit status within `secs` seconds.
fn wait_exit(mut child: Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("envid events did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A small generator of pauses, seeded from the clock (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn nth(i: usize) -> IpAddr {
    format!("127.77.{}.{}", i / 250, i % 250 + 1)
        .parse()
        .unwrap()
}

fn app_of(i: usize) -> &'static str {
    ["a", "b", "c"][i % 3]
}

fn env_of(i: usize) -> &'static str {
    if i % 2 == 0 {
        "prod"
    } else {
        "beta"
    }
}

fn register(reg: &Registrar, i: usize, lease: Duration) {
    let record: HostRecord = serde_json::from_value(serde_json::json!({
        "app": app_of(i), "env": env_of(i), "idc": "cn0"
    }))
    .unwrap();
    let r = Registration { record, lease };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match reg.register(nth(i), &r) {
            Ok(()) => return,
            Err(ClientError::RateLimited { retry_after, .. }) if Instant::now() < deadline => {
                thread::sleep(retry_after.unwrap_or(Duration::from_millis(50)))
            }
            Err(e) => panic!("register {}: {e}", nth(i)),
        }
    }
}

/// The IPs the service has, with (app, env).
fn service_hosts(url: &str) -> BTreeMap<IpAddr, (String, String)> {
    let body: serde_json::Value =
        serde_json::from_str(&ureq_get(&format!("{url}/v1/registry"))).unwrap();
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let ip = r["ip"].as_str()?.parse().ok()?;
            Some((
                ip,
                (
                    r["app"].as_str().unwrap_or("").to_string(),
                    r["env"].as_str().unwrap().to_string(),
                ),
            ))
        })
        .collect()
}

fn ureq_get(url: &str) -> String {
    let config = ServiceConfig::builder().endpoint(url).build().unwrap();
    let transport = envid::client::HttpTransport::new(&config);
    let (endpoint, path) = url.split_at(url.find("/v1/").unwrap());
    let bytes = envid::client::Transport::send(
        &transport,
        &envid::client::Request::new(envid::client::Method::Get, endpoint, path),
    )
    .unwrap()
    .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// One hook run: `kind ip app env id`.
struct Acted {
    kind: String,
    ip: IpAddr,
    app: String,
    env: String,
}

fn read_log(path: &Path) -> Vec<Acted> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.split(' ').count() == 5)
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Acted {
                kind: f[0].to_string(),
                ip: f[1].parse().unwrap(),
                app: f[2].to_string(),
                env: f[3].to_string(),
            }
        })
        .collect()
}

/// What the hooks were told, replayed in order: the IPs joined.
fn believed(log: &[Acted]) -> BTreeSet<IpAddr> {
    let mut set = BTreeSet::new();
    for a in log {
        match a.kind.as_str() {
            "join" | "change" => {
                set.insert(a.ip);
            }
            "leave" => {
                set.remove(&a.ip);
            }
            other => panic!("unknown event {other}"),
        }
    }
    set
}

struct Filtered {
    name: &'static str,
    args: Vec<String>,
    matches: fn(&str, &str) -> bool,
    checkpoint: PathBuf,
    log: PathBuf,
}

#[test]
fn consumers_killed_at_random_still_believe_what_the_service_has() {
    let (_svc_dir, svc) = service("schema = 1\n");
    let url = svc.base_url();
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Lcg(seed);
    let hook = |log: &Path| {
        format!(
            "echo \"$ENVID_EVENT $ENVID_IP $ENVID_APP $ENVID_ENV $ENVID_EVENT_ID\" >> {}",
            log.display()
        )
    };
    let filters = [
        Filtered {
            name: "app=a",
            args: vec!["--app".into(), "a".into()],
            matches: |app, _| app == "a",
            checkpoint: dir.path().join("a.json"),
            log: dir.path().join("a.log"),
        },
        Filtered {
            name: "env=prod",
            args: vec!["--env".into(), "prod".into()],
            matches: |_, env| env == "prod",
            checkpoint: dir.path().join("prod.json"),
            log: dir.path().join("prod.log"),
        },
    ];
    let start = |f: &Filtered| {
        let mut args: Vec<String> = f.args.clone();
        args.extend([
            "--checkpoint".into(),
            f.checkpoint.display().to_string(),
            "--exec".into(),
            hook(&f.log),
            "--status-interval".into(),
            "1".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        consumer(&url, &args).0
    };
    let mut children: Vec<Child> = filters.iter().map(start).collect();
    let began = Instant::now();

    // 1,000 registrations over about 3 s: the first 600 with a 6 s lease
    // that is never renewed, the others for an hour.
    let registering = {
        let url = url.clone();
        thread::spawn(move || {
            let reg = Registrar::new(ServiceConfig::builder().endpoint(url).build().unwrap());
            for i in 0..1000 {
                let lease = if i < 600 { 6 } else { 3600 };
                register(&reg, i, Duration::from_secs(lease));
                if i % 100 == 99 {
                    thread::sleep(Duration::from_millis(300));
                }
            }
        })
    };

    // Five kills of each consumer, at random moments over the first ~10 s
    // (registrations and expiries both), each restarted at once.
    let mut kills = 0;
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(800 + rng.below(2000)));
        for (child, f) in children.iter_mut().zip(&filters) {
            thread::sleep(Duration::from_millis(rng.below(200)));
            signal(child, "-KILL");
            let _ = child.wait();
            kills += 1;
            *child = start(f);
        }
    }
    registering.join().unwrap();
    println!("{kills} kills by {:.1}s", began.elapsed().as_secs_f64());

    // The 600 leases end; then each consumer's hooks converge on the service.
    let deadline = Instant::now() + Duration::from_secs(40);
    while service_hosts(&url).len() != 400 {
        assert!(Instant::now() < deadline, "the leases did not expire");
        thread::sleep(Duration::from_millis(100));
    }
    let hosts = service_hosts(&url);
    for f in &filters {
        let want: BTreeSet<IpAddr> = hosts
            .iter()
            .filter(|(_, (app, env))| (f.matches)(app, env))
            .map(|(ip, _)| *ip)
            .collect();
        loop {
            if believed(&read_log(&f.log)) == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the hooks believe {} IPs, the service has {}",
                f.name,
                believed(&read_log(&f.log)).len(),
                want.len()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    for child in children {
        signal(&child, "-TERM");
        assert_eq!(wait_exit(child, 10).code(), Some(0));
    }

    for f in &filters {
        let log = read_log(&f.log);
        let want: BTreeSet<IpAddr> = hosts
            .iter()
            .filter(|(_, (app, env))| (f.matches)(app, env))
            .map(|(ip, _)| *ip)
            .collect();
        assert_eq!(believed(&log), want, "{}", f.name);
        // No hook for an IP outside the filter.
        for a in &log {
            assert!(
                (f.matches)(&a.app, &a.env),
                "{}: hook for {} {} {}",
                f.name,
                a.ip,
                a.app,
                a.env
            );
        }
        // Every host under the filter was acted on as joined, and every
        // one that expired as left after that.
        let mut joins = BTreeSet::new();
        let mut left_after_join = BTreeSet::new();
        for a in &log {
            match a.kind.as_str() {
                "join" => {
                    joins.insert(a.ip);
                }
                "leave" if joins.contains(&a.ip) => {
                    left_after_join.insert(a.ip);
                }
                _ => {}
            }
        }
        let under: Vec<usize> = (0..1000)
            .filter(|i| (f.matches)(app_of(*i), env_of(*i)))
            .collect();
        let expected_joins: BTreeSet<IpAddr> = under.iter().map(|i| nth(*i)).collect();
        let expected_leaves: BTreeSet<IpAddr> = under
            .iter()
            .filter(|i| **i < 600)
            .map(|i| nth(*i))
            .collect();
        assert_eq!(joins, expected_joins, "{}: joins acted on", f.name);
        assert_eq!(
            left_after_join, expected_leaves,
            "{}: leaves acted on",
            f.name
        );
        let repeats = log.len() - joins.len() - left_after_join.len();
        println!(
            "{}: {} hooks run for {} joins and {} leaves ({} repeats after kill -9)",
            f.name,
            log.len(),
            joins.len(),
            left_after_join.len(),
            repeats
        );
    }
    println!("done in {:.1}s", began.elapsed().as_secs_f64());
    svc.shutdown();
}

#[test]
fn a_failing_hook_is_visible_and_sigterm_lets_the_running_one_finish() {
    let registry = "schema = 1\n\
        [[records]]\nip = \"10.9.0.1\"\napp = \"a\"\nenv = \"prod\"\nidc = \"cn0\"\n\
        [[records]]\nip = \"10.9.0.2\"\napp = \"a\"\nenv = \"prod\"\nidc = \"cn0\"\n";
    let (_svc_dir, svc) = service(registry);
    let url = svc.base_url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Fails until the file `ok` exists; then records its environment and
    // input, and takes a second.
    let hook = format!(
        "[ -e {d}/ok ] || exit 3; env | grep ^ENVID_ | sort > {d}/env.$ENVID_IP; \
         cat > {d}/stdin.$ENVID_IP; echo $ENVID_EVENT_ID >> {d}/ran; sleep 1"
    );
    let checkpoint = dir.path().join("cp.json");
    let status_file = dir.path().join("status.json");
    let args = [
        "--app",
        "a",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--exec",
        &hook,
        "--exec-max-backoff",
        "1",
        "--status-file",
        status_file.to_str().unwrap(),
    ];
    let (child, rx) = consumer(&url, &args);
    // Each failure is logged with its attempt count and the event id.
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while failures.len() < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("hook failures logged");
        if line.contains("hook failed") {
            failures.push(line);
        }
    }
    println!("{}", failures.join("\n"));
    for (n, l) in failures.iter().enumerate() {
        assert!(l.contains(&format!("attempt {}", n + 1)), "{l}");
        assert!(l.contains("/10.9.0.1 (join 10.9.0.1)"), "{l}");
        assert!(l.contains("exit status: 3"), "{l}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
    println!("status file: {status}");
    assert_eq!(status["failing"]["attempts"], 3, "{status}");
    assert!(status["failing"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/10.9.0.1"));
    assert!(
        status["oldest_pending_seconds"].as_f64().unwrap() > 0.1,
        "{status}"
    );
    assert_eq!(status["pending"], 2);

    // The hook succeeds now; SIGTERM while it runs: it finishes, exit 0.
    std::fs::write(dir.path().join("ok"), "").unwrap();
    let ran = dir.path().join("ran");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ran.exists() {
        assert!(Instant::now() < deadline, "the hook did not run");
        thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    signal(&child, "-TERM");
    assert_eq!(wait_exit(child, 10).code(), Some(0));
    assert!(
        signalled.elapsed() > Duration::from_millis(500),
        "the hook was waited for"
    );
    let env = std::fs::read_to_string(dir.path().join("env.10.9.0.1")).unwrap();
    println!("{env}");
    for var in [
        "ENVID_EVENT=join",
        "ENVID_IP=10.9.0.1",
        "ENVID_APP=a",
        "ENVID_ENV=prod",
        "ENVID_IDC=cn0",
        "ENVID_REGISTRATION=",
        "ENVID_PREVIOUS_REGISTRATION=",
    ] {
        assert!(
            env.lines()
                .any(|l| l == var || (var.ends_with('=') && l.starts_with(var))),
            "{var} in {env}"
        );
    }
    let id = std::fs::read_to_string(&ran).unwrap().trim().to_string();
    assert!(env.contains(&format!("ENVID_EVENT_ID={id}")), "{env}");
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stdin.10.9.0.1")).unwrap())
            .unwrap();
    assert_eq!(stdin["id"], id.as_str());
    assert_eq!(stdin["event"], "join");
    assert_eq!(stdin["record"]["app"], "a");

    // It was checkpointed before the exit: a restart goes on with the next.
    let (child, _rx) = consumer(&url, &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&ran).unwrap().lines().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second event was not acted on"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(1500));
    let ran_ids = std::fs::read_to_string(&ran).unwrap();
    let ids: Vec<&str> = ran_ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[1].ends_with("/10.9.0.2"), "{ids:?}");
    signal(&child, "-TERM");
    assert_eq!(wait_exit(child, 10).code(), Some(0));
    svc.shutdown();
}
