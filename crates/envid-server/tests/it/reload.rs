//! Registry reload: a changed file is served after the next poll, a broken
//! file leaves the old registry serving at the same version.

use crate::common;

use std::time::Duration;

use common::*;

const V1: &str = r#"
schema = 1

[[records]]
ip = "10.0.0.1"
app = "a"
env = "beta"
idc = "cn0"

[[records]]
cidr = "10.1.0.0/16"
env = "prod"
idc = "cn5"
"#;

fn write(path: &std::path::Path, text: &str) {
    // Write then rename, as config management and ConfigMaps do: a reader
    // never sees a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn version(addr: std::net::SocketAddr) -> u64 {
    get(addr, "/healthz").json()["version"].as_u64().unwrap()
}

#[test]
fn changed_record_is_served_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, V1);
    let server = envid_server::spawn(config(&path)).unwrap();
    let a = server.local_addr();
    assert_eq!(get(a, "/v1/hosts/10.0.0.1").json()["env"], "beta");
    assert_eq!(version(a), 1);

    // Change one record, delete the range, add a v6 one.
    let v2 = V1
        .replace("env = \"beta\"", "env = \"prod\"")
        .replace("cidr = \"10.1.0.0/16\"", "cidr = \"2001:db8::/32\"");
    write(&path, &v2);
    wait_until("the changed record", Duration::from_secs(10), || {
        get(a, "/v1/hosts/10.0.0.1").json()["env"] == "prod"
    });
    assert_eq!(version(a), 2);
    assert_eq!(get(a, "/v1/hosts/10.1.2.3").status, 404);
    assert_eq!(get(a, "/v1/hosts/2001:db8::1").status, 200);
    let text = get(a, "/metrics").body;
    assert_eq!(metric(&text, "envid_registry_version"), Some(2.0), "{text}");
    assert_eq!(
        metric(&text, r#"envid_registry_reloads_total{result="ok"}"#),
        Some(1.0),
        "{text}"
    );
    server.shutdown();
}

#[test]
fn in_place_rewrite_of_the_same_size_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, V1).unwrap();
    let server = envid_server::spawn(config(&path)).unwrap();
    let a = server.local_addr();
    // Same length, written in place right away (likely within one mtime tick).
    let v2 = V1.replace("app = \"a\"", "app = \"b\"");
    assert_eq!(v2.len(), V1.len());
    std::fs::write(&path, &v2).unwrap();
    wait_until("the rewritten record", Duration::from_secs(10), || {
        get(a, "/v1/hosts/10.0.0.1").json()["app"] == "b"
    });
    server.shutdown();
}

#[test]
fn broken_file_keeps_the_old_registry_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, V1);
    let server = envid_server::spawn(config(&path)).unwrap();
    let a = server.local_addr();

    write(&path, &V1.replace("10.0.0.1", "10.0.0.999"));
    wait_until("the failed reload", Duration::from_secs(10), || {
        let text = get(a, "/metrics").body;
        metric(&text, r#"envid_registry_reloads_total{result="error"}"#) == Some(1.0)
    });
    assert_eq!(get(a, "/v1/hosts/10.0.0.1").json()["app"], "a");
    assert_eq!(version(a), 1);

    // A syntax error and a deleted file: same story.
    write(&path, "[[records]\n");
    wait_until("the second failed reload", Duration::from_secs(10), || {
        let text = get(a, "/metrics").body;
        metric(&text, r#"envid_registry_reloads_total{result="error"}"#) == Some(2.0)
    });
    std::fs::remove_file(&path).unwrap();
    wait_until("the third failed reload", Duration::from_secs(10), || {
        let text = get(a, "/metrics").body;
        metric(&text, r#"envid_registry_reloads_total{result="error"}"#) == Some(3.0)
    });
    assert_eq!(get(a, "/v1/hosts/10.1.9.9").json()["idc"], "cn5");
    assert_eq!(version(a), 1);

    // A good file again is picked up.
    write(&path, &V1.replace("app = \"a\"", "app = \"c\""));
    wait_until("the repaired registry", Duration::from_secs(10), || {
        get(a, "/v1/hosts/10.0.0.1").json()["app"] == "c"
    });
    assert_eq!(version(a), 2);
    server.shutdown();
}

#[test]
fn a_fifo_in_place_of_the_file_fails_the_reload_and_a_good_file_follows() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, V1);
    let server = envid_server::spawn(config(&path)).unwrap();
    let a = server.local_addr();

    // A FIFO renamed over the file, and no writer ever: a plain read would
    // block the poller for good, and the next good file would never load.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::rename(&fifo, &path).unwrap();
    wait_until("the refused FIFO", Duration::from_secs(10), || {
        let text = get(a, "/metrics").body;
        metric(&text, r#"envid_registry_reloads_total{result="error"}"#) == Some(1.0)
    });
    assert_eq!(get(a, "/v1/hosts/10.0.0.1").json()["app"], "a");

    // Over the cap (sparse, so nothing is written): refused unread.
    let big = dir.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(envid_server::registry_file::MAX_REGISTRY_FILE_BYTES + 1)
        .unwrap();
    std::fs::rename(&big, &path).unwrap();
    wait_until(
        "the refused oversized file",
        Duration::from_secs(10),
        || {
            let text = get(a, "/metrics").body;
            metric(&text, r#"envid_registry_reloads_total{result="error"}"#) == Some(2.0)
        },
    );
    assert_eq!(version(a), 1);

    write(&path, &V1.replace("app = \"a\"", "app = \"d\""));
    wait_until("the good file after them", Duration::from_secs(10), || {
        get(a, "/v1/hosts/10.0.0.1").json()["app"] == "d"
    });
    assert_eq!(version(a), 2);
    server.shutdown();
}

#[test]
fn content_unchanged_does_not_bump_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, V1);
    let server = envid_server::spawn(config(&path)).unwrap();
    let a = server.local_addr();
    // Only a comment changes: reloaded, but no record changed.
    write(&path, &format!("# edited\n{V1}"));
    wait_until("the reload", Duration::from_secs(10), || {
        let text = get(a, "/metrics").body;
        metric(&text, r#"envid_registry_reloads_total{result="ok"}"#) == Some(1.0)
    });
    assert_eq!(version(a), 1);
    server.shutdown();
}

#[test]
fn bad_registry_at_start_is_an_error() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/registries/bad-ip.toml");
    let err = envid_server::spawn(config(&path)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, envid_server::ServerError::Registry(_)),
        "{msg}"
    );
    assert!(
        msg.contains("bad-ip.toml") && msg.contains("10.0.0.300"),
        "{msg}"
    );
    let err = envid_server::spawn(config("/nonexistent/registry.toml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/registry.toml"),
        "{err}"
    );
}

#[test]
fn port_in_use_is_a_bind_error() {
    let first = serve_example();
    let mut c = config(example_registry());
    c.listen = first.local_addr();
    let err = envid_server::spawn(c).unwrap_err();
    assert!(
        matches!(err, envid_server::ServerError::Bind { addr, .. } if addr == first.local_addr()),
        "{err}"
    );
    first.shutdown();
}

#[test]
fn shutdown_stops_listening() {
    let server = serve_example();
    let a = server.local_addr();
    assert_eq!(server.base_url(), format!("http://{a}"));
    server.shutdown();
    assert!(std::net::TcpStream::connect(a).is_err());
}
