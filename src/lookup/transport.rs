//! How requests reach the service. The cache and policy in
//! [`super::LookupClient`] only see the [`Transport`] trait; [`HttpTransport`]
//! is the real one (ureq 3 with rustls: keep-alive, explicit timeouts, an
//! explicit proxy setting and a response size cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::LookupError;
use crate::model::Secret;
use crate::protocol::{HostRecord, LookupRequest, LookupResponse};

/// One batch answer: each IP asked for, known (`Some`) or unknown (`None`).
pub type BatchAnswer = HashMap<IpAddr, Option<Arc<HostRecord>>>;

/// Sends lookups to one endpoint.
pub trait Transport: Send + Sync {
    /// `GET /v1/hosts/{ip}`: `Ok(None)` for 404.
    fn get_host(&self, endpoint: &str, ip: IpAddr) -> Result<Option<Arc<HostRecord>>, LookupError>;
    /// `POST /v1/hosts/lookup` with at most the service's batch limit of IPs.
    fn lookup_batch(&self, endpoint: &str, ips: &[IpAddr]) -> Result<BatchAnswer, LookupError>;
}

/// Settings of [`HttpTransport`].
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Bound on each phase of a request: sending it, waiting for the
    /// response head, reading the body.
    pub request_timeout: Duration,
    /// An optional deadline for the whole request. Off by default: a
    /// shrinking deadline re-arms the socket timeout on every read and write,
    /// which costs about 50 µs a request on loopback here (the lookup bench
    /// measures it), while the per-phase bound already stops every hang.
    pub total_timeout: Option<Duration>,
    /// Largest response body accepted.
    pub max_response_bytes: u64,
    /// Bearer token.
    pub token: Option<Secret>,
    /// Proxy URL; `None` means no proxy (proxy variables are deliberately
    /// not read: a lookup client inside a JVM must not pick one up by accident).
    pub proxy: Option<String>,
}

impl Default for HttpSettings {
    /// 500 ms connect, 2 s per request, 4 MiB responses, no token, no proxy.
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            total_timeout: None,
            max_response_bytes: 4 * 1024 * 1024,
            token: None,
            proxy: None,
        }
    }
}

/// The ureq transport.
pub struct HttpTransport {
    agent: ureq::Agent,
    settings: HttpSettings,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// An agent with these settings.
    pub fn new(settings: HttpSettings) -> Result<HttpTransport, LookupError> {
        let proxy = match &settings.proxy {
            None => None,
            Some(p) => Some(
                ureq::Proxy::new(p).map_err(|e| LookupError::InvalidEndpoint {
                    endpoint: p.clone(),
                    reason: format!("invalid proxy: {e}"),
                })?,
            ),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_send_request(Some(settings.request_timeout))
            .timeout_recv_response(Some(settings.request_timeout))
            .timeout_recv_body(Some(settings.request_timeout))
            .timeout_global(settings.total_timeout)
            .http_status_as_error(false)
            .max_redirects(0)
            // Below the reference service's 10 s idle close, so a pooled
            // connection is not reused in the instant the server closes it.
            .max_idle_age(Duration::from_secs(5))
            .proxy(proxy)
            .user_agent(concat!("envid/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpTransport { agent, settings })
    }

    pub(crate) fn map_err(&self, endpoint: &str, e: ureq::Error) -> LookupError {
        let endpoint = endpoint.to_string();
        match e {
            ureq::Error::Timeout(_) => LookupError::Timeout {
                endpoint,
                timeout: self.settings.request_timeout,
            },
            ureq::Error::BodyExceedsLimit(limit) => LookupError::TooLarge { endpoint, limit },
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => LookupError::Connect {
                endpoint,
                message: e.to_string(),
            },
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::NotConnected => LookupError::Connect {
                    endpoint,
                    message: io.to_string(),
                },
                std::io::ErrorKind::TimedOut => LookupError::Timeout {
                    endpoint,
                    timeout: self.settings.request_timeout,
                },
                _ => LookupError::Io {
                    endpoint,
                    message: io.to_string(),
                },
            },
            other => LookupError::Io {
                endpoint,
                message: other.to_string(),
            },
        }
    }

    /// The agent (keep-alive pool, timeouts, proxy), for the replica and registrar.
    pub(crate) fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The settings the agent was built with.
    pub(crate) fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Reads a response: status mapping (any 2xx is success, 404 is `None`),
    /// size cap, and the body.
    pub(crate) fn body(
        &self,
        endpoint: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<Vec<u8>>, LookupError> {
        let mut resp = result.map_err(|e| self.map_err(endpoint, e))?;
        let status = resp.status().as_u16();
        let endpoint_s = endpoint.to_string();
        match status {
            200..=299 => {}
            404 => return Ok(None),
            401 | 403 => {
                return Err(LookupError::Unauthorized {
                    endpoint: endpoint_s,
                    status,
                })
            }
            429 | 503 if resp.headers().contains_key("retry-after") || status == 429 => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(LookupError::RateLimited {
                    endpoint: endpoint_s,
                    retry_after,
                });
            }
            _ => {
                return Err(LookupError::Status {
                    endpoint: endpoint_s,
                    status,
                })
            }
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(self.settings.max_response_bytes)
            .read_to_vec()
            .map_err(|e| self.map_err(endpoint, e))?;
        Ok(Some(bytes))
    }

    pub(crate) fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.settings.token {
            Some(t) => req.header("authorization", format!("Bearer {}", t.expose())),
            None => req,
        }
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    bytes: &[u8],
) -> Result<T, LookupError> {
    serde_json::from_slice(bytes).map_err(|e| LookupError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

impl Transport for HttpTransport {
    fn get_host(&self, endpoint: &str, ip: IpAddr) -> Result<Option<Arc<HostRecord>>, LookupError> {
        let url = format!("{endpoint}/v1/hosts/{ip}");
        let result = self.auth(self.agent.get(&url)).call();
        match self.body(endpoint, result)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Arc::new(decode::<HostRecord>(endpoint, &bytes)?))),
        }
    }

    fn lookup_batch(&self, endpoint: &str, ips: &[IpAddr]) -> Result<BatchAnswer, LookupError> {
        let url = format!("{endpoint}/v1/hosts/lookup");
        let request = LookupRequest {
            ips: ips.iter().map(|ip| ip.to_string()).collect(),
        };
        let body = serde_json::to_vec(&request).expect("a list of IPs always encodes");
        let result = self
            .auth(self.agent.post(&url))
            .header("content-type", "application/json")
            .send(&body[..]);
        let Some(bytes) = self.body(endpoint, result)? else {
            return Err(LookupError::Status {
                endpoint: endpoint.to_string(),
                status: 404,
            });
        };
        let parsed: LookupResponse = decode(endpoint, &bytes)?;
        let mut out = BatchAnswer::with_capacity(ips.len());
        for (k, v) in parsed.hosts {
            let ip = k.parse::<IpAddr>().map_err(|_| LookupError::Decode {
                endpoint: endpoint.to_string(),
                message: format!("answer keyed by {k:?}, not an IP address"),
            })?;
            out.insert(ip, v.map(Arc::new));
        }
        if let Some(missing) = ips.iter().find(|ip| !out.contains_key(ip)) {
            return Err(LookupError::Decode {
                endpoint: endpoint.to_string(),
                message: format!("answer lacks {missing}"),
            });
        }
        Ok(out)
    }
}
