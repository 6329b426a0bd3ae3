//! Who is asking: the client's address (the connection's peer, or
//! `X-Forwarded-For` from a trusted proxy), the bearer token, the read-token
//! check, and the limit on failed authentications per client address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use envid::protocol::canonical_ip;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::apps::AppsHandle;
use crate::error::{ApiError, ErrorCode};

/// Who may register.
#[derive(Clone, Debug)]
pub(crate) enum RegistrationMode {
    /// Nobody (no `--apps`): registration answers `403`.
    Closed,
    /// Anybody, for any IP (`--insecure-open-registration`; development).
    Open,
    /// The apps file's principals, under its rules.
    Apps(Arc<AppsHandle>),
}

impl RegistrationMode {
    /// The word `/healthz` shows.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            RegistrationMode::Closed => "closed",
            RegistrationMode::Open => "insecure_open",
            RegistrationMode::Apps(_) => "apps",
        }
    }
}

/// The SHA-256 of a token: what the service keeps of the read token, so its
/// comparison takes the same time whatever the length of the guess. Its
/// `Debug` shows nothing (a short token could be found from its digest).
#[derive(Clone, Copy)]
pub(crate) struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

pub(crate) fn digest(token: &str) -> TokenDigest {
    TokenDigest(Sha256::digest(token.as_bytes()).into())
}

/// Compares a token with a stored digest in constant time.
pub(crate) fn token_matches(given: &str, expected: &TokenDigest) -> bool {
    bool::from(digest(given).0.ct_eq(&expected.0))
}

/// The bearer token of `Authorization: Bearer <token>`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    let rest = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty()).then_some(rest)
}

/// The address of the client: the connection's peer, unless the peer is a
/// trusted proxy, in which case the right-most `X-Forwarded-For` address
/// that is not itself a trusted proxy (the left-most when all are).
/// Proxies append the address they saw, so only the entries added by
/// trusted proxies are believed; anything a client wrote to the left of
/// them is ignored. `Err` names an entry that is not an address.
pub(crate) fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, String> {
    let peer = canonical_ip(peer.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value
            .to_str()
            .map_err(|_| "X-Forwarded-For is not ASCII".to_string())?;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let ip = part
                .parse::<IpAddr>()
                .or_else(|_| part.parse::<SocketAddr>().map(|s| s.ip()))
                .map_err(|_| format!("X-Forwarded-For entry {part:?} is not an IP address"))?;
            hops.push(canonical_ip(ip));
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    Ok(client)
}

/// The client address of a request, or the `400` for a bad
/// `X-Forwarded-For`.
pub(crate) fn client_of(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, ApiError> {
    client_ip(peer, headers, trusted).map_err(|m| ApiError::new(ErrorCode::InvalidForwardedFor, m))
}

/// At most `limit` failed authentications per client address within a
/// sliding `window`; past it, every request needing a token from that
/// address is `429` until the window has room (a right token too, so a
/// guesser learns nothing while blocked).
#[derive(Debug)]
pub(crate) struct FailureLimit {
    limit: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimit {
    pub(crate) fn new(limit: usize, window: Duration) -> FailureLimit {
        FailureLimit {
            limit,
            window,
            failures: Mutex::default(),
        }
    }

    /// How long `ip` must wait, when it is blocked.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let q = map.get_mut(&ip)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        (q.len() >= self.limit).then(|| {
            let oldest = q[q.len() - self.limit];
            self.window.saturating_sub(now.duration_since(oldest))
        })
    }

    /// Counts one failure of `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let q = map.entry(ip).or_default();
        q.push_back(Instant::now());
        // Never more than needed to decide.
        while q.len() > self.limit {
            q.pop_front();
        }
    }

    /// Forgets addresses with no failure in the window.
    pub(crate) fn prune(&self) {
        let window = self.window;
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < window));
    }

    /// The `429` for a blocked address.
    pub(crate) fn error(&self, wait: Duration) -> ApiError {
        ApiError::new(
            ErrorCode::TooManyAuthFailures,
            format!(
                "more than {} failed authentications from this address within {:?}; retry later",
                self.limit, self.window
            ),
        )
        .retry_after(wait)
    }
}

/// The address class registration refuses for `ip`, if any: unspecified,
/// loopback, link-local, multicast, broadcast. `allow_loopback` lets
/// loopback through (tests and local development).
pub(crate) fn special_class(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let class = match canonical_ip(ip) {
        IpAddr::V4(a) => {
            if a.is_unspecified() || a.octets()[0] == 0 {
                "unspecified"
            } else if a.is_loopback() {
                "loopback"
            } else if a.is_link_local() {
                "link-local"
            } else if a.is_multicast() {
                "multicast"
            } else if a.is_broadcast() {
                "broadcast"
            } else {
                return None;
            }
        }
        IpAddr::V6(a) => {
            if a.is_unspecified() {
                "unspecified"
            } else if a.is_loopback() {
                "loopback"
            } else if a.segments()[0] & 0xffc0 == 0xfe80 {
                "link-local"
            } else if a.is_multicast() {
                "multicast"
            } else {
                return None;
            }
        }
    };
    (!(allow_loopback && class == "loopback")).then_some(class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.1.0.0/16".parse().unwrap()];
        let proxy: SocketAddr = "10.1.0.2:5000".parse().unwrap();
        let stranger: SocketAddr = "10.9.0.2:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A stranger's header is ignored.
        assert_eq!(
            client_ip(stranger, &xff(&["1.2.3.4"]), &trusted),
            Ok(ip("10.9.0.2"))
        );
        // The right-most untrusted hop, whatever the client put before it.
        assert_eq!(
            client_ip(proxy, &xff(&["6.6.6.6, 10.20.0.1", "10.1.0.9"]), &trusted),
            Ok(ip("10.20.0.1"))
        );
        assert_eq!(client_ip(proxy, &xff(&[]), &trusted), Ok(ip("10.1.0.2")));
        assert_eq!(
            client_ip(proxy, &xff(&["10.1.0.7"]), &trusted),
            Ok(ip("10.1.0.7"))
        );
        assert!(client_ip(proxy, &xff(&["nope"]), &trusted).is_err());
    }

    #[test]
    fn special_classes() {
        let c = |s: &str, lo| special_class(s.parse().unwrap(), lo);
        assert_eq!(c("0.0.0.0", false), Some("unspecified"));
        assert_eq!(c("::", false), Some("unspecified"));
        assert_eq!(c("127.0.0.1", false), Some("loopback"));
        assert_eq!(c("127.0.0.1", true), None);
        assert_eq!(c("::1", false), Some("loopback"));
        assert_eq!(c("::ffff:127.0.0.1", false), Some("loopback"));
        assert_eq!(c("169.254.1.1", true), Some("link-local"));
        assert_eq!(c("fe80::1", false), Some("link-local"));
        assert_eq!(c("224.0.0.1", false), Some("multicast"));
        assert_eq!(c("ff02::1", false), Some("multicast"));
        assert_eq!(c("255.255.255.255", false), Some("broadcast"));
        assert_eq!(c("10.0.0.1", false), None);
        assert_eq!(c("2001:db8::1", false), None);
    }

    #[test]
    fn failures_block_then_release() {
        let l = FailureLimit::new(2, Duration::from_millis(200));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.blocked(ip).is_none());
        l.failed(ip);
        l.failed(ip);
        assert!(l.blocked(ip).is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.blocked(ip).is_none());
    }
}
