//! Registration of an instance at the environment service (DESIGN.md,
//! "Registration"): `PUT /v1/hosts/{ip}` with the instance's record and a
//! lease, `POST /v1/hosts/{ip}/renew` to extend the lease, and
//! `DELETE /v1/hosts/{ip}` (idempotent) when the instance goes away.
//!
//! These are single blocking calls with the lookup client's HTTP settings
//! (timeouts, explicit proxy, size cap) and no retry policy: the caller
//! (`envid register --keep-alive`, a release system, the FFI) decides when
//! to retry, and must honour [`LookupError::RateLimited`]'s `retry_after`
//! (registrations are rate-limited per app and IP).
//!
//! ```no_run
//! use std::time::Duration;
//! use envid::lookup::{HttpSettings, Registrar, Registration};
//! let env = envid::Environment::builder().load()?;
//! let registrar = Registrar::new("http://envsvc.cn0.example:7070", HttpSettings::default())?;
//! let ip = env.ip().expect("this host has an IP");
//! registrar.register(ip, &Registration::from_environment(&env, Duration::from_secs(300)))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::transport::{HttpSettings, HttpTransport};
use super::LookupError;
use crate::environment::Environment;
use crate::protocol::HostRecord;

/// What `PUT /v1/hosts/{ip}` sends: the record's fields (never a token;
/// `ip` and `cidr` are dropped, the IP is in the path) plus the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The instance's facts.
    pub record: HostRecord,
    /// How long the registration lives unless renewed.
    pub lease: Duration,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    record: &'a HostRecord,
    lease_seconds: u64,
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
            },
            lease,
        }
    }

    /// The JSON body sent to the service.
    pub fn to_json(&self) -> Vec<u8> {
        let mut record = self.record.clone();
        record.ip = None;
        record.cidr = None;
        serde_json::to_vec(&Body {
            record: &record,
            lease_seconds: self.lease.as_secs().max(1),
        })
        .expect("a record always encodes")
    }
}

/// Registers, renews and removes instances at one endpoint.
#[derive(Debug)]
pub struct Registrar {
    transport: HttpTransport,
    endpoint: String,
}

impl Registrar {
    /// A registrar for `endpoint` (`http://host:port` or `https://…`);
    /// `settings.token` is the registration token.
    pub fn new(
        endpoint: impl Into<String>,
        settings: HttpSettings,
    ) -> Result<Registrar, LookupError> {
        let endpoint = endpoint.into().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.len() < 9
        {
            return Err(LookupError::InvalidEndpoint {
                endpoint,
                reason: "expected http://HOST[:PORT] or https://HOST[:PORT]".into(),
            });
        }
        Ok(Registrar {
            transport: HttpTransport::new(settings)?,
            endpoint,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `PUT /v1/hosts/{ip}`: registers (or re-registers) `ip`. A `429` is
    /// [`LookupError::RateLimited`] with the service's `Retry-After`.
    pub fn register(&self, ip: IpAddr, registration: &Registration) -> Result<(), LookupError> {
        let url = format!("{}/v1/hosts/{ip}", self.endpoint);
        let body = registration.to_json();
        let result = self
            .transport
            .auth(self.transport.agent().put(&url))
            .header("content-type", "application/json")
            .send(&body[..]);
        match self.transport.body(&self.endpoint, result)? {
            Some(_) => Ok(()),
            None => Err(LookupError::Status {
                endpoint: self.endpoint.clone(),
                status: 404,
            }),
        }
    }

    /// `POST /v1/hosts/{ip}/renew`: extends the lease. `Ok(false)` when the
    /// service does not know `ip` (the lease expired, or the service lost
    /// it): register again.
    pub fn renew(&self, ip: IpAddr) -> Result<bool, LookupError> {
        let url = format!("{}/v1/hosts/{ip}/renew", self.endpoint);
        let result = self
            .transport
            .auth(self.transport.agent().post(&url))
            .send_empty();
        Ok(self.transport.body(&self.endpoint, result)?.is_some())
    }

    /// `DELETE /v1/hosts/{ip}`: removes the registration; removing an
    /// unknown IP is not an error.
    pub fn deregister(&self, ip: IpAddr) -> Result<(), LookupError> {
        let url = format!("{}/v1/hosts/{ip}", self.endpoint);
        let result = self
            .transport
            .auth(self.transport.agent().delete(&url))
            .call();
        self.transport.body(&self.endpoint, result).map(|_| ())
    }
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
    fn refuses_bad_endpoint() {
        assert!(matches!(
            Registrar::new("envsvc:7070", HttpSettings::default()),
            Err(LookupError::InvalidEndpoint { .. })
        ));
    }
}
