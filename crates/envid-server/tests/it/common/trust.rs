//! What the trust tests share (`trust_scope.rs`, `trust_findings.rs`): an
//! apps file of their own, written with the mode the service wants (0600),
//! and registration calls from chosen loopback source addresses, so one
//! test plays many hosts (a client bound to 127.0.0.30 is the host
//! 127.0.0.30).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{request_from, Resp};

/// 127.0.0.`n`.
pub fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// The SHA-256 an apps file holds for `token`.
pub fn sha(token: &str) -> String {
    envid_server::apps::token_sha256_hex(token)
}

/// Writes `text` as `apps.toml` in `dir`, mode 0600; returns its path.
pub fn write_apps(dir: &Path, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("apps.toml");
    // Through a temporary name and a rename, as an operator's tooling
    // would: the poller never sees half a file.
    let tmp = dir.join(".apps.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A registration body with a 60 s lease.
pub fn rec(app: &str, env: &str, idc: &str) -> Value {
    json!({"app": app, "env": env, "idc": idc, "lease_seconds": 60})
}

/// One request from 127.0.0.`from` with `token` as the bearer.
pub fn call(
    a: SocketAddr,
    from: u8,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request_from(Some(lo(from)), a, method, path, &headers, body)
}

/// `PUT /v1/hosts/{ip}` from 127.0.0.`from`.
pub fn put(a: SocketAddr, from: u8, ip: &str, token: Option<&str>, body: &Value) -> Resp {
    let path = format!("/v1/hosts/{ip}");
    call(a, from, "PUT", &path, token, body.to_string().as_bytes())
}

/// `POST /v1/hosts/{ip}/renew` from 127.0.0.`from`.
pub fn renew(a: SocketAddr, from: u8, ip: &str, token: Option<&str>) -> Resp {
    call(
        a,
        from,
        "POST",
        &format!("/v1/hosts/{ip}/renew"),
        token,
        b"",
    )
}

/// `DELETE /v1/hosts/{ip}` from 127.0.0.`from`.
pub fn delete(a: SocketAddr, from: u8, ip: &str, token: Option<&str>) -> Resp {
    call(a, from, "DELETE", &format!("/v1/hosts/{ip}"), token, b"")
}

/// Asserts the status and, when given, the error code.
#[track_caller]
pub fn expect(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    if !code.is_empty() {
        assert_eq!(r.error_code(), code, "{}", r.body);
    }
}

/// The claims of a JWT, decoded without verifying it (the tests verify
/// with `envid::identity::Verifier` where it matters).
pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
