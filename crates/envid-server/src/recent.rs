//! What happened lately, for the console and `GET /v1/refusals` /
//! `GET /v1/status`: the last registration refusals (a bounded ring, with
//! counts by reason since start) and the last registry reload.
//!
//! In memory only, lost at a restart: the log and `/metrics` are the
//! record; this is the glance. Nothing here holds a token: a refusal keeps
//! the app the token named, never the token (the refusal's message is the
//! answer the caller got, which never quotes one).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use serde::Serialize;

use crate::store::now_unix_ms;

/// How many refusals are kept: enough to see a burst and what it was, not
/// a log.
pub(crate) const REFUSALS_KEPT: usize = 512;

/// One refused registration request.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Refusal {
    /// When, in ms since the Unix epoch.
    pub(crate) at_unix_ms: u64,
    /// `register`, `renew` or `deregister`.
    pub(crate) op: &'static str,
    /// The connection's peer.
    pub(crate) peer: SocketAddr,
    /// The client address (the peer, or `X-Forwarded-For` from a trusted
    /// proxy), when it was resolved.
    pub(crate) client: Option<IpAddr>,
    /// The app or operator the token named, when it was known.
    pub(crate) app: Option<String>,
    /// The IP of the path, when it parsed.
    pub(crate) ip: Option<IpAddr>,
    /// The reason, as counted in `envid_registration_refusals_total`.
    pub(crate) reason: &'static str,
    /// The answer's message.
    pub(crate) message: String,
}

/// The outcome of one registry file reload.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Reload {
    /// When, in ms since the Unix epoch.
    pub(crate) at_unix_ms: u64,
    /// `applied`, `unchanged` (no served record differed), `refused` (a
    /// mass deletion) or `failed` (the file did not read or parse, or the
    /// store did not take it).
    pub(crate) result: &'static str,
    /// Why, or what it did.
    pub(crate) message: String,
    /// The version it made, when it made one.
    pub(crate) version: Option<u64>,
}

impl Refusal {
    /// A refusal now (what `Attempt::refuse` knows of the request).
    pub(crate) fn new(
        op: &'static str,
        peer: SocketAddr,
        client: Option<IpAddr>,
        app: Option<&str>,
        ip: Option<IpAddr>,
        reason: &'static str,
        message: &str,
    ) -> Refusal {
        Refusal {
            at_unix_ms: now_unix_ms(),
            op,
            peer,
            client,
            app: app.map(str::to_string),
            ip,
            reason,
            message: message.to_string(),
        }
    }
}

/// Recent refusals and the last reload (see the module docs).
#[derive(Debug)]
pub(crate) struct Recent {
    /// When the service started, in ms since the Unix epoch.
    pub(crate) started_unix_ms: u64,
    refusals: Mutex<Refusals>,
    last_reload: Mutex<Option<Reload>>,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            started_unix_ms: now_unix_ms(),
            refusals: Mutex::default(),
            last_reload: Mutex::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Refusals {
    ring: VecDeque<Refusal>,
    counts: BTreeMap<&'static str, u64>,
    total: u64,
}

/// The refusals as the console and `GET /v1/refusals` show them.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RefusalView {
    /// Refusals since start, by reason.
    pub(crate) counts: BTreeMap<&'static str, u64>,
    /// Refusals since start.
    pub(crate) total: u64,
    /// The most recent, newest first.
    pub(crate) refusals: Vec<Refusal>,
}

impl Recent {
    /// Keeps a refusal (the oldest kept one goes past [`REFUSALS_KEPT`]).
    pub(crate) fn refused(&self, mut refusal: Refusal) {
        if refusal.at_unix_ms == 0 {
            refusal.at_unix_ms = now_unix_ms();
        }
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *r.counts.entry(refusal.reason).or_default() += 1;
        r.total += 1;
        if r.ring.len() == REFUSALS_KEPT {
            r.ring.pop_front();
        }
        r.ring.push_back(refusal);
    }

    /// The counts and the last `limit` refusals, newest first.
    pub(crate) fn refusals(&self, limit: usize) -> RefusalView {
        let r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        RefusalView {
            counts: r.counts.clone(),
            total: r.total,
            refusals: r.ring.iter().rev().take(limit).cloned().collect(),
        }
    }

    /// Says how the last reload went.
    pub(crate) fn reloaded(&self, result: &'static str, message: String, version: Option<u64>) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reload {
            at_unix_ms: now_unix_ms(),
            result,
            message,
            version,
        });
    }

    /// The last reload, if there was one since start.
    pub(crate) fn last_reload(&self) -> Option<Reload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(reason: &'static str) -> Refusal {
        Refusal {
            at_unix_ms: 0,
            op: "register",
            peer: "127.0.0.1:4000".parse().unwrap(),
            client: None,
            app: None,
            ip: None,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_counts_all() {
        let recent = Recent::default();
        for _ in 0..REFUSALS_KEPT {
            recent.refused(refusal("bad_token"));
        }
        recent.refused(refusal("not_own_ip"));
        let v = recent.refusals(3);
        assert_eq!(v.total, REFUSALS_KEPT as u64 + 1);
        assert_eq!(v.counts["bad_token"], REFUSALS_KEPT as u64);
        assert_eq!(v.counts["not_own_ip"], 1);
        assert_eq!(v.refusals.len(), 3);
        assert_eq!(v.refusals[0].reason, "not_own_ip");
        assert!(v.refusals[0].at_unix_ms > 0);
        assert_eq!(recent.refusals(usize::MAX).refusals.len(), REFUSALS_KEPT);
    }
}
