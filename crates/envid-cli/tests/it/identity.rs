//! `envid keygen`, `envid serve --signing-key` and `envid verify`, run as
//! the built binary against each other.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use envid::identity::{Claims, Signer};

fn envid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_envid"))
        .args(args)
        .env_remove("ENVID_ENDPOINT")
        .output()
        .expect("run envid")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// `envid serve` on an ephemeral port with `extra` flags: the child and its URL.
fn serve(extra: &[&str]) -> (Child, String) {
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/registry.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args([
            "serve",
            "--registry",
            registry.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env_remove("ENVID_SERVE_TOKEN")
        .env_remove("ENVID_SERVE_REGISTRAR_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = crate::cli::common::stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap().to_string();
            return (child, url);
        }
    }
    let _ = child.kill();
    panic!("envid serve did not start: {:?}", child.wait());
}

fn token(key: &Path, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = serde_json::from_value(serde_json::json!({
        "app": "pay", "env": "prod", "idc": "cn0"
    }))
    .unwrap();
    let mut c = Claims::for_record(
        &record,
        "10.1.2.3".parse().unwrap(),
        "envid",
        "envid",
        now - 10,
        1,
    )
    .unwrap();
    c.exp = now.saturating_add_signed(exp_in);
    Signer::from_pem_file(key).unwrap().sign(&c)
}

#[test]
fn keygen_writes_a_0600_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let o = envid(&["keygen", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let kid = text(&o.stdout).trim().to_string();
    assert_eq!(Signer::from_pem_file(&key).unwrap().kid(), kid);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    let o = envid(&["keygen", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not overwriting"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn verify_against_serve_then_from_the_keys_cache_with_serve_down() {
    let dir = tempfile::tempdir().unwrap();
    let key: PathBuf = dir.path().join("k.pem");
    assert!(envid(&["keygen", key.to_str().unwrap()]).status.success());
    let (mut child, url) = serve(&[
        "--signing-key",
        key.to_str().unwrap(),
        "--identity-lifetime",
        "600",
    ]);
    let cache = dir.path().join("keys.json");
    let token_file = dir.path().join("identity");
    std::fs::write(&token_file, token(&key, 600)).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--endpoint",
            &url,
            "--keys-cache",
            cache.to_str().unwrap(),
            "--connect-timeout-ms",
            "200",
        ];
        args.extend_from_slice(extra);
        envid(&args)
    };
    let o = verify(&["--file", token_file.to_str().unwrap(), "--format", "json"]);
    assert!(
        o.status.success(),
        "{} {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"]["sub"], "envid://pay/prod");
    let o = verify(&["--file", token_file.to_str().unwrap()]);
    assert!(
        text(&o.stdout).contains("valid identity: envid://pay/prod"),
        "{} {}",
        text(&o.stdout),
        text(&o.stderr)
    );

    let _ = child.kill();
    let _ = child.wait();
    // The service is down: the keys cache answers.
    let o = verify(&[
        "--file",
        token_file.to_str().unwrap(),
        "--keys-refresh",
        "0",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Invalid ones exit 1 with the reason, and never print the token.
    let expired = token(&key, -3600);
    let o = verify(&[&expired]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("(expired)"), "{err}");
    assert!(!err.contains(&expired[20..60]));
    let o = verify(&["not.a.jwt", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "malformed");
    let o = verify(&[&token(&key, 600), "--audience", "billing"]);
    assert!(text(&o.stderr).contains("(wrong_audience)"));
    // Without the cache and without the service: no keys.
    let o = envid(&["verify", "--endpoint", &url, &token(&key, 600)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("(no_keys)"), "{}", text(&o.stderr));
}

/// The README's flow end to end: keygen, serve with the key and the apps
/// file, `register --identity-file` with the descriptor's token for the
/// host's own (loopback) IP, then `verify --file`; with `--keep-alive` the
/// file is rewritten at every renewal with a fresh identity.
#[test]
fn register_writes_an_identity_file_that_verify_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.pem");
    assert!(envid(&["keygen", key.to_str().unwrap()]).status.success());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let apps = root.join("testdata/apps/apps.toml");
    let example = root.join("testdata/example.toml");
    let (server, url) = serve(&[
        "--apps",
        apps.to_str().unwrap(),
        "--allow-loopback-registration",
        "--signing-key",
        key.to_str().unwrap(),
        "--issuer",
        "envsvc.test",
        "--identity-lifetime",
        "4",
    ]);
    // Killed on the way out, even when an assertion fails.
    struct Killed(Option<Child>);
    impl Drop for Killed {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _server = Killed(Some(server));
    let identity = dir.path().join("identity");
    let child = Command::new(env!("CARGO_BIN_EXE_envid"))
        .args([
            "register",
            "--keep-alive",
            "--lease",
            "30",
            "--ip",
            "127.0.0.1",
            "--descriptor",
            example.to_str().unwrap(),
            "--endpoint",
            &url,
            "--identity-file",
            identity.to_str().unwrap(),
        ])
        .env_remove("ENVID_ENDPOINT")
        .env_remove("ENVID_REGISTER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !identity.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(identity.exists(), "no identity file written");
    let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "identity file mode {mode:o}");
    let first = std::fs::read_to_string(&identity).unwrap();
    let o = envid(&[
        "verify",
        "--file",
        identity.to_str().unwrap(),
        "--endpoint",
        &url,
        "--issuer",
        "envsvc.test",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    let claims = &v["claims"];
    assert_eq!(claims["app"], "flight_order", "{v}");
    assert_eq!(claims["env"], "beta");
    assert_eq!(claims["ip"], "127.0.0.1");
    assert_eq!(claims["sub"], "envid://flight_order/beta");
    // Lifetime 4 s: renewed at least every 2 s, each time a new identity.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut renewed = first.clone();
    while renewed == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        renewed = std::fs::read_to_string(&identity).unwrap();
    }
    assert_ne!(renewed, first, "the identity file was not renewed");
    // The token is never printed.
    let child = child.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(first.trim()), "the identity leaked");
    }
}
