use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

use super::claims::Claims;
use super::error::{shown, IdentityError};
use super::keys::KeySet;
use super::{identity_from_headers, unix_now};
use crate::client::{Conditional, HttpTransport, ServiceConfig, Transport};
use crate::protocol::KEYS_PATH;

/// Tokens longer than this are refused before any decoding.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The least time between two refreshes asked for by unknown key ids, so a
/// flood of forged `kid`s cannot turn into a flood of requests.
const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);

/// Verifies identities locally against the service's key set; see the
/// [module documentation](super). Cheap to share (`Arc`); `Send + Sync`.
/// Dropping it stops the refresh thread.
pub struct Verifier {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.shared.keys.load();
        f.debug_struct("Verifier")
            .field("kids", &ring.keys.keys().collect::<Vec<_>>())
            .field("fetched_at", &ring.fetched_at)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Policy {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

/// One key set as the verifier uses it.
struct KeyRing {
    /// Grows with every new key set; cached verdicts of an older one are
    /// not trusted (its keys may have been removed).
    generation: u64,
    etag: Option<String>,
    set: KeySet,
    keys: HashMap<String, ring::signature::UnparsedPublicKey<[u8; 32]>>,
    fetched_at: u64,
}

impl KeyRing {
    fn new(
        generation: u64,
        set: KeySet,
        etag: Option<String>,
        fetched_at: u64,
    ) -> Result<KeyRing, IdentityError> {
        let keys = set
            .decode()?
            .into_iter()
            .map(|(kid, x)| {
                (
                    kid,
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x),
                )
            })
            .collect();
        Ok(KeyRing {
            generation,
            etag,
            set,
            keys,
            fetched_at,
        })
    }
}

#[derive(Clone)]
struct Entry {
    claims: Arc<Claims>,
    exp: u64,
    generation: u64,
}

/// The cache file: the key set with when it was fetched and its `ETag`.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    fetched_at: u64,
    #[serde(default)]
    etag: Option<String>,
    keys: KeySet,
}

struct Fetcher {
    transport: Arc<dyn Transport>,
    endpoints: Vec<String>,
    cache_file: Option<PathBuf>,
    interval: Duration,
    backoff: Duration,
    max_backoff: Duration,
    /// The endpoint that answered last; tried first next time.
    preferred: AtomicUsize,
}

#[derive(Default)]
struct Control {
    stop: bool,
    refresh: bool,
    last_forced: Option<Instant>,
}

struct Shared {
    keys: ArcSwap<KeyRing>,
    /// Keyed by the whole token: a fast hash, then an exact comparison.
    cache: Cache<Box<str>, Entry>,
    policy: Policy,
    fetcher: Option<Fetcher>,
    next_generation: AtomicU64,
    control: Mutex<Control>,
    wake: Condvar,
}

/// Builds a [`Verifier`]: [`Verifier::builder`] (keys from the service) or
/// [`Verifier::with_keys`] (a fixed key set).
#[must_use]
pub struct VerifierBuilder {
    config: Option<ServiceConfig>,
    keys: Option<KeySet>,
    transport: Option<Arc<dyn Transport>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    cache_file: Option<PathBuf>,
    refresh_interval: Duration,
    max_cache_age: Duration,
    backoff: Duration,
    max_backoff: Duration,
    cache_capacity: usize,
    insecure_http: bool,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("config", &self.config)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("cache_file", &self.cache_file)
            .field("refresh_interval", &self.refresh_interval)
            .field("max_cache_age", &self.max_cache_age)
            .field("insecure_http", &self.insecure_http)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    fn new(config: Option<ServiceConfig>, keys: Option<KeySet>) -> VerifierBuilder {
        VerifierBuilder {
            config,
            keys,
            transport: None,
            issuer: None,
            audience: Some("envid".into()),
            leeway: Duration::from_secs(60),
            cache_file: None,
            refresh_interval: Duration::from_secs(300),
            max_cache_age: Duration::from_secs(7 * 24 * 3600),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            cache_capacity: 10_000,
            insecure_http: false,
        }
    }

    /// Fetch the key set over plain `http://` from a host other than
    /// loopback (default: refused). Whoever is on the path could then
    /// serve keys of their own and have any identity they sign accepted;
    /// use `https://` (with the service's CA in the config) instead.
    pub fn insecure_http(mut self, allow: bool) -> Self {
        self.insecure_http = allow;
        self
    }

    /// Require this `iss` (default: any issuer; the key set already says
    /// which service signed).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Require this audience in `aud` (default `envid`, the service's
    /// default).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Accept any `aud`.
    pub fn any_audience(mut self) -> Self {
        self.audience = None;
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Keep the key set in this file (written atomically after each change)
    /// and start from it: without a request when it is younger than the
    /// refresh interval, and when the service cannot be reached while it is
    /// younger than [`max_cache_age`](Self::max_cache_age).
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// How often the key set is revalidated (default 5 min; a conditional
    /// request, answered `304` while the keys have not changed).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The oldest cache file used when the service is down (default 7 days:
    /// keys change rarely, and a stale set only misses keys added since).
    pub fn max_cache_age(mut self, age: Duration) -> Self {
        self.max_cache_age = age;
        self
    }

    /// First pause after a failed refresh, doubled on each further failure,
    /// jittered ×0.5–1.5 (default 1 s).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff.max(Duration::from_millis(1));
        self
    }

    /// The longest pause between failed refreshes (default 60 s, and never
    /// more than the refresh interval).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Most verified tokens remembered (default 10,000).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity.max(1);
        self
    }

    /// Reach the service through this transport instead of an
    /// [`HttpTransport`] built from the config.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Gets the key set (from the service, the cache file or the fixed set)
    /// and starts the refresh thread. `NoKeys` when no key set could be had.
    pub fn build(self) -> Result<Verifier, IdentityError> {
        let policy = Policy {
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway.as_secs(),
        };
        let cache = Cache::new(self.cache_capacity);
        let Some(config) = self.config else {
            let set = self.keys.unwrap_or_default();
            let ring = KeyRing::new(1, set, None, unix_now())?;
            let shared = Shared {
                keys: ArcSwap::from_pointee(ring),
                cache,
                policy,
                fetcher: None,
                next_generation: AtomicU64::new(2),
                control: Mutex::default(),
                wake: Condvar::new(),
            };
            return Ok(Verifier {
                shared: Arc::new(shared),
                worker: None,
            });
        };
        if !self.insecure_http {
            if let Some(plain) = config
                .endpoints()
                .iter()
                .find(|e| crate::client::is_plain_http_off_loopback(e))
            {
                return Err(IdentityError::NoKeys {
                    reason: format!(
                        "refusing to fetch the identity keys over plain HTTP from {plain}: \
                         anyone on the path could serve keys of their own; use an https:// \
                         endpoint, or allow it explicitly (VerifierBuilder::insecure_http, \
                         `envid verify --insecure-http`)"
                    ),
                });
            }
        }
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::new(HttpTransport::new(&config)));
        let fetcher = Fetcher {
            transport,
            endpoints: config.endpoints().to_vec(),
            cache_file: self.cache_file,
            interval: self.refresh_interval,
            backoff: self.backoff,
            max_backoff: self.max_backoff.min(self.refresh_interval),
            preferred: AtomicUsize::new(0),
        };
        let now = unix_now();
        let cached = fetcher.cache_file.as_deref().and_then(read_cache_file);
        let cached_age = cached.as_ref().map(|c| now.saturating_sub(c.fetched_at));
        let empty = KeyRing::new(0, KeySet::default(), None, 0)?;
        let shared = Arc::new(Shared {
            keys: ArcSwap::from_pointee(empty),
            cache,
            policy,
            fetcher: Some(fetcher),
            next_generation: AtomicU64::new(1),
            control: Mutex::default(),
            wake: Condvar::new(),
        });
        let install_cached = |c: CacheFile| -> Result<(), IdentityError> {
            let ring = KeyRing::new(shared.generation(), c.keys, c.etag, c.fetched_at)?;
            shared.keys.store(Arc::new(ring));
            Ok(())
        };
        match (cached, cached_age) {
            (Some(c), Some(age)) if age < self.refresh_interval.as_secs() => install_cached(c)?,
            (cached, age) => {
                if let Some(c) = cached {
                    // Its ETag makes the first request a conditional one.
                    install_cached(c)?;
                }
                if let Err(e) = shared.refresh() {
                    let usable = age.is_some_and(|a| a <= self.max_cache_age.as_secs());
                    if !usable {
                        let cache_state = match (&shared.fetcher().cache_file, age) {
                            (None, _) => String::new(),
                            (Some(p), None) => format!("; no usable cache file at {}", p.display()),
                            (Some(p), Some(a)) => {
                                format!("; the cache file {} is {a} s old, too old", p.display())
                            }
                        };
                        let reason = match e {
                            IdentityError::NoKeys { reason } => reason,
                            other => other.to_string(),
                        };
                        return Err(IdentityError::NoKeys {
                            reason: format!("{reason}{cache_state}"),
                        });
                    }
                }
            }
        }
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("envid-identity-keys".into())
                .spawn(move || shared.run())
                .map_err(|e| IdentityError::NoKeys {
                    reason: format!("cannot start the refresh thread: {e}"),
                })?
        };
        Ok(Verifier {
            shared,
            worker: Some(worker),
        })
    }
}

fn read_cache_file(path: &std::path::Path) -> Option<CacheFile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Shared {
    fn fetcher(&self) -> &Fetcher {
        self.fetcher
            .as_ref()
            .expect("only a fetching verifier refreshes")
    }

    fn generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    /// One refresh: each endpoint in turn from the last good one, a
    /// conditional request each. The error is the last endpoint's.
    fn refresh(&self) -> Result<(), IdentityError> {
        let f = self.fetcher();
        let n = f.endpoints.len();
        if n == 0 {
            return Err(IdentityError::NoKeys {
                reason: "no endpoint configured".into(),
            });
        }
        let start = f.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &f.endpoints[idx];
            let current = self.keys.load_full();
            let etag = (current.generation > 0)
                .then_some(current.etag.as_deref())
                .flatten();
            let outcome = match f.transport.get_conditional(endpoint, KEYS_PATH, etag) {
                Ok(Conditional::NotModified) => {
                    let ring = KeyRing {
                        generation: current.generation,
                        etag: current.etag.clone(),
                        set: current.set.clone(),
                        keys: current.keys.clone(),
                        fetched_at: unix_now(),
                    };
                    self.install(ring);
                    Ok(())
                }
                Ok(Conditional::Modified { body, etag }) => KeySet::from_json(&body)
                    .and_then(|set| KeyRing::new(self.generation(), set, etag, unix_now()))
                    .map(|ring| self.install(ring)),
                Ok(Conditional::NotFound) => Err(IdentityError::NoKeys {
                    reason: format!("{endpoint} serves no keys ({KEYS_PATH} is 404)"),
                }),
                Err(e) => Err(IdentityError::NoKeys {
                    reason: e.to_string(),
                }),
            };
            match outcome {
                Ok(()) => {
                    f.preferred.store(idx, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one endpoint was tried"))
    }

    fn install(&self, ring: KeyRing) {
        if let Some(path) = &self.fetcher().cache_file {
            let file = CacheFile {
                fetched_at: ring.fetched_at,
                etag: ring.etag.clone(),
                keys: ring.set.clone(),
            };
            // A cache file that cannot be written only costs a start without
            // the service; verification goes on.
            let _ = crate::atomic_file::write(path, |w| {
                serde_json::to_writer(&mut *w, &file).map_err(std::io::Error::other)
            });
        }
        self.keys.store(Arc::new(ring));
    }

    /// The refresh thread: a refresh per interval, a backoff after a
    /// failure, early when a refresh is asked for; ends on stop.
    fn run(&self) {
        let f = self.fetcher();
        let mut backoff = f.backoff;
        let mut pause = f.interval;
        loop {
            {
                let deadline = Instant::now() + pause;
                let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
                while !c.stop && !c.refresh {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    c = self
                        .wake
                        .wait_timeout(c, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if c.stop {
                    return;
                }
                c.refresh = false;
            }
            match self.refresh() {
                Ok(()) => {
                    backoff = f.backoff;
                    pause = f.interval;
                }
                Err(_) => {
                    pause = backoff.mul_f64(0.5 + fastrand::f64()).min(f.max_backoff);
                    backoff = (backoff * 2).min(f.max_backoff);
                }
            }
        }
    }

    /// Wakes the refresh thread for an early refresh, at most once per
    /// [`MIN_FORCED_REFRESH`].
    fn ask_refresh(&self) {
        if self.fetcher.is_none() {
            return;
        }
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        if c.last_forced
            .is_some_and(|t| t.elapsed() < MIN_FORCED_REFRESH)
        {
            return;
        }
        c.last_forced = Some(Instant::now());
        c.refresh = true;
        self.wake.notify_all();
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            {
                let mut c = self
                    .shared
                    .control
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                c.stop = true;
            }
            self.shared.wake.notify_all();
            let _ = worker.join();
        }
    }
}

impl Verifier {
    /// A verifier that gets the key set from the service of `config`
    /// (`GET /v1/keys`) and keeps it fresh.
    pub fn builder(config: ServiceConfig) -> VerifierBuilder {
        VerifierBuilder::new(Some(config), None)
    }

    /// A verifier with a fixed key set and no network (tests, a key set
    /// distributed by other means).
    pub fn with_keys(keys: KeySet) -> VerifierBuilder {
        VerifierBuilder::new(None, Some(keys))
    }

    /// Verifies `token` (a compact JWS) and returns its claims: signature by
    /// a known key, `alg: EdDSA`, `exp` and `nbf` (with the leeway), `iss`
    /// and `aud` as configured. A token verified before is answered from the
    /// cache until it expires or the key set changes.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, IdentityError> {
        self.verify_at(token, unix_now())
    }

    /// [`verify`](Self::verify) with the clock at `now` (unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Arc<Claims>, IdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let keys = self.shared.keys.load();
        let leeway = self.shared.policy.leeway;
        if let Some(e) = self.shared.cache.get(token) {
            if e.generation == keys.generation && now < e.exp.saturating_add(leeway) {
                return Ok(e.claims);
            }
        }
        let claims = match check(token, &keys, &self.shared.policy, now) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                if matches!(e, IdentityError::UnknownKey { .. }) {
                    self.shared.ask_refresh();
                }
                return Err(e);
            }
        };
        self.shared.cache.insert(
            Box::from(token),
            Entry {
                exp: claims.exp,
                claims: claims.clone(),
                generation: keys.generation,
            },
        );
        Ok(claims)
    }

    /// Reads the `Envid-Identity` header (exactly one) and verifies it.
    pub fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Arc<Claims>, IdentityError> {
        self.verify(identity_from_headers(headers)?)
    }

    /// Fetches the key set now, not waiting for the next interval. `NoKeys`
    /// when no endpoint answered (the keys held are kept). A verifier built
    /// [`with_keys`](Self::with_keys) has nothing to fetch: `Ok`.
    pub fn refresh(&self) -> Result<(), IdentityError> {
        match self.shared.fetcher {
            Some(_) => self.shared.refresh(),
            None => Ok(()),
        }
    }

    /// The key set in use.
    pub fn key_set(&self) -> KeySet {
        self.shared.keys.load().set.clone()
    }

    /// When the key set in use was fetched or last confirmed (unix seconds).
    pub fn keys_fetched_at(&self) -> u64 {
        self.shared.keys.load().fetched_at
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdentityError::malformed(format!("the {what} is not base64url")))
}

/// The whole check of a token against a key ring; the signature before any
/// claim is looked at.
fn check(token: &str, ring: &KeyRing, policy: &Policy, now: u64) -> Result<Claims, IdentityError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(IdentityError::Missing);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::malformed("not three dot-separated parts"));
    };
    let header_bytes = b64(h, "header")?;
    let header: Header<'_> = serde_json::from_slice(&header_bytes)
        .map_err(|_| IdentityError::malformed("the header is not a JWS header"))?;
    if header.alg != "EdDSA" {
        return Err(IdentityError::malformed(format!(
            "algorithm {:?}, not EdDSA",
            shown(&header.alg)
        )));
    }
    if header.crit.is_some() {
        return Err(IdentityError::malformed(
            "critical header extensions are not supported",
        ));
    }
    let kid = header
        .kid
        .ok_or_else(|| IdentityError::malformed("the header has no kid"))?;
    let key = ring
        .keys
        .get(kid.as_ref())
        .ok_or_else(|| IdentityError::UnknownKey { kid: shown(&kid) })?;
    let signature = b64(s, "signature")?;
    key.verify(&token.as_bytes()[..h.len() + 1 + p.len()], &signature)
        .map_err(|_| IdentityError::BadSignature)?;
    // serde_json's messages may quote values: keep only what kind of fault.
    let claims: Claims = serde_json::from_slice(&b64(p, "claims")?).map_err(|e| {
        IdentityError::malformed(if e.is_data() {
            "a claim is missing or of the wrong type"
        } else {
            "the claims are not a JSON object"
        })
    })?;
    if now.saturating_add(policy.leeway) < claims.nbf {
        return Err(IdentityError::NotYetValid {
            nbf: claims.nbf,
            now,
        });
    }
    if now >= claims.exp.saturating_add(policy.leeway) {
        return Err(IdentityError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if let Some(expected) = &policy.issuer {
        if &claims.iss != expected {
            return Err(IdentityError::WrongIssuer {
                expected: expected.clone(),
                found: shown(&claims.iss),
            });
        }
    }
    if let Some(expected) = &policy.audience {
        if !claims.aud.contains(expected) {
            return Err(IdentityError::WrongAudience {
                expected: expected.clone(),
                found: shown(&claims.aud.to_string()),
            });
        }
    }
    Ok(claims)
}
