//! `envid keygen`, `envid serve --signing-key` and `envid verify`, run as
//! the built binary against each other.

use std::io::BufRead;
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
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Drained for the child's whole life: a closed pipe would end it.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
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
