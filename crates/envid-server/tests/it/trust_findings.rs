//! Regression tests of issue 26's findings from outside (README.md,
//! "Security model"): each test is named after its finding and failed
//! before the fix. The real service over loopback; clients bound to
//! distinct 127.0.0.x source addresses play distinct hosts.

use crate::common;

use std::time::Duration;

use common::trust::*;
use common::*;
use serde_json::json;

/// App `web` (env beta).
const WEB: &str = "web-token-5e1f";
/// App `payment` (env prod).
const PAY: &str = "payment-token-77c2";

/// The apps file of these tests: `web`, `payment`, the operator `release`.
fn apps_text() -> String {
    format!(
        "[[app]]\nname = \"web\"\nenvs = [\"beta\"]\ntoken_sha256 = [\"{}\"]\n\n\
         [[app]]\nname = \"payment\"\nenvs = [\"prod\"]\ntoken_sha256 = [\"{}\"]\n\n\
         [[operator]]\nname = \"release\"\ntoken_sha256 = [\"{}\"]\n",
        sha(WEB),
        sha(PAY),
        sha(OPERATOR)
    )
}

/// A service on `registry` (text) with the apps file above; the files live
/// in `dir`.
fn serve_in(dir: &std::path::Path, registry: &str) -> envid_server::ServerHandle {
    let path = dir.join("registry.toml");
    std::fs::write(&path, registry).unwrap();
    let mut c = config(&path);
    c.apps_path = Some(write_apps(dir, &apps_text()));
    envid_server::spawn(c).unwrap()
}

const MAPPED_PAYMENT: &str = "schema = 1\n[[records]]\nip = \"::ffff:127.0.0.21\"\napp = \"payment\"\nenv = \"prod\"\nidc = \"cn5\"\n";

#[test]
fn finding_4_a_static_record_written_ipv4_mapped_protects_its_ipv4_host() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path(), MAPPED_PAYMENT);
    let a = svc.local_addr();
    // The service answers for the host however it is asked, and serves
    // the record under the one canonical form.
    for asked in ["127.0.0.21", "::ffff:127.0.0.21"] {
        let r = get(a, &format!("/v1/hosts/{asked}"));
        expect(&r, 200, "");
        assert_eq!(r.json()["app"], "payment", "{asked}");
        assert_eq!(r.json()["ip"], "127.0.0.21", "{asked}");
    }
    // Protected: web's registration of it (from the IP itself) is 409,
    // and so is a removal.
    let r = put(a, 21, "127.0.0.21", Some(WEB), &rec("web", "beta", "cn0"));
    expect(&r, 409, "static_record");
    expect(
        &delete(a, 21, "127.0.0.21", Some(OPERATOR)),
        409,
        "static_record",
    );
    assert_eq!(get(a, "/v1/hosts/127.0.0.21").json()["app"], "payment");
    // A replica agrees with the service.
    let replica = envid::replica::Replica::builder(
        envid::ServiceConfig::builder()
            .endpoint(svc.base_url())
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    for asked in ["127.0.0.21", "::ffff:127.0.0.21"] {
        let r = replica.lookup(asked.parse().unwrap()).expect("replicated");
        assert_eq!(r.app.as_deref(), Some("payment"));
        assert_eq!(r.ip, Some("127.0.0.21".parse().unwrap()));
    }
}

#[test]
fn finding_4_both_spellings_of_one_host_are_a_duplicate_naming_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(
        &path,
        format!(
            "{MAPPED_PAYMENT}[[records]]\nip = \"127.0.0.21\"\napp = \"web\"\nenv = \"beta\"\nidc = \"cn0\"\n"
        ),
    )
    .unwrap();
    let e = envid_server::spawn(config(&path)).unwrap_err().to_string();
    assert!(e.contains("duplicate record for 127.0.0.21"), "{e}");
    assert!(
        e.contains("registry.toml:8:") && e.contains("first at line 3"),
        "{e}"
    );
    assert!(e.contains("\"::ffff:127.0.0.21\""), "{e}");
    // The same file as a reload is refused and the old registry stays.
    std::fs::write(&path, MAPPED_PAYMENT).unwrap();
    let svc = envid_server::spawn(config(&path)).unwrap();
    let a = svc.local_addr();
    std::fs::write(
        &path,
        format!("{MAPPED_PAYMENT}[[records]]\nip = \"127.0.0.21\"\napp = \"web\"\nenv = \"beta\"\nidc = \"cn0\"\n"),
    )
    .unwrap();
    wait_until("the refused reload", Duration::from_secs(5), || {
        metric(
            &get(a, "/metrics").body,
            "envid_registry_reloads_total{result=\"error\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        get(a, "/v1/hosts/127.0.0.21").json()["app"],
        json!("payment")
    );
}
