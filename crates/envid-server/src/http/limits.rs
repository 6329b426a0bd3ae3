//! The service's own limits on its callers: load shedding (requests in
//! flight, waiting long polls, in all and per client address), the
//! registration rate limit per (caller, IP), and the failed
//! authentications per address (see `auth.rs`).
//!
//! Two reserves keep a flood from one kind of request away from the
//! others: long polls never hold more than seven eighths of the
//! connections (the rest stay for `/healthz`, lookups and registrations,
//! see `conn.rs`), and requests with a body to wait for never hold the last
//! eighth of the in-flight slots (lookups by path always find one).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth;
use crate::config::Config;
use crate::conn::AddressCounts;

/// Load shedding and the registration rate limit.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) registration: RegistrationLimit,
    /// Failed authentications per client address.
    pub(crate) auth_failures: auth::FailureLimit,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: usize,
    /// `max_in_flight` less the reserve kept for requests without a body.
    pub(super) max_in_flight_with_body: usize,
    pub(super) in_flight_per_client: PerClient,
    pub(super) long_polls: AtomicUsize,
    /// `max_long_polls`, within seven eighths of `max_connections`.
    pub(super) max_long_polls: usize,
    pub(super) long_polls_per_client: PerClient,
    pub(super) max_wait: Duration,
    pub(super) poll_coalesce: Duration,
    /// See [`Config::fanout_rate`].
    fanout_rate: usize,
    pub(super) request_timeout: Duration,
    pub(super) body_read_timeout: Duration,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Limits {
        Limits {
            registration: RegistrationLimit::new(config.register_limit, config.register_window),
            auth_failures: auth::FailureLimit::new(
                config.auth_failure_limit,
                config.auth_failure_window,
            ),
            in_flight: AtomicUsize::new(0),
            max_in_flight: config.max_in_flight.max(1),
            max_in_flight_with_body: reserve_an_eighth(config.max_in_flight.max(1)),
            in_flight_per_client: PerClient::new(config.max_in_flight_per_client),
            long_polls: AtomicUsize::new(0),
            max_long_polls: config
                .max_long_polls
                .min(reserve_an_eighth(config.max_connections.max(1))),
            long_polls_per_client: PerClient::new(config.max_long_polls_per_client),
            max_wait: config.max_wait,
            poll_coalesce: config.poll_coalesce,
            fanout_rate: config.fanout_rate,
            request_timeout: config.request_timeout,
            body_read_timeout: config.body_read_timeout,
        }
    }

    /// How long a long poll woken by a change gathers more before it is
    /// answered (see [`Config::fanout_rate`]).
    pub(super) fn coalesce_window(&self) -> Duration {
        coalesce_window(
            self.poll_coalesce,
            self.fanout_rate,
            self.long_polls.load(Ordering::Relaxed),
            self.max_wait,
        )
    }

    /// Are so many polls waiting that the window is longer than
    /// `poll_coalesce`? Then a poll with changes already there is paced
    /// too (see `replication.rs`).
    pub(super) fn pacing(&self) -> bool {
        self.coalesce_window() > self.poll_coalesce
    }

    /// Forgets idle registration windows and failure counts (at most once
    /// a second).
    pub(crate) fn prune(&self) {
        if self.registration.prune() {
            self.auth_failures.prune();
        }
    }
}

/// `base`, or the time `waiting` answers take at `rate` a second when that
/// is longer (never past `cap`). The window is what paces a wave once it
/// is longer than a replica's `min_poll_interval` (200 ms): each replica
/// then comes back as soon as it is answered and is answered once a
/// window, so more waiting means fewer answers each, not more CPU. At
/// 10,000 replicas a 250 ms window took the answers from 28,000 to 19,400
/// a second, and a 60 s wave that had taken 621 s on two cores took 60 s
/// (BENCHMARKS.md).
fn coalesce_window(base: Duration, rate: usize, waiting: usize, cap: Duration) -> Duration {
    if rate == 0 {
        return base;
    }
    let paced = Duration::from_secs_f64(waiting as f64 / rate as f64);
    base.max(paced.min(cap))
}

/// `n` less an eighth of it (at least 1 less, when `n` > 1): the share one
/// kind of request may hold, so the rest stays for the others.
fn reserve_an_eighth(n: usize) -> usize {
    if n <= 1 {
        return n;
    }
    n - (n / 8).max(1)
}

/// Counters per client address, each capped at the same `max`.
#[derive(Debug)]
pub(crate) struct PerClient {
    pub(super) max: usize,
    counts: Mutex<AddressCounts>,
}

impl PerClient {
    fn new(max: usize) -> PerClient {
        PerClient {
            max: max.max(1),
            counts: Mutex::default(),
        }
    }

    /// One slot of `client`'s, released on drop; `None` at its cap.
    pub(crate) fn take(&self, client: IpAddr) -> Option<ClientSlot<'_>> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.get(client) >= self.max {
            return None;
        }
        counts.add(client);
        Some(ClientSlot { of: self, client })
    }
}

/// See [`PerClient::take`].
pub(crate) struct ClientSlot<'a> {
    of: &'a PerClient,
    client: IpAddr,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut counts = self.of.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.remove(self.client);
    }
}

/// Takes one slot of a counter capped at `max`, released on drop (also when
/// the request is cancelled).
pub(crate) struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    pub(crate) fn take(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(counter);
        (before < max).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// (caller, IP): what the registration limit counts per. The caller is what
/// it cannot choose: the app or operator its token names (`app:payment`),
/// or its address when registration is open (`peer:10.0.0.5`).
type WindowKey = (String, IpAddr);

/// At most `limit` accepted registrations per (caller, IP) within a sliding
/// `window`.
#[derive(Debug)]
pub(crate) struct RegistrationLimit {
    pub(super) limit: usize,
    pub(super) window: Duration,
    /// Accepted registrations per (app, IP) within the window, oldest first.
    windows: Mutex<HashMap<WindowKey, VecDeque<Instant>>>,
    last_prune: Mutex<Instant>,
}

impl RegistrationLimit {
    pub(crate) fn new(limit: usize, window: Duration) -> RegistrationLimit {
        RegistrationLimit {
            limit,
            window,
            windows: Mutex::default(),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Records a registration of (app, ip), or says how long until the
    /// window has room (and records nothing). A limit of 0 means no limit.
    pub(super) fn admit(&self, caller: &str, ip: IpAddr) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let q = windows.entry((caller.to_owned(), ip)).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.limit {
            let oldest = q[q.len() - self.limit];
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }

    /// Forgets (caller, IP) pairs with no registration in the window (at
    /// most once a second); true when it ran.
    pub(crate) fn prune(&self) -> bool {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < Duration::from_secs(1) {
                return false;
            }
            *last = Instant::now();
        }
        let window = self.window;
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, q| q.back().is_some_and(|t| t.elapsed() < window));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::coalesce_window;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_window_grows_with_the_polls_waiting_past_the_rate() {
        let cap = Duration::from_secs(60);
        // Few waiting: the burst window.
        assert_eq!(coalesce_window(20 * MS, 20_000, 100, cap), 20 * MS);
        // 10,000 waiting at 40,000 a second: a quarter of a second.
        assert_eq!(coalesce_window(20 * MS, 40_000, 10_000, cap), 250 * MS);
        // Never past the cap, and no pacing at rate 0.
        assert_eq!(coalesce_window(20 * MS, 1, 10_000, 3000 * MS), 3000 * MS);
        assert_eq!(coalesce_window(20 * MS, 0, 10_000, cap), 20 * MS);
    }
}
