//! What the CLI tests share: the built binary with a clean environment,
//! its output, and services to run it against.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn testdata(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(p)
}

/// The binary with a clean environment: no ENVID_* or Kubernetes variables
/// from the machine running the tests.
pub fn envid(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ENVID_")
            || k.starts_with("POD_")
            || k == "NODE_NAME"
            || k.starts_with("KUBERNETES_")
        {
            c.env_remove(k);
        }
    }
    c.output().expect("run envid")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `envid serve` on an ephemeral port; returns the child and its base URL
/// (read from its "listening on" line, within 10 s).
pub fn serve(
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    serve_on("127.0.0.1:0", extra)
}

/// [`serve`] on `listen` (to restart a service on the same address).
pub fn serve_on(
    listen: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    serve_registry(&testdata("registry.toml"), listen, extra)
}

/// [`serve_on`] with another registry file.
pub fn serve_registry(
    registry: &Path,
    listen: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut args = vec![
        "serve",
        "--registry",
        registry.to_str().unwrap(),
        "--listen",
        listen,
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args(&args)
        .env_remove("ENVID_SERVE_TOKEN")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    // The URL ends the log message; structured fields follow.
                    let url = rest.split_whitespace().next().unwrap().to_string();
                    return (child, url, rx);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("envid serve did not start");
            }
        }
    }
}

/// The child's stderr, line by line. Drained for the child's whole life,
/// even once nobody reads: a closed pipe would end it.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// SIGTERM, then the exit status within 10 s.
pub fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("envid serve ignored SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`envid`] with extra variables.
pub fn envid_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ENVID_") || k.starts_with("POD_") || k.starts_with("KUBERNETES_") {
            c.env_remove(k);
        }
    }
    c.envs(vars.iter().copied());
    c.output().expect("run envid")
}

/// The test apps file (tokens in crates/envid-server/tests/common).
pub fn apps() -> String {
    testdata("apps/apps.toml").to_str().unwrap().to_string()
}

/// The operator of testdata/apps/apps.toml: any IP, any app.
pub const OPERATOR: &str = "release-token-c0ffee";

/// A one-shot HTTP responder on loopback: answers the first request with
/// `status` and a JSON error body, and hands back the request line.
pub fn answer_once(status: &str, code: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"x\"}}}}");
    let status = status.to_string();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        request_line
    });
    (url, handle)
}

/// Spawns `envid ARGS` with its stdout lines sent to the receiver.
pub fn spawn_lines(args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args(args)
        .env_remove("ENVID_ENDPOINT")
        .env_remove("ENVID_LOOKUP_TOKEN")
        .env_remove("ENVID_REGISTER_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The next line matching `want` within `secs` seconds (others are skipped).
pub fn line_where(
    rx: &std::sync::mpsc::Receiver<String>,
    secs: u64,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}
