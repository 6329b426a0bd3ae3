//! Replica protocol handling against a scripted HTTP peer: the request
//! sequence (snapshot, `since=N` long polls, 410 → snapshot again), a
//! service that went back in time, and bad answers (garbage, 500) that must
//! leave the last version serving.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use envid::replica::Replica;
use envid::ServiceConfig;

type Handler = dyn Fn(&str, usize) -> (u16, String) + Send + Sync;

/// Answers each request with `handler(path, n)`, n counting from 0, and
/// records the paths.
struct Peer {
    url: String,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn start(handler: impl Fn(&str, usize) -> (u16, String) + Send + Sync + 'static) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let p2 = paths.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let n = {
                    let mut p = p2.lock().unwrap();
                    p.push(path.clone());
                    p.len() - 1
                };
                let (status, body) = handler(&path, n);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Peer { url, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

fn rec(ip: &str, app: &str) -> serde_json::Value {
    serde_json::json!({"ip": ip, "app": app, "env": "prod", "idc": "cn0"})
}

fn snapshot(version: u64, records: &[serde_json::Value]) -> (u16, String) {
    (
        200,
        serde_json::json!({"version": version, "records": records}).to_string(),
    )
}

fn delta(version: u64, upserts: &[serde_json::Value], deletes: &[&str]) -> (u16, String) {
    (
        200,
        serde_json::json!({"version": version, "upserts": upserts, "deletes": deletes}).to_string(),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn app(r: &Replica, s: &str) -> Option<String> {
    r.lookup(ip(s)).and_then(|x| x.app.clone())
}

#[test]
fn snapshot_deltas_gone_and_back_in_time() {
    let peer = Peer::start(|path, n| match (n, path) {
        (0, "/v1/registry") => snapshot(5, &[rec("10.0.0.1", "a"), rec("10.0.0.2", "b")]),
        (1, p) if p.starts_with("/v1/registry?since=5&") => delta(
            7,
            &[rec("10.0.0.3", "c"), rec("10.0.0.1", "a2")],
            &["10.0.0.2"],
        ),
        (2, p) if p.starts_with("/v1/registry?since=7&") => (410, "{}".into()),
        (3, "/v1/registry") => snapshot(20, &[rec("10.0.0.9", "z")]),
        (4, p) if p.starts_with("/v1/registry?since=20&") => delta(20, &[], &[]),
        // The service restarted from its file: version 2 < 20.
        (5, p) if p.starts_with("/v1/registry?since=20&") => delta(2, &[], &[]),
        (6, "/v1/registry") => snapshot(2, &[rec("10.0.0.8", "y")]),
        (_, p) if p.starts_with("/v1/registry?since=2&") => {
            thread::sleep(Duration::from_millis(50));
            delta(2, &[], &[])
        }
        (n, p) => panic!("unexpected request {n}: {p}"),
    });
    let r = Replica::builder(
        ServiceConfig::builder()
            .endpoint(&peer.url)
            .build()
            .unwrap(),
    )
    .background_sync(false)
    .poll_wait(Duration::from_secs(1))
    .build()
    .unwrap();
    assert_eq!(
        (r.version(), app(&r, "10.0.0.2").as_deref()),
        (5, Some("b"))
    );
    r.sync_once().unwrap();
    assert_eq!(r.version(), 7);
    assert_eq!(app(&r, "10.0.0.1").as_deref(), Some("a2"));
    assert_eq!(app(&r, "10.0.0.2"), None);
    assert_eq!(app(&r, "10.0.0.3").as_deref(), Some("c"));
    let before = r.view();
    r.sync_once().unwrap(); // 410: nothing installed yet
    assert_eq!(r.version(), 7);
    r.sync_once().unwrap(); // the snapshot again
    assert_eq!((r.version(), r.stats().records), (20, 1));
    assert_eq!(app(&r, "10.0.0.9").as_deref(), Some("z"));
    // A view taken earlier is unchanged: readers hold whole versions.
    assert_eq!(before.version(), 7);
    assert_eq!(before.len(), 2);
    r.sync_once().unwrap(); // empty long poll
    r.sync_once().unwrap(); // version went backwards → snapshot
    r.sync_once().unwrap();
    assert_eq!(r.version(), 2);
    assert_eq!(app(&r, "10.0.0.8").as_deref(), Some("y"));
    let s = r.stats();
    assert_eq!((s.snapshots, s.deltas, s.sync_errors), (3, 1, 0), "{s:?}");
    let paths = peer.paths();
    assert!(paths[1].contains("wait=1"), "{paths:?}");
}

#[test]
fn bad_answers_keep_the_last_version_and_back_off() {
    let peer = Peer::start(|path, n| match n {
        0 => snapshot(1, &[rec("10.0.0.1", "a")]),
        1 => (
            200,
            "{\"version\": 2, \"upserts\": [{\"ip\": \"10.0.0.1\"".into(),
        ),
        2 => (500, "{}".into()),
        3 => delta(2, &[rec("10.0.0.1", "bad")], &["not-a-key"]),
        4 => (
            200,
            r#"{"version": 2, "upserts": [{"env": "x", "idc": "y"}]}"#.into(),
        ),
        5 if path.starts_with("/v1/registry?since=1&") => delta(3, &[rec("10.0.0.1", "b")], &[]),
        _ => {
            thread::sleep(Duration::from_millis(100));
            delta(3, &[], &[])
        }
    });
    let r = Replica::builder(
        ServiceConfig::builder()
            .endpoint(&peer.url)
            .build()
            .unwrap(),
    )
    .poll_wait(Duration::from_secs(1))
    .backoff(Duration::from_millis(10))
    .max_backoff(Duration::from_millis(40))
    .build()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.version() != 3 {
        // Until then, every lookup answers from version 1.
        assert_eq!(app(&r, "10.0.0.1").as_deref(), Some("a"));
        assert!(Instant::now() < deadline, "no recovery: {:?}", r.stats());
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(app(&r, "10.0.0.1").as_deref(), Some("b"));
    let s = r.stats();
    assert_eq!(s.sync_errors, 4, "{s:?}");
    assert_eq!(s.snapshots, 1, "{s:?}");
    assert!(r.last_error().is_some());
    assert!(s.age.unwrap() < Duration::from_secs(2));
}

#[test]
fn the_history_goes_back_with_since_and_a_delta_of_another_is_never_applied() {
    let peer = Peer::start(|path, n| {
        match (n, path) {
        (0, "/v1/registry") => (
            200,
            serde_json::json!({"version": 5, "history": "aa01", "records": [rec("10.0.0.1", "a")]})
                .to_string(),
        ),
        // A service on another history answering with a delta anyway (a
        // proxy, an old instance): never applied.
        (1, p) if p.starts_with("/v1/registry?since=5&") && p.ends_with("&history=aa01") => (
            200,
            serde_json::json!({"version": 9, "history": "bb02", "upserts": [rec("10.0.0.1", "wrong")], "deletes": []})
                .to_string(),
        ),
        (2, "/v1/registry") => (
            200,
            serde_json::json!({"version": 9, "history": "bb02", "records": [rec("10.0.0.1", "b")]})
                .to_string(),
        ),
        (_, p) if p.ends_with("&history=bb02") => {
            thread::sleep(Duration::from_millis(50));
            delta(9, &[], &[])
        }
        (n, p) => panic!("unexpected request {n}: {p}"),
    }
    });
    let r = Replica::builder(
        ServiceConfig::builder()
            .endpoint(&peer.url)
            .build()
            .unwrap(),
    )
    .background_sync(false)
    .poll_wait(Duration::from_secs(1))
    .build()
    .unwrap();
    assert_eq!(r.view().history(), Some("aa01"));
    r.sync_once().unwrap(); // a delta of another history: snapshot next
    assert_eq!(app(&r, "10.0.0.1").as_deref(), Some("a"));
    r.sync_once().unwrap();
    assert_eq!((r.version(), r.view().history()), (9, Some("bb02")));
    assert_eq!(app(&r, "10.0.0.1").as_deref(), Some("b"));
    r.sync_once().unwrap();
    assert_eq!(r.stats().snapshots, 2);
}
