//! Join and leave events (`envid::events`) against the real reference
//! service on 127.0.0.1: an IP moving between apps, a restart resuming
//! from the checkpoint with the same ids, an embedded store restarted
//! without its state (another history), a registry wipe held then
//! partly restored. Every wait is bounded; speed is measured in
//! benches/events.rs, never here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use envid::client::ClientError;
use envid::events::{Event, EventKind, Events, EventsBuilder, Filter};
use envid::protocol::HostRecord;
use envid::registrar::{Registrar, Registration};

// The service of the protection tests: registration open, mass deletions
// of the registry file applied (the consumer is under test).
use super::replica_protection::{config, write, Service};

fn events(url: &str) -> EventsBuilder {
    Events::builder(config(url)).sync(|r| {
        r.poll_wait(Duration::from_secs(1))
            .min_poll_interval(Duration::from_millis(10))
            .backoff(Duration::from_millis(20))
            .max_backoff(Duration::from_millis(200))
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The i-th address of 10.100.0.0/16.
fn nth(i: usize) -> IpAddr {
    ip(&format!("10.100.{}.{}", i / 250, i % 250 + 1))
}

/// A registry file of `n` single-IP records of app `a`, 10.100.x.y, from `first`.
fn registry(first: usize, n: usize) -> String {
    let mut t = String::from("schema = 1\n");
    for i in first..first + n {
        t.push_str(&format!(
            "[[records]]\nip = \"{}\"\napp = \"a\"\nenv = \"prod\"\nidc = \"cn0\"\n",
            nth(i)
        ));
    }
    t
}

fn registration(app: &str) -> Registration {
    let record: HostRecord =
        serde_json::from_value(serde_json::json!({"app": app, "env": "prod", "idc": "cn0"}))
            .unwrap();
    Registration {
        record,
        lease: Duration::from_secs(3600),
    }
}

fn register(reg: &Registrar, ip: IpAddr, app: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reg.register(ip, &registration(app)) {
            Ok(()) => return,
            Err(ClientError::RateLimited { retry_after, .. }) if Instant::now() < deadline => {
                std::thread::sleep(retry_after.unwrap_or(Duration::from_millis(100)))
            }
            Err(e) => panic!("register {ip}: {e}"),
        }
    }
}

/// Events (each acknowledged) until `done` holds for what was received,
/// then any that come within `quiet` more; bounded by `limit`.
fn collect(
    ev: &mut Events,
    limit: Duration,
    quiet: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let start = Instant::now();
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            start.elapsed() < limit,
            "timed out; got {:?}; stats {:?}; last error {:?}",
            summary(&got),
            ev.stats(),
            ev.last_error()
        );
        if let Some(e) = ev.next(Duration::from_millis(200)).unwrap() {
            ev.ack(&e).unwrap();
            got.push(e);
        }
    }
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        if let Some(e) = ev.next(Duration::from_millis(100)).unwrap() {
            ev.ack(&e).unwrap();
            got.push(e);
        }
    }
    got
}

/// (kind, ip) of each event, in order.
fn summary(events: &[Event]) -> Vec<(EventKind, IpAddr)> {
    events.iter().map(|e| (e.kind, e.ip)).collect()
}

fn of_kind(events: &[Event], kind: EventKind) -> BTreeSet<IpAddr> {
    events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.ip)
        .collect()
}

fn joined(ev: &Events) -> BTreeMap<IpAddr, Option<String>> {
    ev.joined().map(|(ip, r)| (ip, r.app.clone())).collect()
}

#[test]
fn an_ip_moving_from_app_a_to_b_leaves_a_and_joins_b() {
    let svc = Service::start("schema = 1\n", None);
    let reg = Registrar::new(config(&svc.url()));
    let moving = ip("10.200.0.1");
    register(&reg, moving, "a");
    register(&reg, ip("10.200.0.2"), "a");
    let mut on_a = events(&svc.url())
        .filter(Filter::new().app("a"))
        .build()
        .unwrap();
    let mut on_b = events(&svc.url())
        .filter(Filter::new().app("b"))
        .build()
        .unwrap();
    let mut on_both = events(&svc.url())
        .filter(Filter::new().app("a").app("b"))
        .build()
        .unwrap();
    let first = collect(&mut on_a, Duration::from_secs(10), Duration::ZERO, |g| {
        g.len() == 2
    });
    assert_eq!(
        summary(&first),
        [
            (EventKind::Join, moving),
            (EventKind::Join, ip("10.200.0.2"))
        ]
    );
    collect(&mut on_both, Duration::from_secs(10), Duration::ZERO, |g| {
        g.len() == 2
    });
    assert!(on_b.next(Duration::from_millis(300)).unwrap().is_none());

    register(&reg, moving, "b");
    let a = collect(
        &mut on_a,
        Duration::from_secs(10),
        Duration::from_millis(300),
        |g| !g.is_empty(),
    );
    let b = collect(
        &mut on_b,
        Duration::from_secs(10),
        Duration::from_millis(300),
        |g| !g.is_empty(),
    );
    let both = collect(
        &mut on_both,
        Duration::from_secs(10),
        Duration::from_millis(300),
        |g| !g.is_empty(),
    );
    println!(
        "on a: {:?}\non b: {:?}\non both: {:?}",
        summary(&a),
        summary(&b),
        summary(&both)
    );
    assert_eq!(summary(&a), [(EventKind::Leave, moving)]);
    assert_eq!(
        a[0].record.app.as_deref(),
        Some("a"),
        "a leave carries the last record known"
    );
    assert_eq!(summary(&b), [(EventKind::Join, moving)]);
    assert_eq!(b[0].record.app.as_deref(), Some("b"));
    assert_eq!(summary(&both), [(EventKind::Change, moving)]);
    assert_eq!(both[0].previous.as_ref().unwrap().app.as_deref(), Some("a"));
    assert_eq!(both[0].record.app.as_deref(), Some("b"));
    // Ids name the history, the version and the IP.
    let v = both[0].version;
    assert!(
        both[0].id.ends_with(&format!("/{v}/10.200.0.1")),
        "{}",
        both[0].id
    );
    assert_eq!(both[0].id, b[0].id);
    svc.stop();
}

#[test]
fn a_restart_delivers_what_was_not_acknowledged_with_the_same_ids() {
    let svc = Service::start(&registry(0, 20), None);
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("events.json");
    let mut ev = events(&svc.url()).checkpoint(&cp).build().unwrap();
    // All 20 delivered, the first 12 acknowledged (and written).
    let mut seen = Vec::new();
    while seen.len() < 20 {
        if let Some(e) = ev.next(Duration::from_secs(5)).unwrap() {
            seen.push(e);
        }
    }
    ev.ack(&seen[11]).unwrap();
    ev.flush().unwrap();
    assert_eq!((ev.stats().pending, ev.stats().delivered), (8, 8));
    drop(ev);
    // Meanwhile 5 records leave and 2 arrive.
    write(&svc.path(), &registry(5, 17));

    let mut ev = events(&svc.url()).checkpoint(&cp).build().unwrap();
    assert_eq!(ev.stats().pending, 8);
    let mut again = Vec::new();
    for _ in 0..8 {
        again.push(ev.next(Duration::from_secs(5)).unwrap().expect("a repeat"));
    }
    let ids = |es: &[Event]| es.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&again),
        ids(&seen[12..]),
        "the same events, with the same ids"
    );
    ev.ack(again.last().unwrap()).unwrap();
    // Then exactly the difference.
    let diff = collect(
        &mut ev,
        Duration::from_secs(10),
        Duration::from_millis(500),
        |g| g.len() == 7,
    );
    println!("after the restart: {:?}", summary(&diff));
    assert_eq!(of_kind(&diff, EventKind::Leave), (0..5).map(nth).collect());
    assert_eq!(of_kind(&diff, EventKind::Join), (20..22).map(nth).collect());
    assert_eq!(joined(&ev).len(), 17);
    drop(ev);
    // Everything acknowledged: nothing is delivered again.
    let mut ev = events(&svc.url()).checkpoint(&cp).build().unwrap();
    assert!(ev.next(Duration::from_millis(1500)).unwrap().is_none());
    assert_eq!(ev.stats().joined, 17);
    svc.stop();
}

#[test]
fn a_store_restarted_without_its_state_gives_exactly_the_difference() {
    let svc = Service::start("schema = 1\n", None);
    let addr = svc.addr;
    let reg = Registrar::new(config(&svc.url()));
    for i in 0..20 {
        register(&reg, nth(i), "a");
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("events.json");
    // While the restarted store refills, fewer than 19 of the 20 records
    // are there: protection holds the leaves meanwhile (thresholds at 95%
    // for this small registry; 35% and 75% by default), so an IP that
    // comes back never leaves.
    let mut ev = events(&svc.url())
        .sync(|r| r.protection_thresholds(0.95, 0.95))
        .checkpoint(&cp)
        .build()
        .unwrap();
    let first = collect(&mut ev, Duration::from_secs(10), Duration::ZERO, |g| {
        g.len() == 20
    });
    let old_history = first[0].history.clone();
    assert!(old_history.is_some());

    // The embedded store restarts without its state: a new history. 16 of
    // the 20 come back (new registrations), 3 new ones arrive.
    svc.stop();
    let svc = Service::start("schema = 1\n", Some(addr));
    let reg = Registrar::new(config(&svc.url()));
    for i in 4..23 {
        register(&reg, nth(i), "a");
    }
    let diff = collect(
        &mut ev,
        Duration::from_secs(20),
        Duration::from_millis(1500),
        |g| g.len() >= 23,
    );
    println!(
        "after the new history: {:?} {:?}",
        summary(&diff),
        ev.stats()
    );
    assert_eq!(of_kind(&diff, EventKind::Leave), (0..4).map(nth).collect());
    assert_eq!(of_kind(&diff, EventKind::Join), (20..23).map(nth).collect());
    // Those that came back are new registrations: a change naming both.
    assert_eq!(
        of_kind(&diff, EventKind::Change),
        (4..20).map(nth).collect()
    );
    for e in diff.iter().filter(|e| e.kind == EventKind::Change) {
        assert!(e.previous_registration.is_some() && e.registration != e.previous_registration);
    }
    assert_eq!(diff.len(), 23, "no spurious leave for an IP that came back");
    assert!(diff.iter().all(|e| e.history != old_history));
    assert_eq!(
        joined(&ev).keys().copied().collect::<BTreeSet<_>>(),
        (4..23).map(nth).collect()
    );
    assert!(ev.stats().snapshots >= 2);
    svc.stop();
}

#[test]
fn a_wipe_holds_every_leave_and_a_partial_restore_leaves_only_the_rest() {
    let svc = Service::start(&registry(0, 1000), None);
    let dir = tempfile::tempdir().unwrap();
    // Protection ends at 65% of the normal count (default 75%), so that
    // 70% restored ends it.
    let mut ev = events(&svc.url())
        .sync(|r| r.protection_thresholds(0.35, 0.65))
        .checkpoint(dir.path().join("events.json"))
        .build()
        .unwrap();
    let joins = collect(&mut ev, Duration::from_secs(20), Duration::ZERO, |g| {
        g.len() == 1000
    });
    assert!(joins.iter().all(|e| e.kind == EventKind::Join));

    // Wiped: protected, every leave held.
    write(&svc.path(), "schema = 1\n");
    let start = Instant::now();
    let mut during = Vec::new();
    while !ev.stats().protected {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no protection: {:?}",
            ev.stats()
        );
        if let Some(e) = ev.next(Duration::from_millis(200)).unwrap() {
            during.push(e);
        }
    }
    // A new record meanwhile joins as usual.
    write(&svc.path(), &(registry(0, 0) + &registry(2000, 1)[11..]));
    during.extend(collect(
        &mut ev,
        Duration::from_secs(10),
        Duration::from_millis(500),
        |g| !g.is_empty(),
    ));
    let s = ev.stats();
    println!("wiped: {s:?}");
    assert_eq!(
        summary(&during),
        [(EventKind::Join, nth(2000))],
        "no leave while protected"
    );
    assert_eq!(s.held_leaves, 1000);
    assert_eq!(s.joined, 1001);

    // 70% restored: protection ends; leaves for the 30% still gone only.
    write(&svc.path(), &(registry(0, 700) + &registry(2000, 1)[11..]));
    let after = collect(
        &mut ev,
        Duration::from_secs(10),
        Duration::from_millis(500),
        |g| g.len() >= 300,
    );
    let s = ev.stats();
    println!("70% restored: {s:?}");
    assert!(!s.protected);
    assert_eq!(s.held_leaves, 0);
    assert_eq!(after.len(), 300, "{:?}", &summary(&after)[..5]);
    assert_eq!(
        of_kind(&after, EventKind::Leave),
        (700..1000).map(nth).collect()
    );
    assert_eq!(s.joined, 701);
    svc.stop();
}

/// A service played from a script: the snapshot, then one answer per long
/// poll; past the script, empty polls at the last version.
struct Scripted {
    snapshot: String,
    polls: std::sync::Mutex<std::collections::VecDeque<String>>,
    last: std::sync::Mutex<u64>,
}

impl envid::client::Transport for Scripted {
    fn send(&self, request: &envid::client::Request<'_>) -> Result<Option<Vec<u8>>, ClientError> {
        if !request.path.contains("since=") {
            return Ok(Some(self.snapshot.clone().into_bytes()));
        }
        let next = self.polls.lock().unwrap().pop_front();
        let body = match next {
            Some(b) => b,
            None => {
                std::thread::sleep(Duration::from_millis(20));
                let v = *self.last.lock().unwrap();
                serde_json::json!({"version": v, "history": "h1"}).to_string()
            }
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        *self.last.lock().unwrap() = v["version"].as_u64().unwrap();
        Ok(Some(body.into_bytes()))
    }
}

fn registered(ip: &str, app: &str, registration: &str) -> serde_json::Value {
    serde_json::json!({"ip": ip, "app": app, "env": "prod", "idc": "cn0", "registration": registration})
}

/// What a consumer that revokes only on a registration match does (as
/// Cilium deletes only on a metadata match): IP → the registration granted.
fn act_on_match(granted: &mut BTreeMap<IpAddr, String>, e: &Event) {
    let reg = e.registration.clone().expect("a registration id");
    match e.kind {
        EventKind::Join | EventKind::Change => {
            granted.insert(e.ip, reg);
        }
        EventKind::Leave => {
            if granted.get(&e.ip) == Some(&reg) {
                granted.remove(&e.ip);
            }
        }
    }
}

#[test]
fn a_reused_ip_is_another_registration_and_a_leave_names_the_one_that_left() {
    let delta = |v: u64, upserts: Vec<serde_json::Value>, deletes: Vec<&str>| {
        serde_json::json!({"version": v, "history": "h1", "upserts": upserts, "deletes": deletes})
            .to_string()
    };
    let script = Scripted {
        snapshot: serde_json::json!({"version": 1, "history": "h1", "records": [
            registered("10.3.0.1", "a", "r1"),
        ]})
        .to_string(),
        polls: std::sync::Mutex::new(
            [
                // The IP registered again (another host, same app): r2.
                delta(2, vec![registered("10.3.0.1", "a", "r2")], vec![]),
                // A renewal of r2 changes nothing a consumer acts on.
                delta(3, vec![registered("10.3.0.1", "a", "r2")], vec![]),
                // r2 leaves; then the IP is reused by r3.
                delta(4, vec![], vec!["10.3.0.1"]),
                delta(5, vec![registered("10.3.0.1", "a", "r3")], vec![]),
            ]
            .into(),
        ),
        last: std::sync::Mutex::new(1),
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("events.json");
    let mut ev = events("http://127.0.0.1:9")
        .checkpoint(&cp)
        .build_with_transport(std::sync::Arc::new(script))
        .unwrap();
    let got = collect(
        &mut ev,
        Duration::from_secs(10),
        Duration::from_millis(200),
        |g| g.len() == 4,
    );
    let seen: Vec<(EventKind, Option<&str>, Option<&str>, u64)> = got
        .iter()
        .map(|e| {
            (
                e.kind,
                e.registration.as_deref(),
                e.previous_registration.as_deref(),
                e.version,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Join, Some("r1"), None, 1),
            (EventKind::Change, Some("r2"), Some("r1"), 2),
            (EventKind::Leave, Some("r2"), None, 4),
            (EventKind::Join, Some("r3"), None, 5),
        ]
    );
    assert_eq!(got[2].id, "h1/4/10.3.0.1");
    // A consumer that revokes only on a registration match never lets the
    // leave of r2 revoke r3, however late it is handled again.
    let mut granted = BTreeMap::new();
    for e in got.iter().chain(std::iter::once(&got[2])) {
        act_on_match(&mut granted, e);
    }
    assert_eq!(granted.get(&ip("10.3.0.1")).map(String::as_str), Some("r3"));
}

#[test]
fn a_late_leave_of_an_ips_previous_owner_never_revokes_the_new_one() {
    let svc = Service::start("schema = 1\n", None);
    let reg = Registrar::new(config(&svc.url()));
    let x = ip("10.201.0.1");
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("events.json");
    let mut ev = events(&svc.url())
        .filter(Filter::new().app("a"))
        .checkpoint(&cp)
        .build()
        .unwrap();
    // What a consumer that acts only on a registration match holds.
    let mut granted = BTreeMap::new();
    let mut act = |e: &Event| {
        act_on_match(&mut granted, e);
        granted.get(&x).cloned()
    };
    let next = |ev: &mut Events| {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(10), "no event");
            if let Some(e) = ev.next(Duration::from_millis(200)).unwrap() {
                return e;
            }
        }
    };

    register(&reg, x, "a");
    let join = next(&mut ev);
    let r1 = join
        .registration
        .clone()
        .expect("the service assigns an id");
    act(&join);
    ev.ack(&join).unwrap();
    // A renewal keeps the registration: no event.
    assert!(reg.renew(x).unwrap());
    assert!(ev.next(Duration::from_millis(500)).unwrap().is_none());
    // The IP registered again, same app, env and idc: another registration,
    // a change naming both.
    register(&reg, x, "a");
    let change = next(&mut ev);
    assert_eq!(change.kind, EventKind::Change);
    assert_eq!(change.previous_registration.as_deref(), Some(r1.as_str()));
    let r2 = change.registration.clone().unwrap();
    assert_ne!(r1, r2);
    act(&change);
    ev.ack(&change).unwrap();
    ev.flush().unwrap();

    // r2 leaves and the IP is reused by r3: both acted on, neither
    // acknowledged when the consumer dies.
    reg.deregister(x).unwrap();
    let leave = next(&mut ev);
    assert_eq!(
        (leave.kind, leave.registration.as_deref()),
        (EventKind::Leave, Some(r2.as_str()))
    );
    act(&leave);
    register(&reg, x, "a");
    let rejoin = next(&mut ev);
    let r3 = rejoin.registration.clone().unwrap();
    assert_eq!(rejoin.kind, EventKind::Join);
    assert!(r3 != r1 && r3 != r2);
    assert_eq!(act(&rejoin).as_deref(), Some(r3.as_str()));
    drop(ev);

    // After the restart the leave of r2 comes again, late: it names r2, so
    // the consumer holding r3 keeps it.
    let mut ev = events(&svc.url())
        .filter(Filter::new().app("a"))
        .checkpoint(&cp)
        .build()
        .unwrap();
    let again = next(&mut ev);
    assert_eq!(again.id, leave.id);
    assert_eq!(again.registration.as_deref(), Some(r2.as_str()));
    assert_eq!(
        act(&again).as_deref(),
        Some(r3.as_str()),
        "the new owner is kept"
    );
    let again = next(&mut ev);
    assert_eq!(again.id, rejoin.id);
    assert_eq!(act(&again).as_deref(), Some(r3.as_str()));
    ev.ack(&again).unwrap();
    assert!(ev.next(Duration::from_millis(500)).unwrap().is_none());
    assert_eq!(
        ev.joined().next().unwrap().1.registration.as_deref(),
        Some(r3.as_str())
    );
    svc.stop();
}
