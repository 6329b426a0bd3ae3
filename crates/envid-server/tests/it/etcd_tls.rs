//! The etcd store over TLS with client certificates and with etcd users,
//! against real 3-member clusters on loopback (see `common/etcd.rs`):
//! what works, what stops the service at start and how it is named,
//! certificate rotation without a restart, and a refusal that starts later
//! named on `/healthz`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::etcd::{write_private, Ca, Cluster, ClusterTls};
use common::{get, request, wait_until, Resp};
use envid::replica::Replica;
use envid::ServiceConfig;
use envid_server::{EtcdAccess, EtcdPassword, ServerError, ServerHandle};

macro_rules! need_etcd {
    () => {
        if !envid_testkit::require_program("etcd", "the etcd store is tested on real members") {
            return;
        }
    };
}

/// A test's certificates: `ca` signs the members' certificates and the
/// service's client certificate (`cert`, `key`, CN `envid-client`); the
/// members trust client certificates of the CAs in `trusted`.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    trusted: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("envid test etcd CA");
        let ca_file = write_private(dir.path(), "ca.pem", &ca.pem());
        let (cert, key) = ca.leaf("envid-client");
        let cert = write_private(dir.path(), "client.pem", &cert);
        let key = write_private(dir.path(), "client-key.pem", &key);
        let trusted = write_private(dir.path(), "trusted.pem", &ca.pem());
        Pki {
            dir,
            ca,
            ca_file,
            cert,
            key,
            trusted,
        }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        write_private(self.dir.path(), name, contents)
    }

    fn cluster(&self) -> Cluster {
        Cluster::start_tls(
            3,
            &ClusterTls {
                server_ca: &self.ca,
                trusted_ca: self.trusted.clone(),
            },
        )
    }

    /// TLS with the client certificate.
    fn access(&self) -> EtcdAccess {
        EtcdAccess {
            ca: Some(self.ca_file.clone()),
            cert: Some(self.cert.clone()),
            key: Some(self.key.clone()),
            ..EtcdAccess::default()
        }
    }
}

fn config(cluster: &Cluster, access: EtcdAccess) -> envid_server::Config {
    let mut c = common::config(common::example_registry());
    c.apps_path = None;
    c.insecure_open_registration = true;
    c.register_limit = 0;
    c.etcd = cluster.endpoint_list();
    c.etcd_access = access;
    c
}

fn instance(cluster: &Cluster, access: EtcdAccess) -> ServerHandle {
    let svc = envid_server::spawn(config(cluster, access)).expect("server starts");
    wait_until("the instance lists etcd", Duration::from_secs(20), || {
        get(svc.local_addr(), "/healthz").status == 200
    });
    svc
}

/// The start-up error of an instance with `access`, which must come within
/// the start probe's bound.
fn refused(cluster: &Cluster, access: EtcdAccess) -> String {
    let started = Instant::now();
    let e = envid_server::spawn(config(cluster, access)).expect_err("the instance must not start");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(e, ServerError::Etcd { .. }), "{e:?}");
    e.to_string()
}

fn put(a: SocketAddr, ip: &str, app: &str) -> Resp {
    let body = serde_json::json!({"app": app, "env": "beta", "idc": "cn0", "lease_seconds": 60});
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn health(a: SocketAddr) -> serde_json::Value {
    get(a, "/healthz").json()
}

fn password_file(dir: &Path, name: &str, password: &str) -> EtcdPassword {
    EtcdPassword::File(write_private(dir, name, &format!("{password}\n")))
}

#[test]
fn client_certificate_tls_serves_one_registry_from_two_instances() {
    need_etcd!();
    let pki = Pki::new();
    let cluster = pki.cluster();
    assert!(cluster.endpoints().starts_with("https://"));
    let a = instance(&cluster, pki.access());
    let b = instance(&cluster, pki.access());
    let (aa, ba) = (a.local_addr(), b.local_addr());
    let h = health(aa);
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["etcd"]["tls"], true, "{h}");
    assert!(h["etcd"]["client_cert_not_after"].is_string(), "{h}");
    assert_eq!(h["history"], health(ba)["history"]);

    let r = put(aa, "192.0.2.1", "over-tls");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("B answers A's registration", Duration::from_secs(5), || {
        get(ba, "/v1/hosts/192.0.2.1").status == 200
    });
    // A replica of B gets it, and what A registers next, as a delta.
    let replica = Replica::builder(
        ServiceConfig::builder()
            .endpoint(b.base_url())
            .connect_timeout(Duration::from_millis(300))
            .per_phase_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .poll_wait(Duration::from_secs(2))
    .backoff(Duration::from_millis(20))
    .build()
    .unwrap();
    wait_until("the replica syncs", Duration::from_secs(5), || {
        replica.lookup("192.0.2.1".parse().unwrap()).is_some()
    });
    assert_eq!(put(aa, "192.0.2.2", "over-tls").status, 200);
    wait_until("the replica gets a delta", Duration::from_secs(5), || {
        replica.lookup("192.0.2.2".parse().unwrap()).is_some()
    });
    assert_eq!(replica.stats().snapshots, 1);

    // The members require a client certificate: TLS without one is refused
    // at start, and says what to give.
    let e = refused(
        &cluster,
        EtcdAccess {
            ca: Some(pki.ca_file.clone()),
            ..EtcdAccess::default()
        },
    );
    assert!(
        e.contains("the server requires a client certificate: give --etcd-cert and --etcd-key"),
        "{e}"
    );
}

#[test]
fn refusals_at_start_name_the_cause_and_the_flag() {
    need_etcd!();
    let pki = Pki::new();
    let cluster = pki.cluster();
    cluster.enable_auth("root-pw");
    cluster.add_role("envid-rw", "/envid/");
    cluster.add_user("envid", "right-pw", "envid-rw");
    cluster.add_role("other-rw", "/other/");
    cluster.add_user("stranger", "stranger-pw", "other-rw");
    let dir = pki.dir.path();
    let user = |name: &str, password: &str| EtcdAccess {
        user: Some(name.into()),
        password: Some(password_file(dir, &format!("{name}.pw"), password)),
        ..pki.access()
    };

    // Our CA does not sign the members' certificates.
    let other = Ca::new("another CA");
    let wrong_ca = pki.write("other-ca.pem", &other.pem());
    let e = refused(
        &cluster,
        EtcdAccess {
            ca: Some(wrong_ca.clone()),
            ..user("envid", "right-pw")
        },
    );
    assert_eq!(
        e,
        format!(
            "etcd: TLS handshake failed: the server's certificate is not signed by --etcd-ca {}",
            wrong_ca.display()
        )
    );

    // Our client certificate expired: named with its file and date, before
    // etcd is asked.
    let (cert, key) = pki.ca.leaf_with("envid-client", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let expired = pki.write("expired.pem", &cert);
    let expired_key = pki.write("expired-key.pem", &key);
    let e = refused(
        &cluster,
        EtcdAccess {
            cert: Some(expired.clone()),
            key: Some(expired_key),
            ..user("envid", "right-pw")
        },
    );
    assert_eq!(
        e,
        format!(
            "etcd: the client certificate --etcd-cert {} expired on 2021-01-01T00:00:00Z; renew it",
            expired.display()
        )
    );

    // A client certificate the members do not trust: their refusal, named.
    let (cert, key) = other.leaf("envid-client");
    let untrusted = pki.write("untrusted.pem", &cert);
    let untrusted_key = pki.write("untrusted-key.pem", &key);
    let e = refused(
        &cluster,
        EtcdAccess {
            cert: Some(untrusted.clone()),
            key: Some(untrusted_key),
            ..user("envid", "right-pw")
        },
    );
    assert!(
        e.starts_with(&format!(
            "etcd: TLS handshake failed: the server refused the client certificate --etcd-cert {}",
            untrusted.display()
        )),
        "{e}"
    );

    // A wrong password.
    let e = refused(&cluster, user("envid", "wrong-pw"));
    assert!(
        e.starts_with("etcd: authentication failed for user envid: wrong password"),
        "{e}"
    );
    assert!(e.contains("--etcd-password-file"), "{e}");
    assert!(!e.contains("wrong-pw"), "the password is never shown: {e}");

    // A user whose role is on another prefix.
    let e = refused(&cluster, user("stranger", "stranger-pw"));
    assert!(
        e.starts_with(
            "etcd: user stranger has no read/write access to prefix /envid/ (permission denied)"
        ),
        "{e}"
    );

    // A user with read access only: the write check refuses it too.
    cluster.v3("auth/role/add", &serde_json::json!({"name": "envid-ro"}));
    cluster.v3(
        "auth/role/grant",
        &serde_json::json!({"name": "envid-ro", "perm": {
            "permType": "READ", "key": "L2VudmlkLw==", "range_end": "L2VudmlkMA=="
        }}),
    );
    cluster.add_user("reader", "reader-pw", "envid-ro");
    let e = refused(&cluster, user("reader", "reader-pw"));
    assert!(e.contains("user reader has no read/write access"), "{e}");

    // And the right user and password work (here from the value, as
    // ENVID_ETCD_PASSWORD gives it).
    let svc = instance(
        &cluster,
        EtcdAccess {
            user: Some("envid".into()),
            password: Some(EtcdPassword::Value(envid::Secret::new("right-pw"))),
            ..pki.access()
        },
    );
    let r = put(svc.local_addr(), "192.0.2.7", "authenticated");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(health(svc.local_addr())["etcd"]["user"], "envid");
}

#[test]
fn a_refusal_that_starts_later_is_the_healthz_reason() {
    need_etcd!();
    let pki = Pki::new();
    let cluster = pki.cluster();
    cluster.enable_auth("root-pw");
    cluster.add_role("envid-rw", "/envid/");
    cluster.add_user("envid", "right-pw", "envid-rw");
    let password = write_private(pki.dir.path(), "envid.pw", "right-pw\n");
    let access = EtcdAccess {
        user: Some("envid".into()),
        password: Some(EtcdPassword::File(password.clone())),
        ..pki.access()
    };
    let svc = instance(&cluster, access);
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "x").status, 200);

    // The role is revoked while the service runs.
    cluster.revoke_role("envid", "envid-rw");
    wait_until(
        "/healthz names the refusal",
        Duration::from_secs(10),
        || health(a)["status"] == "stale",
    );
    let h = health(a);
    assert!(
        h["reason"]
            .as_str()
            .unwrap()
            .contains("user envid has no read/write access to prefix /envid/ (permission denied)"),
        "{h}"
    );
    let r = put(a, "192.0.2.2", "x");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("permission denied"), "{}", r.body);
    assert_eq!(
        get(a, "/v1/hosts/192.0.2.1").status,
        200,
        "reads go on from the view"
    );

    // Granted again: healthy without a restart.
    cluster.grant_role("envid", "envid-rw");
    wait_until("/healthz is ok again", Duration::from_secs(10), || {
        health(a)["status"] == "ok"
    });
    assert_eq!(put(a, "192.0.2.2", "x").status, 200);

    // The password is changed in etcd: the next authentication fails, and
    // /healthz says so.
    cluster.change_password("envid", "new-pw");
    wait_until(
        "/healthz names the failed authentication",
        Duration::from_secs(10),
        || {
            health(a)["reason"]
                .as_str()
                .is_some_and(|r| r.contains("authentication failed for user envid"))
        },
    );
    // The password file follows: read again, used, healthy.
    std::fs::write(&password, "new-pw\n").unwrap();
    wait_until(
        "the new password is in use",
        Duration::from_secs(10),
        || {
            let h = health(a);
            h["status"] == "ok" && h["etcd"]["credential_reloads"] == 1
        },
    );
    assert_eq!(put(a, "192.0.2.3", "x").status, 200);
}

#[test]
fn rotated_client_certificate_is_used_without_a_restart() {
    need_etcd!();
    let pki = Pki::new();
    // The members trust client certificates of the first CA and of the
    // next one; the service starts with the first one's.
    let next = Ca::new("next client CA");
    std::fs::write(&pki.trusted, format!("{}{}", pki.ca.pem(), next.pem())).unwrap();
    let mut cluster = pki.cluster();
    let svc = instance(&cluster, pki.access());
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "before").status, 200);
    let first_not_after = health(a)["etcd"]["client_cert_not_after"].clone();

    // A half-written certificate: not used, the client in use goes on, and
    // /healthz says why.
    std::fs::write(&pki.cert, "-----BEGIN CERTIFICATE-----\nnot base64").unwrap();
    wait_until(
        "/healthz names the bad file",
        Duration::from_secs(10),
        || health(a)["etcd"]["credential_error"].is_string(),
    );
    let h = health(a);
    assert!(
        h["etcd"]["credential_error"]
            .as_str()
            .unwrap()
            .contains("keeping the previous ones"),
        "{h}"
    );
    assert_eq!(h["etcd"]["credential_reloads"], 0, "{h}");
    assert_eq!(put(a, "192.0.2.2", "during").status, 200);

    // The new certificate (another CA, another expiry) and key land.
    let (cert, key) = next.leaf_with("envid-client", |p| {
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    });
    std::fs::write(&pki.cert, &cert).unwrap();
    std::fs::write(&pki.key, &key).unwrap();
    wait_until(
        "the new certificate is in use",
        Duration::from_secs(10),
        || health(a)["etcd"]["credential_reloads"] == 1,
    );
    let h = health(a);
    assert_eq!(h["etcd"]["client_cert_not_after"], "2040-01-01T00:00:00Z");
    assert_ne!(h["etcd"]["client_cert_not_after"], first_not_after);
    assert!(h["etcd"]["credential_error"].is_null(), "{h}");
    let m = get(a, "/metrics").body;
    assert_eq!(
        common::metric(&m, "envid_etcd_credential_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );

    // The members now trust only the new CA, and restart: every connection
    // is made again, which works only with the new certificate.
    std::fs::write(&pki.trusted, next.pem()).unwrap();
    for i in 0..3 {
        cluster.kill(i);
        cluster.restart(i);
        cluster.wait_healthy(Duration::from_secs(30));
    }
    wait_until(
        "writes commit on the new certificate",
        Duration::from_secs(20),
        || put(a, "192.0.2.3", "after").status == 200,
    );
    // The watch moved too: a registration made through another instance
    // (with the new certificate) reaches this one's view.
    let b = instance(&cluster, pki.access());
    assert_eq!(put(b.local_addr(), "192.0.2.4", "from-b").status, 200);
    wait_until(
        "A's view has B's registration",
        Duration::from_secs(10),
        || get(a, "/v1/hosts/192.0.2.4").status == 200,
    );
    assert_eq!(health(a)["status"], "ok");

    // And the first certificate is refused now: the rotation was needed.
    let (cert, key) = pki.ca.leaf("envid-client");
    let old = pki.write("old.pem", &cert);
    let old_key = pki.write("old-key.pem", &key);
    let e = refused(
        &cluster,
        EtcdAccess {
            cert: Some(old),
            key: Some(old_key),
            ..pki.access()
        },
    );
    assert!(
        e.contains("the server refused the client certificate"),
        "{e}"
    );
}

#[test]
fn an_expiring_client_certificate_is_named_before_and_after_etcd_refuses_it() {
    need_etcd!();
    let pki = Pki::new();
    let mut cluster = pki.cluster();
    // Valid for a few seconds more.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(4);
    let (cert, key) = pki.ca.leaf_with("envid-client", |p| {
        p.not_after = rcgen::date_time_ymd(1970, 1, 1) + until;
    });
    std::fs::write(&pki.cert, cert).unwrap();
    std::fs::write(&pki.key, key).unwrap();
    let svc = instance(&cluster, pki.access());
    let a = svc.local_addr();
    assert_eq!(put(a, "192.0.2.1", "x").status, 200);
    // Expired: named at once, though the open connections still work.
    wait_until("/healthz names the expiry", Duration::from_secs(10), || {
        health(a)["etcd"]["credential_error"]
            .as_str()
            .is_some_and(|e| e.contains("expired on"))
    });
    assert!(health(a)["etcd"]["credential_error"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "the client certificate --etcd-cert {} expired on",
            pki.cert.display()
        )));
    // The members restart: new connections are refused, and /healthz says
    // by whom and why.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_healthy(Duration::from_secs(30));
    wait_until(
        "/healthz names etcd's refusal",
        Duration::from_secs(15),
        || {
            let h = health(a);
            h["status"] == "stale"
                && h["reason"].as_str().is_some_and(|r| {
                    r.contains("TLS handshake failed: the server refused the client certificate")
                })
        },
    );
}
