//! Real etcd members for the tests: an N-member cluster on free loopback
//! ports with temporary data directories, killed (and removed) on drop.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether an `etcd` binary is installed (`.ci/run` installs `etcd-server`).
pub fn etcd_available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of its own.
pub struct Cluster {
    _root: tempfile::TempDir,
    extra: Vec<String>,
    /// Clients may connect on any address (the partition test's links).
    listen_any: bool,
    members: Vec<Member>,
    initial_cluster: String,
}

impl Cluster {
    /// Starts `n` members and waits (at most 30 s) until each answers.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// [`Cluster::start`] with extra `etcd` arguments for every member.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_full(n, extra, false)
    }

    /// One member that takes clients on every local address (its port is
    /// [`Cluster::client_port`]).
    pub fn start_listening_anywhere() -> Cluster {
        Cluster::start_full(1, &[], true)
    }

    /// The client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client
    }

    fn start_full(n: usize, extra: &[&str], listen_any: bool) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: root.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            _root: root,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            listen_any,
            members,
            initial_cluster,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::File::create(self._root.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .args(["--data-dir", m.dir.to_str().unwrap()])
            .args([
                "--listen-client-urls",
                &if self.listen_any {
                    format!("http://0.0.0.0:{}", m.client)
                } else {
                    client.clone()
                },
            ])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "envid-test"])
            // Fast elections: the tests kill members.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    /// Client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URLs.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.endpoints().split(',').map(str::to_string).collect()
    }

    /// Kills member `i` (`kill -9`).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts member `i` on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
    }

    /// Waits until every running member answers `/health` with true.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                if health(m.client) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} is not healthy",
                    m.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs `etcdctl`-like operations through the v3 JSON gateway of the
    /// first running member: `POST /v3/<path>` with a JSON body.
    pub fn v3(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a member runs");
        let addr = SocketAddr::from(([127, 0, 0, 1], m.client));
        let r = super::request(
            addr,
            "POST",
            &format!("/v3/{path}"),
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "etcd /v3/{path}: {}", r.body);
        r.json()
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        let r = self.v3(
            "kv/range",
            &serde_json::json!({"key": b64("/"), "count_only": true}),
        );
        r["header"]["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The keys under `prefix` and their values.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let r = self.v3(
            "kv/range",
            &serde_json::json!({"key": b64(prefix), "range_end": b64_bytes(&end)}),
        );
        r["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            unb64(kv["key"].as_str().unwrap()),
                            unb64(kv["value"].as_str().unwrap_or("")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Compacts the history up to `revision`.
    pub fn compact(&self, revision: u64) {
        self.v3(
            "kv/compaction",
            &serde_json::json!({"revision": revision.to_string(), "physical": true}),
        );
    }
}

fn health(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        return false;
    }
    let r = super::get(addr, "/health");
    r.status == 200 && r.body.contains("true")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(s: &str) -> String {
    b64_bytes(s.as_bytes())
}

fn b64_bytes(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A service process (`envid-server`, killable with `kill -9`).
pub struct Service {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Service {
    /// Starts the service binary with `args` and waits for its address.
    pub fn spawn(args: &[&str]) -> Service {
        Service::spawn_in(&[], args)
    }

    /// [`Service::spawn`] under a wrapper command (`ip netns exec NS`).
    pub fn spawn_in(wrapper: &[&str], args: &[&str]) -> Service {
        use std::io::BufRead;
        let bin = env!("CARGO_BIN_EXE_envid-server");
        // The crash tests register without tokens.
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--insecure-open-registration"])
            .collect();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("service starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Service { child, addr }
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A clean stop (closes its stdin).
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
