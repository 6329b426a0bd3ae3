//! The record set's unit tests: layers, history, deltas, leases.

use super::*;

fn rec(key: &str, env: &str) -> HostRecord {
    let text = if key.contains('/') {
        format!("[[records]]\ncidr = \"{key}\"\nenv = \"{env}\"\nidc = \"cn0\"\n")
    } else {
        format!("[[records]]\nip = \"{key}\"\nenv = \"{env}\"\nidc = \"cn0\"\n")
    };
    crate::registry_file::parse_registry(&text, std::path::Path::new("t.toml"))
        .unwrap()
        .remove(0)
}

fn k(s: &str) -> RecordKey {
    s.parse().unwrap()
}

#[test]
fn reload_diff_bumps_version_and_records_history() {
    let store = Records::new(
        vec![rec("10.0.0.1", "beta"), rec("10.1.0.0/16", "prod")],
        10,
    );
    assert_eq!(store.version(), 1);
    let mut rx = store.subscribe();
    let change = store
        .replace_all(vec![rec("10.0.0.1", "prod"), rec("10.2.0.0/16", "dev")])
        .unwrap();
    assert_eq!(change.version, 2);
    assert_eq!(change.upserts.len(), 2);
    assert_eq!(change.deletes, vec![k("10.1.0.0/16")]);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 2);
    let snap = store.snapshot();
    assert_eq!(
        snap.lookup("10.0.0.1".parse().unwrap()).unwrap().env,
        "prod"
    );
    assert!(snap.lookup("10.1.0.1".parse().unwrap()).is_none());
    assert_eq!(snap.lookup("10.2.0.1".parse().unwrap()).unwrap().env, "dev");
    // The same set again: no new version.
    assert!(store
        .replace_all(vec![rec("10.0.0.1", "prod"), rec("10.2.0.0/16", "dev")])
        .is_none());
    assert_eq!(store.version(), 2);
}

#[test]
fn old_snapshots_stay_valid_after_a_swap() {
    let store = Records::new(vec![rec("10.0.0.1", "beta")], 10);
    let old = store.snapshot();
    store.replace_all(vec![]).unwrap();
    assert_eq!(old.lookup("10.0.0.1".parse().unwrap()).unwrap().env, "beta");
    assert!(store
        .snapshot()
        .lookup("10.0.0.1".parse().unwrap())
        .is_none());
}

#[test]
fn changes_since_merges_and_expires() {
    let store = Records::new(vec![rec("10.0.0.1", "a")], 2);
    store
        .replace_all(vec![rec("10.0.0.1", "b"), rec("10.0.0.2", "x")])
        .unwrap(); // v2
    store.replace_all(vec![rec("10.0.0.1", "c")]).unwrap(); // v3
    let d = store.changes_since(1).unwrap();
    assert_eq!(d.version, 3);
    assert_eq!(d.upserts.len(), 1);
    assert_eq!(d.upserts[0].env, "c");
    assert_eq!(d.deletes, vec![k("10.0.0.2")]);
    let d = store.changes_since(3).unwrap();
    assert!(d.upserts.is_empty() && d.deletes.is_empty());
    store.replace_all(vec![rec("10.0.0.1", "d")]).unwrap(); // v4; history keeps v3, v4
    assert_eq!(
        store.changes_since(1),
        Err(Gone {
            asked: 1,
            oldest: 2,
            current: 4
        })
    );
    assert_eq!(store.changes_since(2).unwrap().upserts[0].env, "d");
}

#[test]
fn static_records_win_over_registrations_which_survive_reloads() {
    let store = Records::new(vec![rec("10.0.0.1", "static")], 10);
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    // A registration never replaces the file's record for its IP.
    assert!(store
        .register(ip, rec("10.0.0.1", "dyn"), 60, 1_000)
        .is_none());
    assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static");
    assert_eq!(store.static_record(ip).unwrap().env, "static");
    // A reload that drops the static record shows the registration.
    assert_eq!(store.replace_all(vec![]).unwrap().version, 2);
    assert_eq!(store.snapshot().lookup(ip).unwrap().env, "dyn");
    // Same record again: only the lease moves, no version.
    assert!(store
        .register(ip, rec("10.0.0.1", "dyn"), 60, 2_000)
        .is_none());
    // A reload that adds a static record for the IP hides it again.
    assert_eq!(
        store
            .replace_all(vec![rec("10.0.0.1", "static2")])
            .unwrap()
            .version,
        3
    );
    assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static2");
    // Renewal moves the expiry, never the version.
    assert_eq!(store.renew(ip, None, 50_000), Some(60));
    assert_eq!(store.expire(61_000).0, Vec::<IpAddr>::new());
    let (expired, change) = store.expire(110_000);
    assert_eq!(expired, vec![ip]);
    assert!(change.is_none(), "the static record was served all along");
    assert_eq!(store.snapshot().lookup(ip).unwrap().env, "static2");
    assert_eq!(store.deregister(ip), (false, None));
    assert_eq!(store.renew(ip, None, 0), None);
}

#[test]
fn only_the_owner_renews_or_deregisters() {
    let store = Records::new(vec![], 10);
    let ip: IpAddr = "10.0.0.9".parse().unwrap();
    let mut r = rec("10.0.0.9", "prod");
    r.app = Some("payment".into());
    r.registration = Some("r2".into());
    store.register(ip, r, 60, 0).unwrap();
    let app = |name: &'static str| move |r: &HostRecord| r.app.as_deref() == Some(name);
    let (intruder, payment) = (app("intruder"), app("payment"));
    assert!(matches!(
        store.renew_owned(ip, Some(&intruder), None, 1),
        Err(StoreError::NotOwner(_))
    ));
    assert!(store.deregister_owned(ip, Some(&intruder), None).is_err());
    let (lease, renewed) = store
        .renew_owned(ip, Some(&payment), None, 1)
        .unwrap()
        .unwrap();
    assert_eq!((lease, renewed.app.as_deref()), (60, Some("payment")));
    assert_eq!(renewed.ip, Some(ip));
    assert_eq!(store.renew_owned(ip, None, None, 1).unwrap().unwrap().0, 60);
    // Naming a registration: only that one, and the owner check first.
    assert_eq!(
        store
            .renew_owned(ip, None, Some("r2"), 1)
            .unwrap()
            .unwrap()
            .0,
        60
    );
    assert!(matches!(
        store.renew_owned(ip, Some(&payment), Some("r1"), 1),
        Err(StoreError::RegistrationChanged(theirs)) if theirs.registration.as_deref() == Some("r2")
    ));
    assert!(matches!(
        store.deregister_owned(ip, Some(&intruder), Some("r1")),
        Err(StoreError::NotOwner(_))
    ));
    assert!(matches!(
        store.deregister_owned(ip, None, Some("r1")),
        Err(StoreError::RegistrationChanged(_))
    ));
    assert!(store.snapshot().lookup(ip).is_some(), "nothing removed");
    assert!(
        store
            .deregister_owned(ip, Some(&payment), Some("r2"))
            .unwrap()
            .0
    );
    assert_eq!(store.renew_owned(ip, Some(&payment), None, 1), Ok(None));
    // Nothing registered: nothing to refuse.
    assert!(!store.deregister_owned(ip, None, Some("r2")).unwrap().0);
}
