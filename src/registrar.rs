//! Registration of an instance at the environment service: `PUT /v1/hosts/{ip}` with the instance's record and a
//! lease, `POST /v1/hosts/{ip}/renew` to extend the lease, and
//! `DELETE /v1/hosts/{ip}` (idempotent) when the instance goes away.
//!
//! These are single blocking calls over the same [`ServiceConfig`] and
//! [`Transport`] as the lookup client (timeouts, explicit proxy, TLS roots,
//! size cap), to the config's **first** endpoint only: registration is one
//! write to one service, and the other endpoints are for the lookup
//! clients' failover. There is no retry: the caller
//! (`envid register --keep-alive`, a release system, the FFI) decides when
//! to retry, and must honour [`ClientError::RateLimited`]'s `retry_after`
//! (registrations are rate-limited per app and IP).
//! [`Registrar::renew_or_register`] is the one exception: it registers
//! again, after a jitter ([`reregister_jitter`]), when a renewal finds the
//! registration gone, so a service that lost its state is refilled.
//!
//! The registrar remembers the registration id each `PUT` answered (per
//! IP) and names it on the renewals and the removal (`?registration=ID`):
//! the service then renews or removes only that registration, never the
//! one of a host that registered the IP since (its answer is `409`). A
//! process that deregisters for another (a pre-stop hook) gives it the id
//! with [`Registrar::set_registration`].
//!
//! ```no_run
//! use std::time::Duration;
//! use envid::registrar::{Registrar, Registration};
//! use envid::ServiceConfig;
//! let env = envid::Environment::builder().load()?;
//! let config = ServiceConfig::builder()
//!     .endpoint("https://envsvc.cn0.example:7443")
//!     .token(env.token().cloned().expect("the descriptor has the app's token"))
//!     .build()?;
//! let registrar = Registrar::new(config);
//! let ip = env.ip().expect("this host has an IP");
//! registrar.register(ip, &Registration::from_environment(&env, Duration::from_secs(300)))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{
    not_found, ClientError, HttpTransport, Method, Request, ServiceConfig, Transport,
};
use crate::environment::Environment;
use crate::model::Secret;
use crate::protocol::{host_path, renew_path, HostRecord, RegistrationBody};

/// What `PUT /v1/hosts/{ip}` sends, as a [`RegistrationBody`]: the
/// record's fields (never a token; `ip` and `cidr` are dropped, the IP is
/// in the path; `env_type` too, the service derives it from `env`) plus the
/// lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The instance's facts.
    pub record: HostRecord,
    /// How long the registration lives unless renewed.
    pub lease: Duration,
}

impl Registration {
    /// The registration of this host's identified environment: app, env,
    /// idc, sub_env, platform, hostname, release, k8s and labels. The app
    /// token is never included.
    pub fn from_environment(env: &Environment, lease: Duration) -> Registration {
        Registration {
            record: HostRecord {
                ip: None,
                cidr: None,
                app: env.app().map(str::to_string),
                env: env.env().to_string(),
                env_type: None,
                sub_env: env.sub_env().map(str::to_string),
                idc: env.idc().to_string(),
                platform: Some(env.platform()),
                container: None,
                hostname: env.hostname().map(str::to_string),
                release: env.release().cloned(),
                k8s: env.k8s().cloned(),
                labels: env.labels().clone(),
                registration: None,
            },
            lease,
        }
    }

    /// The body sent to the service (the lease in whole seconds, at least 1).
    pub fn body(&self) -> RegistrationBody {
        RegistrationBody::new(&self.record, self.lease.as_secs().max(1))
    }

    /// The JSON body sent to the service.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).expect("a record always encodes")
    }
}

/// What [`Registrar::renew_or_register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The lease was extended.
    Renewed,
    /// The service did not know the IP any more; it was registered again.
    Registered,
}

/// How long to wait before registering again after a renewal got `404`: a
/// uniform draw below a third of the lease (at most 60 s), the renewal
/// period of `envid register --keep-alive`, so a fleet re-registering at once
/// is spread over it and still back within one lease.
pub fn reregister_jitter(lease: Duration) -> Duration {
    (lease / 3)
        .min(Duration::from_secs(60))
        .mul_f64(fastrand::f64())
}

/// Registers, renews and removes instances at the first endpoint of a
/// [`ServiceConfig`] (see the [module documentation](self)).
pub struct Registrar {
    transport: Arc<dyn Transport>,
    endpoint: String,
    /// The newest signed identity the service handed back, if any.
    identity: std::sync::Mutex<Option<Identity>>,
    /// IP → the registration id its `PUT` answered, named on its renewals
    /// and removal.
    registrations: std::sync::Mutex<HashMap<IpAddr, String>>,
}

/// The signed identity the service returns with a registration or renewal
/// of a checked registration (a JWT; see [`crate::identity`]): what the
/// process sends as `Envid-Identity` to prove its app and environment.
#[derive(Clone)]
pub struct Identity {
    /// The token (a compact JWT). A secret of sorts: never logged.
    pub token: Secret,
    /// Its lifetime as the service said; renew before half of it passes.
    pub lifetime: Option<Duration>,
    /// When it was received.
    pub received: std::time::Instant,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("token", &self.token)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// The answer of `PUT` and renew: only what the registrar keeps.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    identity_lifetime_seconds: Option<u64>,
    /// The `PUT`'s only (a service older than ids sends none).
    #[serde(default)]
    registration: Option<String>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// A registrar over the [`HttpTransport`] of `config`; its token is the
    /// registration token: the app's own (the descriptor's `token`, which
    /// lets it register only the IP it connects from, under its app name),
    /// or an operator's. Makes no request yet.
    pub fn new(config: ServiceConfig) -> Registrar {
        let transport = Arc::new(HttpTransport::new(&config));
        Registrar::with_transport(config, transport)
    }

    /// A registrar over another transport.
    pub fn with_transport(config: ServiceConfig, transport: Arc<dyn Transport>) -> Registrar {
        Registrar {
            transport,
            endpoint: config.endpoints()[0].clone(),
            identity: std::sync::Mutex::new(None),
            registrations: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint registrations go to (the config's first).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `PUT /v1/hosts/{ip}`: registers (or re-registers) `ip`, and
    /// remembers the registration id the service answered
    /// ([`registration`](Self::registration)). A `429` is
    /// [`ClientError::RateLimited`] with the service's `Retry-After`.
    pub fn register(&self, ip: IpAddr, registration: &Registration) -> Result<(), ClientError> {
        let path = host_path(ip);
        let body = registration.to_json();
        let request = Request::new(Method::Put, &self.endpoint, &path).json(&body);
        match self.transport.send(&request)? {
            Some(body) => {
                let id = self.keep_identity(&body);
                // A service older than ids answers none: forget the old id,
                // which would refuse every renewal of the new registration.
                self.set_registration(ip, id);
                Ok(())
            }
            None => Err(not_found(&self.endpoint)),
        }
    }

    /// The registration id of `ip` that renewals and the removal name: what
    /// its last `PUT` answered, or what [`set_registration`](Self::set_registration)
    /// gave. `None`: they name none (the service then acts on whatever
    /// registration the IP holds).
    pub fn registration(&self, ip: IpAddr) -> Option<String> {
        self.registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ip)
            .cloned()
    }

    /// Sets (or, with `None`, forgets) the registration id of `ip` that
    /// renewals and the removal name: for a process that removes a
    /// registration another made (a pre-stop hook given the id `envid
    /// register --registration-file` wrote).
    pub fn set_registration(&self, ip: IpAddr, registration: Option<String>) {
        let mut held = self
            .registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match registration {
            Some(id) => held.insert(ip, id),
            None => held.remove(&ip),
        };
    }

    /// `path` with `?registration=ID` when an id is held for `ip`.
    fn naming_registration(&self, ip: IpAddr, path: String) -> (String, bool) {
        match self.registration(ip) {
            Some(id) => (format!("{path}?registration={}", query_value(&id)), true),
            None => (path, false),
        }
    }

    /// The newest signed identity from a registration or renewal (`None`
    /// when the service signs none: no signing key, or open registration).
    /// It is renewed with every renewal; renew at least every half of
    /// [`Identity::lifetime`].
    pub fn identity(&self) -> Option<Identity> {
        self.identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps the answer's identity; returns its registration id.
    fn keep_identity(&self, body: &[u8]) -> Option<String> {
        let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
            return None;
        };
        if let Some(token) = answer.identity {
            *self
                .identity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Identity {
                token: Secret::new(token),
                lifetime: answer.identity_lifetime_seconds.map(Duration::from_secs),
                received: std::time::Instant::now(),
            });
        }
        answer.registration
    }

    /// `POST /v1/hosts/{ip}/renew`: extends the lease. `Ok(false)` when the
    /// service does not know `ip` (the lease expired, or the service lost
    /// it): register again. When a registration id is held for `ip`, only
    /// that registration is renewed: if the IP was registered again since
    /// (another host now has it), the service answers `409`
    /// ([`ClientError::Status`] with status 409) and renews nothing;
    /// registering again would take the IP from that host, so it is left to
    /// the caller.
    pub fn renew(&self, ip: IpAddr) -> Result<bool, ClientError> {
        let (path, _) = self.naming_registration(ip, renew_path(ip));
        let request = Request::new(Method::Post, &self.endpoint, &path);
        match self.transport.send(&request)? {
            Some(body) => {
                self.keep_identity(&body);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Keeps `ip` registered: renews, and when the service no longer knows
    /// it (`404`: the lease ended, or the service lost its state) waits
    /// [`reregister_jitter`] and registers again, so a fleet that lost its
    /// registrations at once comes back spread over a third of a lease
    /// rather than in one burst. A `429` on the way is waited out as its
    /// `Retry-After` says (at most 5 times, then the error is returned).
    /// Blocks for the jitter and the waits.
    pub fn renew_or_register(
        &self,
        ip: IpAddr,
        registration: &Registration,
    ) -> Result<Renewal, ClientError> {
        if self.renew(ip)? {
            return Ok(Renewal::Renewed);
        }
        std::thread::sleep(reregister_jitter(registration.lease));
        let mut attempts = 0;
        loop {
            match self.register(ip, registration) {
                Ok(()) => return Ok(Renewal::Registered),
                Err(ClientError::RateLimited { retry_after, .. }) if attempts < 5 => {
                    attempts += 1;
                    std::thread::sleep(retry_after.unwrap_or(Duration::from_secs(1)));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `DELETE /v1/hosts/{ip}`: removes the registration; removing an
    /// unknown IP is not an error. When a registration id is held for `ip`,
    /// only that registration is removed: one made since by another host
    /// is left alone, and that is a success too (what this registrar
    /// registered is gone either way). Without an id, the service answers
    /// `409` (here [`ClientError::Status`] with status 409) for an IP of
    /// its registry file: a static record is changed in that file, not here.
    pub fn deregister(&self, ip: IpAddr) -> Result<(), ClientError> {
        let (path, named) = self.naming_registration(ip, host_path(ip));
        let request = Request::new(Method::Delete, &self.endpoint, &path);
        match self.transport.send(&request) {
            Ok(_) => {}
            // With an id, the service's only 409 is `registration_changed`.
            Err(ClientError::Status { status: 409, .. }) if named => {}
            Err(e) => return Err(e),
        }
        self.set_registration(ip, None);
        Ok(())
    }
}

/// `value` for a query string: the unreserved characters as they are, every
/// other byte percent-encoded (the service's ids are hex; an id given by
/// [`Registrar::set_registration`] may be anything).
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_fields_and_lease_but_no_token_or_key() {
        let env = Environment::builder()
            .app("flight_order")
            .env("beta")
            .idc("cn0")
            .ip("10.0.0.5".parse().unwrap())
            .hostname("h1")
            .token(crate::Secret::new("s3cr3t".to_string()))
            .label("team", "air")
            .env_vars(false)
            .root("/nonexistent-envid-root")
            .descriptor_paths(Vec::<std::path::PathBuf>::new())
            .load()
            .unwrap();
        let reg = Registration::from_environment(&env, Duration::from_secs(90));
        let body: serde_json::Value = serde_json::from_slice(&reg.to_json()).unwrap();
        assert_eq!(body["app"], "flight_order");
        assert_eq!(body["env"], "beta");
        assert_eq!(body["idc"], "cn0");
        assert_eq!(body["hostname"], "h1");
        assert_eq!(body["labels"]["team"], "air");
        assert_eq!(body["lease_seconds"], 90);
        assert!(body.get("ip").is_none() && body.get("cidr").is_none());
        assert!(!String::from_utf8(reg.to_json()).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn jitter_stays_below_a_third_of_the_lease_and_a_minute() {
        for _ in 0..1000 {
            assert!(reregister_jitter(Duration::from_secs(9)) < Duration::from_secs(3));
            assert!(reregister_jitter(Duration::from_secs(3600)) < Duration::from_secs(60));
        }
        assert_eq!(reregister_jitter(Duration::ZERO), Duration::ZERO);
    }

    /// Answers `PUT` with a registration id, and records every request.
    struct Recording {
        paths: std::sync::Mutex<Vec<String>>,
        delete_status: u16,
    }

    impl Transport for Recording {
        fn send(&self, request: &Request<'_>) -> Result<Option<Vec<u8>>, ClientError> {
            self.paths
                .lock()
                .unwrap()
                .push(format!("{:?} {}", request.method, request.path));
            match request.method {
                Method::Put => Ok(Some(br#"{"ip":"10.0.0.5","registration":"ab12"}"#.to_vec())),
                Method::Delete if self.delete_status != 204 => Err(ClientError::Status {
                    endpoint: "http://e".into(),
                    status: self.delete_status,
                }),
                _ => Ok(Some(b"{}".to_vec())),
            }
        }
    }

    #[test]
    fn names_the_registration_its_put_got_on_renewals_and_the_removal() {
        let config = ServiceConfig::builder()
            .endpoint("http://e")
            .build()
            .unwrap();
        let transport = Arc::new(Recording {
            paths: Default::default(),
            delete_status: 409,
        });
        let r = Registrar::with_transport(config, transport.clone());
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let reg = Registration {
            record: serde_json::from_value(
                serde_json::json!({"app": "a", "env": "prod", "idc": "cn0"}),
            )
            .unwrap(),
            lease: Duration::from_secs(60),
        };
        assert!(r.renew(ip).unwrap());
        r.register(ip, &reg).unwrap();
        assert_eq!(r.registration(ip).as_deref(), Some("ab12"));
        assert!(r.renew(ip).unwrap());
        // The IP holds another registration now: nothing of ours is left,
        // which is what a removal asks.
        r.deregister(ip).unwrap();
        assert_eq!(r.registration(ip), None);
        // Without an id, a 409 is a static record: an error.
        assert!(r.deregister(ip).is_err());
        r.set_registration(ip, Some("a b/c".into()));
        r.renew(ip).unwrap();
        assert_eq!(
            *transport.paths.lock().unwrap(),
            [
                "Post /v1/hosts/10.0.0.5/renew",
                "Put /v1/hosts/10.0.0.5",
                "Post /v1/hosts/10.0.0.5/renew?registration=ab12",
                "Delete /v1/hosts/10.0.0.5?registration=ab12",
                "Delete /v1/hosts/10.0.0.5",
                "Post /v1/hosts/10.0.0.5/renew?registration=a%20b%2Fc",
            ]
        );
    }

    #[test]
    fn goes_to_the_first_endpoint() {
        let config = ServiceConfig::builder()
            .endpoint("http://a.example:7070/")
            .endpoint("http://b.example:7070")
            .build()
            .unwrap();
        assert_eq!(Registrar::new(config).endpoint(), "http://a.example:7070");
    }
}
