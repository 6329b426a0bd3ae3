//! A late renewal or removal of an IP's previous registration, over real
//! HTTP: `?registration=ID` on `POST …/renew` and `DELETE` acts only while
//! the IP still holds that registration (`409 registration_changed`
//! otherwise, nothing touched), on the embedded store and on etcd (two
//! instances, the late `DELETE` sent to the one that has not seen the new
//! registration yet matters most there). Clients bound to loopback source
//! addresses play the hosts, with the tokens of `testdata/apps/apps.toml`.

use crate::common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use serde_json::json;

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn call(a: SocketAddr, from: IpAddr, method: &str, path: &str, token: &str, body: &[u8]) -> Resp {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    request_from(Some(from), a, method, path, &headers, body)
}

/// `PUT` of `ip` as payment, from the IP itself; returns the registration id.
fn register(a: SocketAddr, ip: IpAddr) -> String {
    let body = json!({"app": "payment", "env": "prod", "idc": "cn5", "lease_seconds": 60});
    let r = call(
        a,
        ip,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        PAYMENT,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["registration"]
        .as_str()
        .expect("the PUT answers the registration id")
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    id
}

fn query(registration: Option<&str>) -> String {
    registration.map_or(String::new(), |r| format!("?registration={r}"))
}

fn renew(a: SocketAddr, ip: IpAddr, registration: Option<&str>) -> Resp {
    let path = format!("/v1/hosts/{ip}/renew{}", query(registration));
    call(a, ip, "POST", &path, PAYMENT, b"")
}

fn delete(a: SocketAddr, ip: IpAddr, registration: Option<&str>) -> Resp {
    let path = format!("/v1/hosts/{ip}{}", query(registration));
    call(a, ip, "DELETE", &path, PAYMENT, b"")
}

/// The registration id `ip`'s record is served with (`None`: unknown).
fn served(a: SocketAddr, ip: IpAddr) -> Option<String> {
    let r = get(a, &format!("/v1/hosts/{ip}"));
    (r.status == 200).then(|| r.json()["registration"].as_str().unwrap().to_string())
}

#[track_caller]
fn expect(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    if !code.is_empty() {
        assert_eq!(r.error_code(), code, "{}", r.body);
    }
}

/// The same app's new host on the same IP, then the old host's late calls.
fn a_late_call_never_touches_the_new_registration(a: SocketAddr, b: SocketAddr) {
    let ip = lo(41);
    let old = register(a, ip);
    let new = register(b, ip);
    assert_ne!(old, new, "every PUT is a registration of its own");
    wait_until(
        "both instances serve the new registration",
        std::time::Duration::from_secs(10),
        || served(b, ip).as_deref() == Some(new.as_str()),
    );

    // The old host's renewal and pre-stop DELETE, late: refused, nothing
    // touched, and the answer does not give the new id away.
    let r = renew(a, ip, Some(&old));
    expect(&r, 409, "registration_changed");
    assert!(!r.body.contains(&new), "{}", r.body);
    let r = delete(a, ip, Some(&old));
    expect(&r, 409, "registration_changed");
    assert!(r.error_message().contains(&old), "{}", r.body);
    assert!(!r.body.contains(&new), "{}", r.body);
    assert_eq!(served(b, ip).as_deref(), Some(new.as_str()));

    // The new host's own calls name its registration and go through.
    expect(&renew(b, ip, Some(&new)), 200, "");
    expect(&delete(b, ip, Some(&new)), 204, "");
    wait_until(
        "the removal is served",
        std::time::Duration::from_secs(10),
        || served(a, ip).is_none(),
    );
    // Gone: naming it again is no error (what was asked holds), and a
    // renewal of it is the usual 404.
    expect(&delete(a, ip, Some(&new)), 204, "");
    expect(&renew(a, ip, Some(&new)), 404, "not_registered");
}

#[test]
fn a_late_delete_of_the_previous_registration_leaves_the_new_one() {
    let svc = serve_example();
    let a = svc.local_addr();
    a_late_call_never_touches_the_new_registration(a, a);

    // Without the query, as before: whatever the IP holds.
    let ip = lo(42);
    register(a, ip);
    register(a, ip);
    expect(&renew(a, ip, None), 200, "");
    expect(&delete(a, ip, None), 204, "");
    assert_eq!(served(a, ip), None);

    // The owner is checked first: another app's token is 403 whatever it names.
    let id = register(a, ip);
    let r = call(
        a,
        ip,
        "DELETE",
        &format!("/v1/hosts/{ip}?registration={id}"),
        CHECKOUT,
        b"",
    );
    expect(&r, 403, "forbidden");
    // An empty id is no precondition a client meant: 400.
    let r = call(
        a,
        ip,
        "DELETE",
        &format!("/v1/hosts/{ip}?registration="),
        PAYMENT,
        b"",
    );
    expect(&r, 400, "invalid_query");
    assert_eq!(served(a, ip).as_deref(), Some(id.as_str()));

    // A static record (10.0.0.5 in the example registry) holds no
    // registration: naming one removes nothing and is no error.
    let r = request(
        a,
        "DELETE",
        "/v1/hosts/10.0.0.5?registration=0123",
        &[OPERATOR_AUTH],
        b"",
    );
    expect(&r, 204, "");
    let r = request(a, "DELETE", "/v1/hosts/10.0.0.5", &[OPERATOR_AUTH], b"");
    expect(&r, 409, "static_record");
    assert_eq!(get(a, "/v1/hosts/10.0.0.5").status, 200);

    let text = get(a, "/metrics").body;
    let refused = |reason: &str| {
        metric(
            &text,
            &format!("envid_registration_refusals_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused("registration_changed"), 2.0, "{text}");
    assert_eq!(refused("invalid_query"), 1.0, "{text}");
}

#[cfg(feature = "etcd")]
#[test]
fn on_etcd_a_late_delete_at_another_instance_leaves_the_new_one() {
    if !envid_testkit::require_program("etcd", "the etcd store is tested on real members") {
        return;
    }
    let cluster = common::etcd::Cluster::start(1);
    let instance = || {
        let mut c = config(example_registry());
        c.etcd = cluster.endpoint_list();
        c.etcd_prefix = "/late/".into();
        let svc = envid_server::spawn(c).expect("server starts");
        let addr = svc.local_addr();
        wait_until(
            "the instance lists etcd",
            std::time::Duration::from_secs(20),
            || get(addr, "/healthz").status == 200,
        );
        svc
    };
    let (one, two) = (instance(), instance());
    a_late_call_never_touches_the_new_registration(one.local_addr(), two.local_addr());
}
