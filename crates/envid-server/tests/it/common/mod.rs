//! Shared helpers: a minimal blocking HTTP/1.1 client over `TcpStream` (so
//! tests can also send malformed requests) and server setup.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use envid_server::{Config, ServerHandle};

pub mod etcd;
pub mod trust;

/// The repository's example registry.
pub fn example_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/registry.toml")
}

/// The test apps file (`testdata/apps/apps.toml`): hashes of the tokens below.
pub fn apps_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/apps/apps.toml")
}

/// App `payment` (envs prod; idcs cn5, cn6).
pub const PAYMENT: &str = "payment-token-7b1e2c";
/// App `flight_order` (env beta; idc cn0): `testdata/example.toml`'s token.
pub const FLIGHT_ORDER: &str = "tok-example-3f9a1c";
/// App `checkout` (envs beta, prod; any idc), and its rotated token.
pub const CHECKOUT: &str = "checkout-token-4d8a90";
/// The second token of `checkout` (rotation).
pub const CHECKOUT_ROTATED: &str = "checkout-token-rotated-11aa";
/// Operator `release`: any IP, any app.
pub const OPERATOR: &str = "release-token-c0ffee";
/// The `Authorization` header of the operator.
pub const OPERATOR_AUTH: (&str, &str) = ("Authorization", "Bearer release-token-c0ffee");

/// A config on an ephemeral port with a fast reload check, the test apps
/// file, and loopback registration allowed (clients register their own
/// loopback source address).
pub fn config(registry: impl Into<PathBuf>) -> Config {
    let mut c = Config::new(registry);
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.reload_interval = Duration::from_millis(50);
    c.apps_path = Some(apps_file());
    c.allow_loopback_registration = true;
    c
}

/// Serves the example registry.
pub fn serve_example() -> ServerHandle {
    envid_server::spawn(config(example_registry())).expect("server starts")
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {}", self.body))
            .to_string()
    }
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message in {}", self.body))
            .to_string()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    request_from(None, addr, method, path, headers, body)
}

/// A TCP connection to `addr` from the source address `from` (any loopback
/// address works on Linux: 127.0.0.0/8 is all local), so one test can play
/// many hosts.
pub fn connect_from(from: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    let Some(from) = from else {
        return TcpStream::connect(addr).expect("connect");
    };
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect(&addr.into()).expect("connect");
    s.into()
}

/// [`request`] from the source address `from`.
pub fn request_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = connect_from(from, addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body and close; ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// Parses a raw HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

pub fn get_auth(addr: SocketAddr, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    request(addr, "GET", path, &[("Authorization", &auth)], b"")
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// `POST /v1/hosts/lookup` for these IPs.
pub fn lookup(addr: SocketAddr, ips: &[&str]) -> Resp {
    let body = serde_json::json!({ "ips": ips }).to_string();
    post_json(addr, "/v1/hosts/lookup", &body)
}

/// Polls `check` until it returns true or the deadline passes.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of one sample line of the metrics text (exact name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Raises the soft open-files limit to the hard one (floods and benches
/// open thousands of sockets); returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// A registry file of `n` static records (10.x.y.z, apps `app0`..`app96`)
/// in `dir`, for the benches' large registries.
pub fn large_registry(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::with_capacity(n * 70);
    for i in 0..n {
        text.push_str(&format!(
            "[[records]]\nip = \"10.{}.{}.{}\"\napp = \"app{}\"\nenv = \"prod\"\nidc = \"cn0\"\n",
            i / 65_536,
            i / 256 % 256,
            i % 256,
            i % 97
        ));
    }
    let path = dir.join(format!("registry-{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
