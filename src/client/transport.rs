//! How requests reach the service. Every client (lookup client, replica,
//! registrar, identity verifier) only sees the [`Transport`] trait, one
//! HTTP exchange at a time; [`HttpTransport`] is the real one (ureq 3 with
//! rustls: keep-alive, the [`ServiceConfig`]'s timeouts, proxy and TLS
//! roots, a response size cap). The paths are built by
//! [`crate::protocol`].

use std::time::Duration;

use super::config::{DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_PER_PHASE_TIMEOUT};
use super::{ClientError, ServiceConfig};

/// The HTTP methods the protocol uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

/// One request to one endpoint, as the clients hand it to a [`Transport`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The endpoint (`http://host:port`, no trailing `/`).
    pub endpoint: &'a str,
    /// Path and query, from the leading `/` (`/v1/hosts/10.0.0.1`).
    pub path: &'a str,
    /// A JSON body, if any.
    pub json: Option<&'a [u8]>,
    /// A long poll: the service may hold the response head back this long,
    /// so the response-head (and total) bounds are extended by it.
    pub long_poll: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A request without a body.
    pub fn new(method: Method, endpoint: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            endpoint,
            path,
            json: None,
            long_poll: None,
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: &'a [u8]) -> Request<'a> {
        self.json = Some(body);
        self
    }

    /// As a long poll that the service may hold for `wait`.
    pub fn long_poll(mut self, wait: Duration) -> Request<'a> {
        self.long_poll = Some(wait);
        self
    }
}

/// The answer to a conditional `GET` ([`Transport::get_conditional`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conditional {
    /// A 2xx: the body, and the `ETag` to send next time, if any.
    Modified {
        /// The body.
        body: Vec<u8>,
        /// The response's `ETag`.
        etag: Option<String>,
    },
    /// `304 Not Modified`: what the caller has is current.
    NotModified,
    /// `404`.
    NotFound,
}

/// Sends requests to the service. Implement it to run the clients over
/// something else than [`HttpTransport`] (a test double, another HTTP stack).
pub trait Transport: Send + Sync {
    /// Sends `request`. `Ok(Some(body))` for any 2xx, `Ok(None)` for 404;
    /// other statuses are errors: 401/403 [`ClientError::Unauthorized`], 429
    /// (and 503 with `Retry-After`) [`ClientError::RateLimited`], the rest
    /// [`ClientError::Status`].
    fn send(&self, request: &Request<'_>) -> Result<Option<Vec<u8>>, ClientError>;

    /// `GET endpoint+path` with `If-None-Match: etag` when one is given (the
    /// identity verifier's key refresh). Errors as [`Transport::send`]. The
    /// default sends an unconditional `GET` through `send` and reports no
    /// `ETag`, so a transport that only implements `send` still works.
    fn get_conditional(
        &self,
        endpoint: &str,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, ClientError> {
        let _ = etag;
        Ok(
            match self.send(&Request::new(Method::Get, endpoint, path))? {
                Some(body) => Conditional::Modified { body, etag: None },
                None => Conditional::NotFound,
            },
        )
    }
}

/// The ureq transport, built from a [`ServiceConfig`].
pub struct HttpTransport {
    agent: ureq::Agent,
    config: ServiceConfig,
    per_phase: Duration,
    max_response_bytes: u64,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// An agent with the config's timeouts, proxy and TLS roots; the
    /// defaults of the lookup client for what the config leaves unset.
    pub fn new(config: &ServiceConfig) -> HttpTransport {
        Self::with_defaults(
            config,
            DEFAULT_PER_PHASE_TIMEOUT,
            DEFAULT_MAX_RESPONSE_BYTES,
        )
    }

    /// An agent with `per_phase` and `max_response_bytes` as defaults for
    /// what the config leaves unset (the replica's are larger).
    pub(crate) fn with_defaults(
        config: &ServiceConfig,
        per_phase: Duration,
        max_response_bytes: u64,
    ) -> HttpTransport {
        let per_phase = config.per_phase_timeout().unwrap_or(per_phase);
        let mut builder = ureq::Agent::config_builder()
            .timeout_connect(Some(config.connect_timeout()))
            .timeout_send_request(Some(per_phase))
            .timeout_recv_response(Some(per_phase))
            .timeout_recv_body(Some(per_phase))
            .timeout_global(config.total_timeout())
            .http_status_as_error(false)
            .max_redirects(0)
            // Below the reference service's 10 s idle close, so a pooled
            // connection is not reused in the instant the server closes it.
            .max_idle_age(Duration::from_secs(5))
            .proxy(config.proxy().cloned())
            .user_agent(concat!("envid/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = config.tls() {
            builder = builder.tls_config(tls.clone());
        }
        HttpTransport {
            agent: builder.build().into(),
            config: config.clone(),
            per_phase,
            max_response_bytes: config.max_response_bytes().unwrap_or(max_response_bytes),
        }
    }

    fn map_err(&self, endpoint: &str, e: ureq::Error) -> ClientError {
        let endpoint = endpoint.to_string();
        match e {
            ureq::Error::Timeout(_) => ClientError::Timeout {
                endpoint,
                timeout: self.per_phase,
            },
            ureq::Error::BodyExceedsLimit(limit) => ClientError::TooLarge { endpoint, limit },
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => ClientError::Connect {
                endpoint,
                message: e.to_string(),
            },
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::NotConnected => ClientError::Connect {
                    endpoint,
                    message: io.to_string(),
                },
                std::io::ErrorKind::TimedOut => ClientError::Timeout {
                    endpoint,
                    timeout: self.per_phase,
                },
                _ => ClientError::Io {
                    endpoint,
                    message: io.to_string(),
                },
            },
            other => ClientError::Io {
                endpoint,
                message: other.to_string(),
            },
        }
    }

    /// Reads a response: status mapping (any 2xx is success, 404 is `None`),
    /// size cap, and the body.
    fn body(
        &self,
        endpoint: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let mut resp = result.map_err(|e| self.map_err(endpoint, e))?;
        let status = resp.status().as_u16();
        let endpoint_s = endpoint.to_string();
        match status {
            200..=299 => {}
            404 => return Ok(None),
            401 | 403 => {
                return Err(ClientError::Unauthorized {
                    endpoint: endpoint_s,
                    status,
                    token_sent: self.config.token().is_some(),
                })
            }
            429 | 503 if resp.headers().contains_key("retry-after") || status == 429 => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(ClientError::RateLimited {
                    endpoint: endpoint_s,
                    retry_after,
                });
            }
            _ => {
                return Err(ClientError::Status {
                    endpoint: endpoint_s,
                    status,
                })
            }
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| self.map_err(endpoint, e))?;
        Ok(Some(bytes))
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.config.token() {
            Some(t) => req.header("authorization", format!("Bearer {}", t.expose())),
            None => req,
        }
    }

    fn send_with_body(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
        json: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let req = self.auth(req);
        match json {
            Some(body) => req.header("content-type", "application/json").send(body),
            None => req.send_empty(),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&self, r: &Request<'_>) -> Result<Option<Vec<u8>>, ClientError> {
        let url = format!("{}{}", r.endpoint, r.path);
        let result = match r.method {
            Method::Get => {
                let req = self.auth(self.agent.get(&url));
                match r.long_poll {
                    None => req.call(),
                    Some(wait) => {
                        // The response head comes only when the wait is
                        // over: its bound (and the total) must cover it.
                        let head = wait + self.per_phase;
                        let total = wait + self.config.total_timeout().unwrap_or(self.per_phase);
                        req.config()
                            .timeout_recv_response(Some(head))
                            .timeout_global(Some(total))
                            .build()
                            .call()
                    }
                }
            }
            Method::Delete => self.auth(self.agent.delete(&url)).call(),
            Method::Post => self.send_with_body(self.agent.post(&url), r.json),
            Method::Put => self.send_with_body(self.agent.put(&url), r.json),
        };
        self.body(r.endpoint, result)
    }

    fn get_conditional(
        &self,
        endpoint: &str,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, ClientError> {
        let mut req = self.auth(self.agent.get(format!("{endpoint}{path}")));
        if let Some(etag) = etag {
            req = req.header("if-none-match", etag);
        }
        let resp = req.call().map_err(|e| self.map_err(endpoint, e))?;
        if resp.status().as_u16() == 304 {
            return Ok(Conditional::NotModified);
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(match self.body(endpoint, Ok(resp))? {
            Some(body) => Conditional::Modified { body, etag },
            None => Conditional::NotFound,
        })
    }
}

/// A response body as the protocol's JSON, else [`ClientError::Decode`]
/// naming the endpoint.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    bytes: &[u8],
) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

/// A 404 where the protocol always answers.
pub(crate) fn not_found(endpoint: &str) -> ClientError {
    ClientError::Status {
        endpoint: endpoint.to_string(),
        status: 404,
    }
}
