//! `envid serve --etcd https://…` with `--etcd-ca`, `--etcd-user` and the
//! password from `ENVID_ETCD_PASSWORD` or `--etcd-password-file`, against
//! one real etcd member on loopback serving TLS with authentication on: the
//! refusals stop the process at start (exit 1) with the cause and the flag
//! on stderr, and the right settings serve.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The JSON object in a body (chunked or not).
fn json(body: &str) -> serde_json::Value {
    let (start, end) = (body.find('{').unwrap(), body.rfind('}').unwrap());
    serde_json::from_str(&body[start..=end]).unwrap()
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &x| (a << 8) | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// One etcd member: TLS for clients on `client`, a plain port `admin` for
/// this test's setup calls; killed on drop.
struct Etcd {
    child: Child,
    client: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start(dir: tempfile::TempDir, cert: &Path, key: &Path) -> Etcd {
        let (client, admin, peer) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "m0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &format!("https://127.0.0.1:{client},http://127.0.0.1:{admin}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{client}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("m0=http://127.0.0.1:{peer}")])
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let etcd = Etcd {
            child,
            client,
            admin,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", admin)).is_err()
            || !http(admin, "GET", "/health", &[], "").1.contains("true")
        {
            assert!(Instant::now() < deadline, "etcd is not healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    fn v3(&self, path: &str, body: serde_json::Value, token: Option<&str>) -> serde_json::Value {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("Authorization", t));
        }
        let (status, body) = http(
            self.admin,
            "POST",
            &format!("/v3/{path}"),
            &headers,
            &body.to_string(),
        );
        assert_eq!(status, 200, "/v3/{path}: {body}");
        json(&body)
    }

    /// Root, a user `envid` with readwrite on `/envid/`, auth on.
    fn enable_auth(&self) {
        use serde_json::json;
        self.v3(
            "auth/user/add",
            json!({"name": "root", "password": "root-pw"}),
            None,
        );
        self.v3(
            "auth/user/grant",
            json!({"user": "root", "role": "root"}),
            None,
        );
        self.v3("auth/role/add", json!({"name": "envid-rw"}), None);
        self.v3(
            "auth/role/grant",
            json!({"name": "envid-rw", "perm": {"permType": "READWRITE", "key": b64("/envid/"), "range_end": b64("/envid0")}}),
            None,
        );
        self.v3(
            "auth/user/add",
            json!({"name": "envid", "password": "right-pw"}),
            None,
        );
        self.v3(
            "auth/user/grant",
            json!({"user": "envid", "role": "envid-rw"}),
            None,
        );
        self.v3("auth/enable", json!({}), None);
    }
}

fn registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/registry.toml")
}

/// `envid serve` with `args` and `vars`, which must exit within 20 s.
fn serve_exits(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
    c.args([
        "serve",
        "--registry",
        registry().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(args)
    .env_remove("ENVID_ETCD_PASSWORD")
    .env_remove("ENVID_SERVE_TOKEN")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in vars {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "envid serve did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn serve_on_etcd_with_tls_and_a_user_refuses_at_start_naming_the_cause() {
    if !envid_testkit::require_program("etcd", "envid serve is run against a real etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = ca("etcd CA");
    let other_ca = ca("another CA");
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    let cert = leaf.signed_by(&key, &server_ca).unwrap();
    let etcd_dir = tempfile::tempdir().unwrap();
    let member_cert = write(etcd_dir.path(), "m0.pem", &cert.pem(), 0o600);
    let member_key = write(etcd_dir.path(), "m0-key.pem", &key.serialize_pem(), 0o600);
    let etcd = Etcd::start(etcd_dir, &member_cert, &member_key);
    etcd.enable_auth();
    let url = format!("https://127.0.0.1:{}", etcd.client);
    let ca_file = write(d, "ca.pem", &server_ca.pem(), 0o644);
    let other = write(d, "other.pem", &other_ca.pem(), 0o644);

    // A CA that did not sign the member's certificate.
    let out = serve_exits(
        &[
            "--etcd",
            &url,
            "--etcd-ca",
            other.to_str().unwrap(),
            "--etcd-user",
            "envid",
        ],
        &[("ENVID_ETCD_PASSWORD", "right-pw")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "envid: etcd: TLS handshake failed: the server's certificate is not signed by --etcd-ca {}",
            other.display()
        )),
        "{err}"
    );

    // A wrong password from the environment: named, never shown.
    let out = serve_exits(
        &[
            "--etcd",
            &url,
            "--etcd-ca",
            ca_file.to_str().unwrap(),
            "--etcd-user",
            "envid",
        ],
        &[("ENVID_ETCD_PASSWORD", "wrong-pw-5150")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("envid: etcd: authentication failed for user envid: wrong password"),
        "{err}"
    );
    assert!(err.contains("ENVID_ETCD_PASSWORD"), "{err}");
    assert!(!err.contains("wrong-pw-5150"), "{err}");

    // A password file others may read.
    let loose = write(d, "loose.pw", "right-pw\n", 0o644);
    let out = serve_exits(
        &[
            "--etcd",
            &url,
            "--etcd-ca",
            ca_file.to_str().unwrap(),
            "--etcd-user",
            "envid",
            "--etcd-password-file",
            loose.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("readable by group or others (mode 0644)"),
        "{err}"
    );

    // https:// without --etcd-ca.
    let out = serve_exits(&["--etcd", &url], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("give --etcd-ca FILE"), "{err}");

    // The right settings serve.
    let pw = write(d, "envid.pw", "right-pw\n", 0o600);
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args([
            "serve",
            "--registry",
            registry().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--etcd", &url, "--etcd-ca", ca_file.to_str().unwrap()])
        .args([
            "--etcd-user",
            "envid",
            "--etcd-password-file",
            pw.to_str().unwrap(),
        ])
        .env_remove("ENVID_ETCD_PASSWORD")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = crate::cli::common::stderr_lines(&mut child);
    let addr: SocketAddr = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                assert!(!line.contains("right-pw"), "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    break rest.split_whitespace().next().unwrap().parse().unwrap();
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("envid serve did not start");
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let (status, body) = http(addr.port(), "GET", "/healthz", &[], "");
        if status == 200 {
            break json(&body);
        }
        assert!(Instant::now() < deadline, "not ready: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["etcd"]["tls"], true, "{health}");
    assert_eq!(health["etcd"]["user"], "envid", "{health}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "envid serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
