//! The IP-to-environment lookup client (see ARCHITECTURE.md, "Where is that IP").
//!
//! Servers see a client IP and ask the environment service what it is.
//! Container IPs churn and deploys come in bursts, so the client is built so
//! that bursts, retries and outages never multiply the load on the service
//! and never break the caller:
//!
//! * **Cache**: answers are kept for `ttl` (default 5 min); "unknown IP"
//!   answers for the shorter `negative_ttl` (default 30 s), so an IP that
//!   appears a moment later is learned soon. The cache is bounded
//!   (`capacity`, default 100,000 IPs) with quick_cache's eviction.
//! * **Coalescing**: concurrent lookups of one uncached IP, from any number
//!   of threads, share one request (quick_cache's per-key placeholder guard);
//!   a batch claims its IPs the same way, so single and batch lookups of one
//!   IP never both reach the service.
//! * **Serve stale**: when the service fails, the last known answer for an
//!   IP is returned while it is at most `max_stale` old (default 1 h), and
//!   counted as a stale serve. A failure is itself remembered for
//!   `error_ttl` (default 1 s), so threads queued behind a failed request do
//!   not each try again.
//! * **Retry budget**: at most `max_retries` retries (default 1) per lookup,
//!   with jittered backoff (`backoff` × 0.5–1.5, default 100 ms), and only
//!   for retryable failures (connect, timeout, broken connection, 5xx, 429).
//! * **Circuit breaker** per endpoint: `breaker_threshold` consecutive
//!   failures (default 5) open it; no request goes there for `breaker_cool_down`
//!   (default 5 s) or a longer `Retry-After`; then one probe decides.
//! * **Timeouts**: those of the [`ServiceConfig`], named by phase:
//!   `connect` [500 ms]; `per_phase` [2 s] bounds each phase of a request
//!   (send, response head, body), so a request ends within
//!   `connect + 3 × per_phase`; `total` adds a strict whole-request deadline
//!   when asked for (it costs about 50 µs a request here: the socket timeout
//!   is re-armed on every read and write).
//! * **Failover**: endpoints (one per data center) are tried in order,
//!   skipping those whose breaker is open; with every breaker open a lookup
//!   fails at once with [`ClientError::CircuitOpen`] (or serves stale).
//! * **Batches**: [`LookupClient::lookup_many`] answers cached IPs locally and
//!   asks for the rest in requests of at most 1,000 IPs.
//!
//! For servers that look up many IPs, [`Replica`](crate::replica::Replica)
//! holds the whole registry in memory instead, synced in the background by
//! snapshot plus long-polled deltas, and answers with a lock-free local
//! longest-prefix match (see [`crate::replica`]). [`Registrar`](crate::registrar::Registrar) registers, renews
//! and removes this instance at the service. All three take one
//! [`ServiceConfig`] (endpoints, token, proxy, TLS roots, timeouts) and fail
//! with one [`ClientError`] (see [`crate::client`]).
//!
//! Everything is blocking: no async runtime runs inside the client (it is
//! loaded into JVMs). The cache and retry logic talk to the service only
//! through the [`Transport`] trait;
//! [`HttpTransport`](client::HttpTransport) is the ureq implementation.
//!
//! ```no_run
//! use envid::client::{ClientError, ServiceConfig};
//! use envid::lookup::LookupClient;
//! let config = ServiceConfig::builder()
//!     .endpoint("http://envsvc.cn0.example:7070")
//!     .endpoint("http://envsvc.cn5.example:7070")
//!     .build()?;
//! let client = LookupClient::builder(config).build()?;
//! if let Some(rec) = client.lookup("10.1.2.3".parse().unwrap())? {
//!     println!("{} {} {}", rec.app.as_deref().unwrap_or("?"), rec.env, rec.idc);
//! }
//! # Ok::<(), ClientError>(())
//! ```

mod builder;
mod moved;
mod requests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, DefaultLifecycle, GuardResult, PlaceholderGuard};
use quick_cache::{DefaultHashBuilder, UnitWeighter};

use crate::client::breaker::{Admit, Breaker};
use crate::client::{self, ClientError, ServiceConfig};
use crate::protocol::{canonical_ip, HostRecord};

pub use builder::LookupClientBuilder;
use builder::Settings;
#[allow(deprecated)]
pub use moved::*;

/// The answer for one IP: the record, or `None` when the service does not know it.
pub type LookupResult = Result<Option<Arc<HostRecord>>, ClientError>;

/// Most IPs in one batch request (the protocol's limit).
pub const MAX_BATCH: usize = 1000;

/// Counters of a client, read with [`LookupClient::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Lookups answered from a fresh cache entry.
    pub hits: u64,
    /// Lookups that needed the service (or a wait on another thread's request).
    pub misses: u64,
    /// Lookups answered with a stale value because the service failed.
    pub stale: u64,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Failed requests, and lookups refused by open breakers.
    pub errors: u64,
}

#[derive(Default, Debug)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// The right to fetch one IP: lookups of it elsewhere wait until it is
/// filled (or dropped).
type Placeholder<'a> = PlaceholderGuard<
    'a,
    IpAddr,
    Entry,
    UnitWeighter,
    DefaultHashBuilder,
    DefaultLifecycle<IpAddr, Entry>,
>;

/// What [`LookupClient::claim`] found for an IP.
enum Claim<'a> {
    /// Answered from the cache (a fresh answer, or a remembered failure).
    Answer(LookupResult),
    /// Not cached: this caller fetches it.
    Fetch(Placeholder<'a>),
    /// Another thread is fetching it and did not finish within the wait.
    Elsewhere,
}

/// A cache entry: a fresh answer, or a recent failure.
#[derive(Clone, Debug)]
struct Entry {
    /// `Ok(answer)` or the error of the last attempt.
    outcome: Result<Option<Arc<HostRecord>>, ClientError>,
    expires: Instant,
}

/// The last known answer of an IP, for serve-stale.
#[derive(Clone, Debug)]
struct Known {
    answer: Option<Arc<HostRecord>>,
    at: Instant,
}

#[derive(Debug)]
struct EndpointState {
    url: String,
    breaker: Breaker,
}

/// A blocking, thread-safe IP-to-environment lookup client. Share one per
/// process (it holds the cache and the keep-alive connections).
pub struct LookupClient {
    fresh: Cache<IpAddr, Entry>,
    known: Cache<IpAddr, Known>,
    endpoints: Vec<EndpointState>,
    transport: Arc<dyn client::Transport>,
    counters: Counters,
    settings: Settings,
}

impl std::fmt::Debug for LookupClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupClient")
            .field("endpoints", &self.endpoints)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LookupClient {
    /// A builder over `config`, with the defaults of the module documentation.
    pub fn builder(config: ServiceConfig) -> LookupClientBuilder {
        LookupClientBuilder::new(config)
    }

    /// The counters so far.
    pub fn stats(&self) -> LookupStats {
        let c = &self.counters;
        LookupStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The configured endpoints, in failover order.
    pub fn endpoints(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.url.as_str()).collect()
    }

    /// The environment of `ip`: `Ok(None)` when the service does not know it.
    pub fn lookup(&self, ip: IpAddr) -> LookupResult {
        let ip = canonical_ip(ip);
        match self.claim(ip, None) {
            Claim::Answer(answer) => answer,
            Claim::Fetch(guard) => {
                let outcome =
                    self.fetch(|endpoint| requests::get_host(&*self.transport, endpoint, ip));
                self.settle(ip, guard, outcome, Instant::now())
            }
            Claim::Elsewhere => unreachable!("no timeout was given"),
        }
    }

    /// A cached answer for `ip`, or the right to fetch it (the cache's
    /// placeholder: other lookups of `ip` wait for it), or, when another
    /// thread holds that right past `wait`, `Elsewhere`.
    // Inlined into `lookup`: on its cache-hit path a call costs ~10 ns of 65
    // (benches/lookup.rs, `hit`).
    #[inline(always)]
    fn claim(&self, ip: IpAddr, wait: Option<Duration>) -> Claim<'_> {
        loop {
            match self.fresh.get_value_or_guard(&ip, wait) {
                GuardResult::Value(entry) => {
                    if Instant::now() < entry.expires {
                        return Claim::Answer(match entry.outcome {
                            Ok(answer) => {
                                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                                Ok(answer)
                            }
                            // A remembered failure: stale if possible, else the error.
                            Err(e) => self.stale_or(ip, e),
                        });
                    }
                    // Expired: drop exactly this entry, then race for the guard.
                    self.fresh.remove_if(&ip, |v| v.expires == entry.expires);
                }
                GuardResult::Guard(guard) => {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    return Claim::Fetch(guard);
                }
                GuardResult::Timeout => return Claim::Elsewhere,
            }
        }
    }

    /// Caches what a fetch of `ip` gave (a failure for `error_ttl`) and
    /// returns the answer: on failure, the stale one if any.
    // The miss path: kept out of line so `lookup` stays small.
    #[inline(never)]
    fn settle(
        &self,
        ip: IpAddr,
        guard: Placeholder<'_>,
        outcome: LookupResult,
        now: Instant,
    ) -> LookupResult {
        match outcome {
            Ok(answer) => {
                self.remember(ip, &answer, now);
                let _ = guard.insert(Entry {
                    outcome: Ok(answer.clone()),
                    expires: now + self.ttl_of(&answer),
                });
                Ok(answer)
            }
            Err(e) => {
                let _ = guard.insert(Entry {
                    outcome: Err(e.clone()),
                    expires: now + self.settings.error_ttl,
                });
                self.stale_or(ip, e)
            }
        }
    }

    /// Looks up many IPs: cached ones locally, the rest in batch requests of
    /// at most [`MAX_BATCH`]. Answers are in the order of `ips`.
    ///
    /// Coalesced with concurrent lookups both ways: the IPs this call fetches
    /// are claimed in the cache first, so a `lookup` of one of them on
    /// another thread waits for this batch instead of sending its own
    /// request, and an IP another thread is already fetching is not put in
    /// the batch but waited for once the batch is done (never while holding
    /// claims, so two batches cannot wait on each other).
    pub fn lookup_many(&self, ips: &[IpAddr]) -> Vec<LookupResult> {
        let mut answers: HashMap<IpAddr, LookupResult> = HashMap::with_capacity(ips.len());
        let mut claimed = Vec::new();
        let mut elsewhere: Vec<IpAddr> = Vec::new();
        let mut seen: HashSet<IpAddr> = HashSet::with_capacity(ips.len());
        for &raw in ips {
            let ip = canonical_ip(raw);
            if !seen.insert(ip) {
                continue;
            }
            match self.claim(ip, Some(Duration::ZERO)) {
                Claim::Answer(answer) => {
                    answers.insert(ip, answer);
                }
                Claim::Fetch(guard) => claimed.push((ip, guard)),
                Claim::Elsewhere => elsewhere.push(ip),
            }
        }
        let mut claimed = claimed.into_iter();
        loop {
            let chunk: Vec<_> = claimed.by_ref().take(MAX_BATCH).collect();
            if chunk.is_empty() {
                break;
            }
            let batch_ips: Vec<IpAddr> = chunk.iter().map(|(ip, _)| *ip).collect();
            let outcome = self
                .fetch(|endpoint| requests::lookup_batch(&*self.transport, endpoint, &batch_ips));
            let now = Instant::now();
            for (ip, guard) in chunk {
                let one = match &outcome {
                    Ok(batch) => Ok(batch.get(&ip).cloned().flatten()),
                    Err(e) => Err(e.clone()),
                };
                answers.insert(ip, self.settle(ip, guard, one, now));
            }
        }
        for ip in elsewhere {
            answers.insert(ip, self.lookup(ip));
        }
        ips.iter()
            .map(|ip| {
                answers
                    .get(&canonical_ip(*ip))
                    .cloned()
                    .expect("every IP was answered")
            })
            .collect()
    }

    /// Forgets every cached answer (the last known values for serve-stale stay).
    pub fn clear_cache(&self) {
        self.fresh.clear();
    }

    fn ttl_of(&self, answer: &Option<Arc<HostRecord>>) -> Duration {
        if answer.is_some() {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        }
    }

    fn remember(&self, ip: IpAddr, answer: &Option<Arc<HostRecord>>, at: Instant) {
        self.known.insert(
            ip,
            Known {
                answer: answer.clone(),
                at,
            },
        );
    }

    /// The last known answer if young enough, else the error.
    fn stale_or(&self, ip: IpAddr, e: ClientError) -> LookupResult {
        match self.known.get(&ip) {
            Some(k) if k.at.elapsed() <= self.settings.max_stale => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                Ok(k.answer)
            }
            _ => Err(e),
        }
    }

    /// One logical request: endpoints in failover order, breakers, at most
    /// `max_retries` retries with jittered backoff.
    fn fetch<T>(&self, send: impl Fn(&str) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let attempts = 1 + self.settings.max_retries as usize;
        let mut last: Option<ClientError> = None;
        let mut sent = 0usize;
        let mut start_at = 0usize;
        while sent < attempts {
            let now = Instant::now();
            // The first endpoint, from `start_at` on, whose breaker admits us.
            let mut chosen = None;
            let mut soonest = Duration::MAX;
            for i in 0..self.endpoints.len() {
                let idx = (start_at + i) % self.endpoints.len();
                match self.endpoints[idx].breaker.admit(now) {
                    Admit::Yes => {
                        chosen = Some(idx);
                        break;
                    }
                    Admit::No(d) => soonest = soonest.min(d),
                }
            }
            let Some(idx) = chosen else {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                // Everything is open: report the real last error if there was one.
                return Err(last.unwrap_or(ClientError::CircuitOpen { retry_in: soonest }));
            };
            if sent > 0 {
                std::thread::sleep(self.jittered_backoff());
            }
            let ep = &self.endpoints[idx];
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            match send(&ep.url) {
                Ok(v) => {
                    ep.breaker.success();
                    return Ok(v);
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if e.counts_as_failure() {
                        let hold = match &e {
                            ClientError::RateLimited { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        ep.breaker.failure(Instant::now(), hold);
                    } else {
                        // The endpoint answered; the request itself was refused.
                        ep.breaker.success();
                    }
                    let retry = e.is_retryable();
                    last = Some(e);
                    if !retry {
                        break;
                    }
                    // Fail over: the next attempt starts at the next endpoint.
                    start_at = idx + 1;
                }
            }
        }
        Err(last.expect("at least one attempt was made"))
    }

    fn jittered_backoff(&self) -> Duration {
        self.settings.backoff.mul_f64(0.5 + fastrand::f64())
    }
}
