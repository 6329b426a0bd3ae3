//! `envid serve`'s capacity flags reach the service.

use super::common::*;

fn metrics_text(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: envid\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// `--max-long-polls` reaches the service: with 2, two polls wait and a
/// third is told why it must retry.
#[test]
fn serve_caps_waiting_long_polls_as_told() {
    use std::io::{Read, Write};
    let (child, url, _rx) = serve(&["--max-connections", "16", "--max-long-polls", "2"]);
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let poll = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(
            s,
            "GET /v1/registry?since=1&wait=30 HTTP/1.1\r\nHost: envid\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        s
    };
    let answer = |mut s: std::net::TcpStream| {
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let _waiting = [poll(), poll()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !metrics_text(addr).contains("envid_long_polls_in_flight 2") {
        assert!(
            std::time::Instant::now() < deadline,
            "two polls never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let answer = answer(poll());
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("2 long polls are already waiting"),
        "{answer}"
    );
    terminate(child);
}
