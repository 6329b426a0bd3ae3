//! [`ServiceConfig`]: how every client reaches the environment service,
//! validated once (see the [`client`](super) documentation for the timeouts).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ClientError;
use crate::model::Secret;

/// Default `connect` timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default `per_phase` timeout of the lookup client and the registrar.
pub const DEFAULT_PER_PHASE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default response size cap of the lookup client and the registrar.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// A validated connection configuration for the environment service; see
/// the [`client`](super) documentation. Cheap to clone. `Debug` never shows the
/// token (nor proxy credentials).
#[derive(Clone)]
pub struct ServiceConfig {
    endpoints: Vec<String>,
    token: Option<Secret>,
    proxy: Option<ureq::Proxy>,
    ca_file: Option<PathBuf>,
    tls: Option<ureq::tls::TlsConfig>,
    connect_timeout: Duration,
    per_phase_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token)
            // ureq's Debug of a proxy leaves out its credentials.
            .field("proxy", &self.proxy)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("per_phase_timeout", &self.per_phase_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// Whether `endpoint` is a plain `http://` URL to a host other than
/// loopback: anyone on the path reads and may rewrite what crosses it (a
/// token sent, a key set fetched). `register` and the identity verifier
/// refuse such an endpoint unless told otherwise.
pub fn is_plain_http_off_loopback(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

impl ServiceConfig {
    /// A builder: no endpoint yet, no token, no proxy, the bundled Mozilla
    /// TLS roots, the default timeouts.
    pub fn builder() -> ServiceConfigBuilder {
        ServiceConfigBuilder::default()
    }

    /// The endpoints, in failover order, without a trailing `/`.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The `connect` timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The `per_phase` timeout if set; `None`: each client's default
    /// ([`DEFAULT_PER_PHASE_TIMEOUT`], 10 s for a replica).
    pub fn per_phase_timeout(&self) -> Option<Duration> {
        self.per_phase_timeout
    }

    /// The strict whole-request deadline, if any.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.total_timeout
    }

    /// The response size cap if set; `None`: each client's default
    /// ([`DEFAULT_MAX_RESPONSE_BYTES`], 256 MiB for a replica).
    pub fn max_response_bytes(&self) -> Option<u64> {
        self.max_response_bytes
    }

    /// The CA file whose certificates are the TLS roots, if one was given.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub(crate) fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    pub(crate) fn proxy(&self) -> Option<&ureq::Proxy> {
        self.proxy.as_ref()
    }

    pub(crate) fn tls(&self) -> Option<&ureq::tls::TlsConfig> {
        self.tls.as_ref()
    }
}

/// Builds a [`ServiceConfig`]; nothing is checked before
/// [`build`](Self::build). `Debug` never shows the token or the proxy URL.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfigBuilder {
    endpoints: Vec<String>,
    token: Option<Secret>,
    // A proxy URL may carry credentials.
    proxy: Option<Secret>,
    ca_file: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    per_phase_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
}

impl ServiceConfigBuilder {
    /// Adds an endpoint, `http://HOST[:PORT]` or `https://HOST[:PORT]` (one
    /// per data center); they are tried in the order added.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints
            .push(url.into().trim_end_matches('/').to_string());
        self
    }

    /// Adds several endpoints, in order.
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for url in urls {
            self = self.endpoint(url);
        }
        self
    }

    /// The bearer token sent on every request.
    pub fn token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// An explicit proxy URL (`http://`, `https://`, `socks5://`…). None by
    /// default, and proxy variables are deliberately not read: a client
    /// loaded into a JVM must not pick one up by accident.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(Secret::new(url.into()));
        self
    }

    /// A PEM file of CA certificates (at least one) to trust instead of the
    /// bundled Mozilla roots, for a service with a private CA. Read by
    /// [`build`](Self::build).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// TCP connect and TLS handshake timeout (default 500 ms).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Bound on each phase of a request on its own: sending it, waiting for
    /// the response head, reading the body (default 2 s; 10 s for a replica).
    pub fn per_phase_timeout(mut self, d: Duration) -> Self {
        self.per_phase_timeout = Some(d);
        self
    }

    /// A strict deadline for the whole request (off by default; see the
    /// [`client`](super) documentation for its cost).
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.total_timeout = Some(d);
        self
    }

    /// Largest response body accepted (default 4 MiB; 256 MiB for a
    /// replica, whose snapshot holds the whole registry).
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// Checks everything once: at least one endpoint, each an `http://` or
    /// `https://` URL with a host ([`ClientError::InvalidEndpoint`]); the
    /// proxy URL, the CA file (readable PEM with at least one certificate),
    /// timeouts and size cap above zero ([`ClientError::InvalidConfig`]
    /// naming the setting).
    pub fn build(self) -> Result<ServiceConfig, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoint configured".into(),
            });
        }
        for e in &self.endpoints {
            check_endpoint(e)?;
        }
        let invalid =
            |field: &'static str, reason: String| ClientError::InvalidConfig { field, reason };
        let proxy = match &self.proxy {
            None => None,
            Some(p) => Some(
                ureq::Proxy::new(p.expose())
                    .map_err(|e| invalid("proxy", format!("not a proxy URL: {e}")))?,
            ),
        };
        let tls = match &self.ca_file {
            None => None,
            Some(path) => Some(read_ca_file(path).map_err(|r| invalid("ca_file", r))?),
        };
        let positive = |field: &'static str, d: Option<Duration>| match d {
            Some(d) if d.is_zero() => Err(invalid(field, "must be more than 0".into())),
            _ => Ok(d),
        };
        let connect_timeout = positive("connect_timeout", self.connect_timeout)?;
        let per_phase_timeout = positive("per_phase_timeout", self.per_phase_timeout)?;
        let total_timeout = positive("total_timeout", self.total_timeout)?;
        if self.max_response_bytes == Some(0) {
            return Err(invalid("max_response_bytes", "must be more than 0".into()));
        }
        Ok(ServiceConfig {
            endpoints: self.endpoints,
            token: self.token,
            proxy,
            ca_file: self.ca_file,
            tls,
            connect_timeout: connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            per_phase_timeout,
            total_timeout,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// `http://HOST[:PORT]` or `https://HOST[:PORT]` (a path prefix is allowed:
/// requests go to `{endpoint}/v1/…`).
fn check_endpoint(e: &str) -> Result<(), ClientError> {
    let refuse = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: e.to_string(),
        reason: reason.to_string(),
    };
    let expected = "expected http://HOST[:PORT] or https://HOST[:PORT]";
    let uri: ureq::http::Uri = e.parse().map_err(|_| refuse(expected))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(refuse(expected)),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse(expected));
    }
    if uri.query().is_some() {
        return Err(refuse("an endpoint has no query string"));
    }
    Ok(())
}

/// The TLS settings trusting exactly the certificates of a PEM file.
fn read_ca_file(path: &Path) -> Result<ureq::tls::TlsConfig, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{} is not valid PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_field(b: ServiceConfigBuilder) -> &'static str {
        match b.build() {
            Err(ClientError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = |e: &str| ServiceConfig::builder().endpoint(e).build();
        assert!(ok("http://127.0.0.1:7070").is_ok());
        assert!(ok("https://envsvc.cn0.example/").is_ok());
        assert_eq!(
            ok("http://[::1]:7070/").unwrap().endpoints(),
            ["http://[::1]:7070"]
        );
        for bad in [
            "envsvc:7070",
            "ftp://x",
            "http://",
            "https://:80",
            "http://h?x=1",
        ] {
            assert!(
                matches!(ok(bad), Err(ClientError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            ServiceConfig::builder().build(),
            Err(ClientError::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn settings_are_checked_and_named() {
        let b = || ServiceConfig::builder().endpoint("http://127.0.0.1:1");
        assert_eq!(refused_field(b().proxy("::not a url::")), "proxy");
        assert_eq!(
            refused_field(b().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            refused_field(b().per_phase_timeout(Duration::ZERO)),
            "per_phase_timeout"
        );
        assert_eq!(
            refused_field(b().total_timeout(Duration::ZERO)),
            "total_timeout"
        );
        assert_eq!(
            refused_field(b().max_response_bytes(0)),
            "max_response_bytes"
        );
        let c = b()
            .proxy("http://proxy.example:3128")
            .total_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(c.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.per_phase_timeout(), None);
        assert_eq!(c.total_timeout(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let b = |p: &Path| {
            ServiceConfig::builder()
                .endpoint("https://127.0.0.1:1")
                .ca_file(p)
        };
        assert_eq!(refused_field(b(&dir.path().join("absent.pem"))), "ca_file");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        assert_eq!(refused_field(b(&empty)), "ca_file");
        let good = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ca.pem"));
        let c = b(good).build().unwrap();
        assert_eq!(c.ca_file(), Some(good));
        assert!(c.tls().is_some());
    }

    #[test]
    fn debug_hides_token_and_proxy_credentials() {
        let b = ServiceConfig::builder()
            .endpoint("http://127.0.0.1:1")
            .token(Secret::new("s3cr3t-token"))
            .proxy("http://user:pr0xy-pass@proxy.example:3128");
        assert!(!format!("{b:?}").contains("s3cr3t"));
        assert!(!format!("{b:?}").contains("pr0xy-pass"));
        let c = b.build().unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("pr0xy-pass"),
            "{shown}"
        );
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
