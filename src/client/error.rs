//! [`ClientError`], the one error of every client of the service.

use std::time::Duration;

/// Why a client of the service failed: the one error of
/// [`ServiceConfigBuilder::build`](super::ServiceConfigBuilder::build), the
/// lookup client, the replica and the registrar (it was called
/// `LookupError`, after the first of them). Every variant that involves a
/// request names the endpoint; none ever contains the bearer token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The client was built without endpoints, or with one that is not an
    /// `http://` or `https://` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// A setting of a [`ServiceConfig`](super::ServiceConfig) other than the
    /// endpoints was refused: the proxy URL, the CA file, a zero timeout or
    /// size cap.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting, as the builder names it (`proxy`, `ca_file`,
        /// `connect_timeout`, `per_phase_timeout`, `total_timeout`,
        /// `max_response_bytes`).
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Not an IP address (CLI and FFI input).
    #[error("invalid IP address {input:?}")]
    InvalidIp {
        /// The text given.
        input: String,
    },
    /// The TCP or TLS connection could not be made.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport's reason.
        message: String,
    },
    /// A timeout passed: the connect timeout, one phase's per-phase timeout
    /// (`timeout` is the per-phase one), or the opt-in total deadline.
    #[error("{endpoint} did not answer within {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The service wants a token and none was sent, or it refused the one
    /// sent (401/403).
    #[error("{endpoint} {} (HTTP {status})", if *token_sent { "refused the token" } else { "needs a token and none was sent" })]
    Unauthorized {
        /// The endpoint.
        endpoint: String,
        /// 401 or 403.
        status: u16,
        /// Whether the request carried a bearer token: without one, the
        /// caller must configure it; with one, it is the wrong token.
        token_sent: bool,
    },
    /// The service is shedding load (429); it asked to wait this long.
    #[error("{endpoint} is shedding load (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The endpoint.
        endpoint: String,
        /// The `Retry-After` it sent.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected HTTP status.
    #[error("{endpoint} answered HTTP {status}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
    },
    /// The response body was larger than the configured cap.
    #[error("{endpoint} sent a response larger than {limit} bytes")]
    TooLarge {
        /// The endpoint.
        endpoint: String,
        /// The cap.
        limit: u64,
    },
    /// The response body was not the protocol's JSON.
    #[error("{endpoint} sent an invalid response: {message}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
    /// The connection broke while the response was read.
    #[error("{endpoint}: connection failed during the response: {message}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The transport's reason.
        message: String,
    },
    /// A replica could not get the registry from the service at start, and
    /// its cache file could not stand in: missing, corrupt or unreadable
    /// (each said as such, beside the service's own error).
    #[error("{service}; and the cache file {path} {problem}")]
    NoReplicaData {
        /// Why the service gave nothing (every endpoint was tried).
        service: Box<ClientError>,
        /// The cache file.
        path: String,
        /// What is wrong with it.
        problem: CacheProblem,
    },
    /// Every endpoint's circuit breaker is open: no request was sent.
    #[error(
        "lookup service unavailable (circuit open for every endpoint; next probe in {retry_in:?})"
    )]
    CircuitOpen {
        /// Until the first breaker lets a probe through.
        retry_in: Duration,
    },
}

/// What is wrong with a replica's cache file (see [`ClientError::NoReplicaData`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheProblem {
    /// There is no such file (never written, or removed).
    #[error("is missing")]
    Missing,
    /// The file is there but is not a replica cache (cut short, another
    /// format, a record without a key).
    #[error("is corrupt: {0}")]
    Corrupt(String),
    /// The file could not be read (permissions, I/O).
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

impl ClientError {
    /// Whether another attempt (after a backoff, or at another endpoint) may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::Io { .. }
            | ClientError::RateLimited { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether it counts against the endpoint's circuit breaker: the
    /// endpoint is down, slow, overloaded or broken, not the request.
    pub fn counts_as_failure(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                ClientError::Decode { .. } | ClientError::TooLarge { .. }
            )
    }
}
