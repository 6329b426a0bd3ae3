//! Real etcd members for the tests: an N-member cluster on free loopback
//! ports with temporary data directories, killed (and removed) on drop.
//! A cluster may serve its clients over TLS with client certificates
//! ([`Cluster::start_tls`], certificates from [`Ca`]) and have
//! authentication enabled ([`Cluster::enable_auth`]); the tests then still
//! reach each member on a plain loopback port of its own (health, the v3
//! JSON gateway), which the service under test is never given.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for the member or client `cn`, valid for 127.0.0.1
    /// and localhost: (certificate PEM, key PEM).
    pub fn leaf(&self, cn: &str) -> (String, String) {
        self.leaf_with(cn, |_| {})
    }

    /// [`Ca::leaf`] with its parameters changed by `f` (validity dates).
    pub fn leaf_with(&self, cn: &str, f: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        params.distinguished_name.push(DnType::CommonName, cn);
        f(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `contents` to `dir/name` (mode 0600) and returns the path.
pub fn write_private(dir: &Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A cluster's client TLS: each member's certificate is signed by
/// `server_ca`; clients must present a certificate signed by a CA in the
/// file `trusted_ca` (read again when a member restarts).
pub struct ClusterTls<'a> {
    /// Signs the members' certificates (what clients give as --etcd-ca).
    pub server_ca: &'a Ca,
    /// The members' `--trusted-ca-file` for client certificates.
    pub trusted_ca: PathBuf,
}

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
    /// A plain-HTTP client port for the tests (the same as `client`
    /// without TLS).
    admin: u16,
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
    /// With TLS: each member's certificate and key, and the trusted CA file.
    tls: Option<(Vec<(PathBuf, PathBuf)>, PathBuf)>,
    /// The root password once authentication is enabled: the gateway calls
    /// then authenticate as root.
    root_password: Mutex<Option<String>>,
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

    /// The process id of member `i` while it runs (the fleet benchmark
    /// reads its CPU time).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// The client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client
    }

    /// `n` members serving clients over TLS only (`--client-cert-auth`);
    /// peers stay on plain HTTP.
    pub fn start_tls(n: usize, tls: &ClusterTls) -> Cluster {
        Cluster::start_inner(n, &[], false, Some(tls))
    }

    fn start_full(n: usize, extra: &[&str], listen_any: bool) -> Cluster {
        Cluster::start_inner(n, extra, listen_any, None)
    }

    fn start_inner(
        n: usize,
        extra: &[&str],
        listen_any: bool,
        tls: Option<&ClusterTls>,
    ) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let client = free_port();
                Member {
                    name: format!("m{i}"),
                    client,
                    admin: if tls.is_some() { free_port() } else { client },
                    peer: free_port(),
                    dir: root.path().join(format!("m{i}")),
                    child: None,
                }
            })
            .collect();
        let tls = tls.map(|t| {
            let certs = members
                .iter()
                .map(|m| {
                    let (cert, key) = t.server_ca.leaf(&m.name);
                    (
                        write_private(root.path(), &format!("{}.pem", m.name), &cert),
                        write_private(root.path(), &format!("{}-key.pem", m.name), &key),
                    )
                })
                .collect::<Vec<_>>();
            (certs, t.trusted_ca.clone())
        });
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
            tls,
            root_password: Mutex::new(None),
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._root.path().join(format!("{}.log", m.name)))
            .unwrap();
        let mut command = Command::new("etcd");
        let listen = if self.listen_any {
            format!("http://0.0.0.0:{}", m.client)
        } else if self.tls.is_some() {
            // The TLS port for the service, a plain one for the tests.
            format!("{client},http://127.0.0.1:{}", m.admin)
        } else {
            client.clone()
        };
        if let Some((certs, trusted)) = &self.tls {
            let (cert, key) = &certs[i];
            command
                .args(["--cert-file", cert.to_str().unwrap()])
                .args(["--key-file", key.to_str().unwrap()])
                .args(["--trusted-ca-file", trusted.to_str().unwrap()])
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name])
            .args(["--data-dir", m.dir.to_str().unwrap()])
            .args(["--listen-client-urls", &listen])
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

    /// Client URLs, comma-separated (`https://` with TLS).
    pub fn endpoints(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client))
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
                if health(m.admin) {
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
    /// first running member: `POST /v3/<path>` with a JSON body (as root
    /// once authentication is enabled).
    pub fn v3(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let r = self.v3_try(path, body);
        assert_eq!(r.status, 200, "etcd /v3/{path}: {}", r.body);
        r.json()
    }

    fn v3_try(&self, path: &str, body: &serde_json::Value) -> super::Resp {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a member runs");
        let addr = SocketAddr::from(([127, 0, 0, 1], m.admin));
        let root = self.root_password.lock().unwrap().clone();
        let token = root.map(|password| {
            let r = super::request(
                addr,
                "POST",
                "/v3/auth/authenticate",
                &[("Content-Type", "application/json")],
                serde_json::json!({"name": "root", "password": password})
                    .to_string()
                    .as_bytes(),
            );
            assert_eq!(r.status, 200, "etcd authenticate as root: {}", r.body);
            r.json()["token"].as_str().unwrap().to_string()
        });
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = &token {
            headers.push(("Authorization", t.as_str()));
        }
        super::request(
            addr,
            "POST",
            &format!("/v3/{path}"),
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// Adds the root user and enables authentication; from here on the
    /// gateway calls are made as root.
    pub fn enable_auth(&self, root_password: &str) {
        self.v3(
            "auth/user/add",
            &serde_json::json!({"name": "root", "password": root_password}),
        );
        self.v3(
            "auth/user/grant",
            &serde_json::json!({"user": "root", "role": "root"}),
        );
        self.v3("auth/enable", &serde_json::json!({}));
        *self.root_password.lock().unwrap() = Some(root_password.to_string());
    }

    /// A role with read and write access to every key under `prefix`.
    pub fn add_role(&self, role: &str, prefix: &str) {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        self.v3("auth/role/add", &serde_json::json!({"name": role}));
        self.v3(
            "auth/role/grant",
            &serde_json::json!({"name": role, "perm": {
                "permType": "READWRITE", "key": b64(prefix), "range_end": b64_bytes(&end)
            }}),
        );
    }

    /// A user with a password and a role.
    pub fn add_user(&self, name: &str, password: &str, role: &str) {
        self.v3(
            "auth/user/add",
            &serde_json::json!({"name": name, "password": password}),
        );
        self.grant_role(name, role);
    }

    /// Grants `role` to `user`.
    pub fn grant_role(&self, user: &str, role: &str) {
        self.v3(
            "auth/user/grant",
            &serde_json::json!({"user": user, "role": role}),
        );
    }

    /// Takes `role` away from `user`.
    pub fn revoke_role(&self, user: &str, role: &str) {
        self.v3(
            "auth/user/revoke",
            &serde_json::json!({"name": user, "role": role}),
        );
    }

    /// Sets `user`'s password.
    pub fn change_password(&self, user: &str, password: &str) {
        self.v3(
            "auth/user/changepw",
            &serde_json::json!({"name": user, "password": password}),
        );
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
