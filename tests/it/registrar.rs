//! `envid::registrar::Registrar` against the real reference service on
//! 127.0.0.1: it remembers the registration id its `PUT` got and names it
//! on renewals and the removal, so a host whose IP went to another host
//! (same app, the IP reused) neither keeps the new registration alive nor
//! removes it, however late its calls come.

use std::net::IpAddr;
use std::time::Duration;

use envid::client::ClientError;
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};

use super::replica_protection::{config, Service};

fn registration() -> Registration {
    let record: HostRecord =
        serde_json::from_value(serde_json::json!({"app": "a", "env": "prod", "idc": "cn0"}))
            .unwrap();
    Registration {
        record,
        lease: Duration::from_secs(600),
    }
}

/// The registration id the service serves for `ip` (`None`: unknown).
fn served(url: &str, ip: IpAddr) -> Option<String> {
    // A client of its own each time: no cached answer.
    let client = envid::lookup::LookupClient::builder(config(url))
        .build()
        .unwrap();
    client
        .lookup(ip)
        .unwrap()
        .and_then(|r| r.registration.clone())
}

#[test]
fn a_registrar_renews_and_removes_only_its_own_registration() {
    let svc = Service::start("schema = 1\n", None);
    let url = svc.url();
    let ip: IpAddr = "10.202.0.1".parse().unwrap();
    let old_host = Registrar::new(config(&url));
    let new_host = Registrar::new(config(&url));

    old_host.register(ip, &registration()).unwrap();
    let old = old_host.registration(ip).expect("the PUT answered an id");
    assert_eq!(served(&url, ip).as_deref(), Some(old.as_str()));
    assert!(old_host.renew(ip).unwrap());

    // The IP goes to another host of the same app.
    new_host.register(ip, &registration()).unwrap();
    let new = new_host.registration(ip).unwrap();
    assert_ne!(old, new);

    // The old host's renewal is refused (409), and renew_or_register does
    // not take the IP back.
    let e = old_host.renew(ip).unwrap_err();
    assert!(
        matches!(e, ClientError::Status { status: 409, .. }),
        "{e:?}"
    );
    let e = old_host.renew_or_register(ip, &registration()).unwrap_err();
    assert!(
        matches!(e, ClientError::Status { status: 409, .. }),
        "{e:?}"
    );
    // Its pre-stop removal succeeds without removing anything: what it
    // registered is gone either way.
    old_host.deregister(ip).unwrap();
    assert_eq!(old_host.registration(ip), None);
    assert_eq!(served(&url, ip).as_deref(), Some(new.as_str()));

    // A process that removes for another (a pre-stop hook) is given the id.
    let hook = Registrar::new(config(&url));
    hook.set_registration(ip, Some(old.clone()));
    hook.deregister(ip).unwrap();
    assert_eq!(served(&url, ip).as_deref(), Some(new.as_str()));

    // The new host's own calls go through.
    assert!(new_host.renew(ip).unwrap());
    new_host.deregister(ip).unwrap();
    assert_eq!(served(&url, ip), None);
    // Unknown now: a renewal says so (register again), a removal is no error.
    assert!(!new_host.renew(ip).unwrap());
    new_host.deregister(ip).unwrap();
    svc.stop();
}
