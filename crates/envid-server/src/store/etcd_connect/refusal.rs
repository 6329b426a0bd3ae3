//! etcd's refusals in the operator's words (`Failure`): the TLS alert, the
//! gRPC status or the error chain behind a failed call, named with the flag
//! that fixes it, and whether a retry can.

use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::settings::{EtcdSettings, Tls};
use super::EtcdPassword;

/// Why etcd could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A retry will not fix it (TLS, credentials, permissions): the
    /// operator must. Stops the service at start.
    Permanent(String),
    /// etcd unreachable, without a leader, slow: wait.
    Transient(String),
}

impl Failure {
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Permanent(m) | Failure::Transient(m) => m,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl EtcdSettings {
    /// How `e` looks to an operator, and whether waiting can fix it.
    pub(crate) fn classify(&self, e: &etcd_client::Error) -> Failure {
        if let Some(tls) = find_rustls(e) {
            return Failure::Permanent(self.tls_cause(tls));
        }
        if let etcd_client::Error::GRpcStatus(status) = e {
            if let Some(cause) = self.status_cause(status) {
                return Failure::Permanent(cause);
            }
        }
        let text = chain(e);
        if text.contains("H2NotNegotiated") || text.contains("HTTP/2 was not negotiated") {
            return Failure::Permanent(format!(
                "TLS handshake with {} did not offer HTTP/2 (gRPC): is it an etcd \
                 client URL?",
                self.endpoints.join(",")
            ));
        }
        Failure::Transient(text)
    }

    fn tls_cause(&self, e: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let ca = self
            .access
            .ca
            .as_deref()
            .map_or_else(|| "FILE".into(), |p| p.display().to_string());
        let cert = self.access.cert.as_deref().map(|p| p.display().to_string());
        let server = match e {
            E::InvalidCertificate(c) => Some(match c {
                C::UnknownIssuer | C::BadSignature => {
                    format!("the server's certificate is not signed by --etcd-ca {ca}")
                }
                C::Expired | C::ExpiredContext { .. } => {
                    "the server's certificate has expired (renew the etcd members' \
                     --cert-file)"
                        .into()
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet (is this machine's clock \
                     right?)"
                        .into()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "the server's certificate is not valid for the host of {} (its \
                     subject alternative names do not name it)",
                    self.endpoints.join(",")
                ),
                C::Revoked => "the server's certificate is revoked".into(),
                other => format!("the server's certificate was refused: {other:?}"),
            }),
            _ => None,
        };
        let cause = server.unwrap_or_else(|| match (e, &cert) {
            (E::AlertReceived(A::CertificateExpired), Some(cert)) => {
                format!("the server refused the client certificate --etcd-cert {cert}: expired")
            }
            (
                E::AlertReceived(
                    A::BadCertificate
                    | A::UnknownCA
                    | A::CertificateUnknown
                    | A::CertificateRevoked
                    | A::UnsupportedCertificate
                    | A::AccessDenied,
                ),
                Some(cert),
            ) => format!(
                "the server refused the client certificate --etcd-cert {cert} ({}): \
                 not signed by a CA the members trust (their --trusted-ca-file), \
                 expired or revoked",
                alert_name(e)
            ),
            (
                E::AlertReceived(
                    A::BadCertificate
                    | A::CertificateRequired
                    | A::CertificateUnknown
                    | A::HandshakeFailure,
                ),
                None,
            ) => "the server requires a client certificate: give --etcd-cert and \
                  --etcd-key"
                .into(),
            (E::InvalidMessage(_), _) => {
                format!("{e} (does {} serve TLS?)", self.endpoints.join(","))
            }
            _ => e.to_string(),
        });
        format!("TLS handshake failed: {cause}")
    }

    fn status_cause(&self, status: &tonic::Status) -> Option<String> {
        use tonic::Code;
        let message = status.message();
        let user = self.user.as_ref().map(|(n, _)| n.as_str());
        let password_flag = match &self.access.password {
            Some(EtcdPassword::File(p)) => format!("--etcd-password-file {}", p.display()),
            Some(EtcdPassword::Value(_)) => "ENVID_ETCD_PASSWORD".into(),
            None => "--etcd-password-file".into(),
        };
        match status.code() {
            Code::PermissionDenied => Some(match user {
                Some(u) => format!(
                    "user {u} has no read/write access to prefix {} (permission denied); \
                     grant its role readwrite on the prefix",
                    self.prefix
                ),
                None if self.access.cert.is_some() => format!(
                    "the client certificate's user (its CN) has no read/write access to \
                     prefix {} (permission denied); give --etcd-user or grant that user's \
                     role readwrite on the prefix",
                    self.prefix
                ),
                None => format!(
                    "no read/write access to prefix {} (permission denied)",
                    self.prefix
                ),
            }),
            _ if message.contains("authentication failed") => Some(format!(
                "authentication failed for user {}: wrong password or no such user \
                 ({password_flag}, --etcd-user)",
                user.unwrap_or("?")
            )),
            _ if message.contains("authentication is not enabled") => Some(format!(
                "--etcd-user {} given, but authentication is not enabled on this etcd \
                 cluster (`etcdctl auth enable`, or drop --etcd-user)",
                user.unwrap_or("?")
            )),
            _ if message.contains("user name is empty") => Some(
                "etcd requires authentication: give --etcd-user and a password, or a \
                 client certificate whose CN is an etcd user"
                    .into(),
            ),
            _ if message.contains("user name not found") || message.contains("user not found") => {
                Some(format!(
                    "user {} does not exist in etcd (--etcd-user)",
                    user.unwrap_or("?")
                ))
            }
            Code::Unauthenticated if !message.contains("invalid auth token") => {
                Some(format!("etcd refused the credentials: {message}"))
            }
            _ => None,
        }
    }
}

/// How long the TLS diagnosis waits for a member's answer.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(2);

/// `https://HOST:PORT[/...]` → (HOST, PORT); etcd's port when absent.
fn host_port(url: &str) -> Option<(String, u16)> {
    let authority = url.strip_prefix("https://")?.split('/').next()?;
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = port
            .strip_prefix(':')
            .map_or(Some(2379), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 2379)),
    }
}

impl EtcdSettings {
    /// Why TLS with the members fails, found by a handshake of our own.
    ///
    /// With TLS 1.3 a server checks the client certificate after the
    /// client has finished its side of the handshake, so its refusal
    /// (an alert) reaches gRPC as "connection closed", which names
    /// nothing. This handshake sends the HTTP/2 preface and reads the
    /// answer, where the alert shows. `None`: TLS works (or the member
    /// cannot be reached), so the cause is elsewhere.
    pub(crate) async fn diagnose_tls(&self) -> Option<Failure> {
        let tls = self.tls.as_ref()?;
        for endpoint in &self.endpoints {
            let found = tokio::time::timeout(DIAGNOSIS_TIMEOUT, self.handshake(tls, endpoint))
                .await
                .ok()
                .flatten();
            if let Some(e) = found {
                return Some(Failure::Permanent(self.tls_cause(&e)));
            }
        }
        None
    }

    async fn handshake(&self, tls: &Tls, endpoint: &str) -> Option<rustls::Error> {
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (host, port) = host_port(endpoint)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&tls.ca) {
            roots.add(cert.ok()?).ok()?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let mut config = match &tls.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).ok()?;
                builder.with_client_auth_cert(chain, key).ok()?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(host.clone()).ok()?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut stream = match connector.connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return rustls_in_io(&e).cloned(),
        };
        // The HTTP/2 preface and an empty SETTINGS frame: a member that
        // accepted us answers with its SETTINGS.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        if let Err(e) = stream.write_all(&hello).await {
            return rustls_in_io(&e).cloned();
        }
        let _ = stream.flush().await;
        let mut buf = [0u8; 64];
        match stream.read(&mut buf).await {
            Err(e) => rustls_in_io(&e).cloned(),
            Ok(_) => None,
        }
    }
}

fn rustls_in_io(e: &std::io::Error) -> Option<&rustls::Error> {
    let inner = e.get_ref()?;
    inner
        .downcast_ref::<rustls::Error>()
        .or_else(|| find_in(inner))
}

fn alert_name(e: &rustls::Error) -> String {
    match e {
        rustls::Error::AlertReceived(a) => format!("alert {a:?}"),
        other => other.to_string(),
    }
}

/// The sources of `e`: etcd-client's error has no `source()`, so its
/// variants are opened here.
fn root(e: &etcd_client::Error) -> Option<&(dyn std::error::Error + 'static)> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    }
}

/// The first rustls error in `e`'s chain. An `io::Error` hides its inner
/// error from `source()` (it is its Display), so each one is opened too.
fn find_rustls(e: &etcd_client::Error) -> Option<&rustls::Error> {
    let mut next = root(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(tls);
                }
                if let Some(found) = find_in(inner) {
                    return Some(found);
                }
            }
        }
        next = err.source();
    }
    None
}

fn find_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = e.source();
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

/// `e` and its sources, each once, for a transient cause.
fn chain(e: &etcd_client::Error) -> String {
    let mut text = match e {
        // tonic's Display of a status lists details and metadata; the
        // message is what says something.
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    };
    let mut next = root(e).and_then(|r| r.source());
    while let Some(err) = next {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = err.source();
    }
    text
}
