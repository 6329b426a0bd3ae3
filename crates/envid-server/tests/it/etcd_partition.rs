//! A partition, not a kill: one service instance runs in a network
//! namespace of the test's own, with one link for its clients and another to
//! etcd. Cutting the etcd link leaves it answering reads (stale, and
//! saying so) and refusing writes; when the link returns it catches up
//! without a restart. Needs root (`ip netns`) and etcd; skipped otherwise.

use crate::common;

/// The common config with registration open (these tests are about the
/// store, not who may register).
fn open_config() -> envid_server::Config {
    let mut c = common::config(common::example_registry());
    c.apps_path = None;
    c.insecure_open_registration = true;
    c
}

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::etcd::{Cluster, Service};
use common::{example_registry, get, request, wait_until};

/// The namespace and its links, removed on drop (the veth pairs go with
/// the namespace).
struct Net {
    ns: String,
    etcd_link: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    /// `10.231.S.0/30` for clients, `10.231.S.4/30` for etcd.
    fn create(s: u32) -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            ns: format!("envidp{id}"),
            etcd_link: format!("envE{id}"),
        };
        let client_link = format!("envC{id}");
        if !ip(&["netns", "add", &net.ns]) {
            return None;
        }
        let ok = [
            vec![
                "link",
                "add",
                &client_link,
                "type",
                "veth",
                "peer",
                "name",
                "c1",
                "netns",
                &net.ns,
            ],
            vec![
                "link",
                "add",
                &net.etcd_link,
                "type",
                "veth",
                "peer",
                "name",
                "e1",
                "netns",
                &net.ns,
            ],
        ]
        .iter()
        .all(|a| ip(a));
        let c0 = format!("10.231.{s}.1/30");
        let c1 = format!("10.231.{s}.2/30");
        let e0 = format!("10.231.{s}.5/30");
        let e1 = format!("10.231.{s}.6/30");
        let ok = ok
            && ip(&["addr", "add", &c0, "dev", &client_link])
            && ip(&["addr", "add", &e0, "dev", &net.etcd_link])
            && ip(&["link", "set", &client_link, "up"])
            && ip(&["link", "set", &net.etcd_link, "up"])
            && ip(&["-n", &net.ns, "addr", "add", &c1, "dev", "c1"])
            && ip(&["-n", &net.ns, "addr", "add", &e1, "dev", "e1"])
            && ip(&["-n", &net.ns, "link", "set", "c1", "up"])
            && ip(&["-n", &net.ns, "link", "set", "e1", "up"])
            && ip(&["-n", &net.ns, "link", "set", "lo", "up"]);
        ok.then_some(net)
    }

    fn etcd_link(&self, up: bool) {
        assert!(ip(&[
            "link",
            "set",
            &self.etcd_link,
            if up { "up" } else { "down" }
        ]));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.ns]);
    }
}

fn put(a: SocketAddr, ip: &str) -> common::Resp {
    let body = r#"{"app": "p", "env": "beta", "idc": "cn0", "lease_seconds": 600}"#;
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn an_instance_cut_off_from_etcd_serves_stale_refuses_writes_and_catches_up() {
    if !envid_testkit::require_program(
        "etcd",
        "the partition is made between the service and a real etcd",
    ) {
        return;
    }
    let s = 1 + std::process::id() % 250;
    let Some(net) = Net::create(s) else {
        envid_testkit::skip("cannot create a network namespace (needs root and iproute2's `ip`)");
        return;
    };
    let cluster = Cluster::start_listening_anywhere();
    let port = cluster.client_port(0);
    let registry = example_registry();
    let etcd_url = format!("http://10.231.{s}.5:{port}");
    let listen = format!("10.231.{s}.2:0");
    let inside = Service::spawn_in(
        &["ip", "netns", "exec", &net.ns],
        &[
            "--registry",
            registry.to_str().unwrap(),
            "--listen",
            &listen,
            "--etcd",
            &etcd_url,
        ],
    );
    let a = inside.addr;
    wait_until(
        "the instance in the namespace lists etcd",
        Duration::from_secs(20),
        || get(a, "/healthz").status == 200,
    );
    // Another instance, outside, keeps writing while the link is cut.
    let mut c = open_config();
    c.etcd = vec![format!("http://127.0.0.1:{port}")];
    let outside = envid_server::spawn(c).unwrap();
    let b = outside.local_addr();
    wait_until("the outside instance", Duration::from_secs(20), || {
        get(b, "/healthz").status == 200
    });
    assert_eq!(put(a, "192.0.2.1").status, 200);

    net.etcd_link(false);
    wait_until(
        "the cut-off instance says stale",
        Duration::from_secs(15),
        || get(a, "/healthz").json()["status"] == "stale",
    );
    assert_eq!(get(a, "/v1/hosts/192.0.2.1").status, 200, "reads go on");
    assert_eq!(get(a, "/v1/hosts/10.0.0.5").status, 200);
    let r = put(a, "192.0.2.2");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(put(b, "192.0.2.50").status, 200, "the other side writes");
    assert_eq!(
        get(a, "/v1/hosts/192.0.2.50").status,
        404,
        "not seen while cut"
    );

    net.etcd_link(true);
    wait_until("it catches up", Duration::from_secs(30), || {
        get(a, "/v1/hosts/192.0.2.50").status == 200
    });
    wait_until("and says ok", Duration::from_secs(15), || {
        get(a, "/healthz").json()["status"] == "ok"
    });
    assert_eq!(put(a, "192.0.2.2").status, 200);
    wait_until("both at one version", Duration::from_secs(10), || {
        get(a, "/healthz").json()["version"] == get(b, "/healthz").json()["version"]
    });
    inside.kill9();
}
