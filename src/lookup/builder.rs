//! [`LookupClientBuilder`]: the cache, retry and breaker settings of a
//! [`LookupClient`], over the connection settings of a [`ServiceConfig`].

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;

use super::{Counters, EndpointState, LookupClient};
use crate::client::breaker::Breaker;
use crate::client::setter;
use crate::client::{self, ClientError, ServiceConfig};

/// The cache, retry and breaker settings of a client (the connection
/// settings are its [`ServiceConfig`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    pub(super) ttl: Duration,
    pub(super) negative_ttl: Duration,
    pub(super) error_ttl: Duration,
    pub(super) max_stale: Duration,
    pub(super) capacity: usize,
    pub(super) max_retries: u32,
    pub(super) backoff: Duration,
    pub(super) breaker_threshold: u32,
    pub(super) breaker_cool_down: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            error_ttl: Duration::from_secs(1),
            max_stale: Duration::from_secs(3600),
            capacity: 100_000,
            max_retries: 1,
            backoff: Duration::from_millis(100),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(5),
        }
    }
}

/// Builds a [`LookupClient`] from a [`ServiceConfig`]: the cache, retry and
/// breaker settings.
#[derive(Clone, Debug)]
pub struct LookupClientBuilder {
    config: ServiceConfig,
    settings: Settings,
}

impl LookupClientBuilder {
    pub(super) fn new(config: ServiceConfig) -> LookupClientBuilder {
        LookupClientBuilder {
            config,
            settings: Settings::default(),
        }
    }

    setter!(/// How long a known answer is fresh (default 5 min).
        ttl: Duration);
    setter!(/// How long an "unknown IP" answer is fresh (default 30 s).
        negative_ttl: Duration);
    setter!(/// How long a failure is remembered before the next attempt (default 1 s).
        error_ttl: Duration);
    setter!(/// Oldest answer served when the service fails (default 1 h).
        max_stale: Duration);
    setter!(/// Most IPs cached (default 100,000).
        capacity: usize);
    setter!(/// Retries per lookup after the first attempt (default 1).
        max_retries: u32);
    setter!(/// Base backoff before a retry, jittered ×0.5–1.5 (default 100 ms).
        backoff: Duration);
    setter!(/// Consecutive failures that open an endpoint's breaker (default 5).
        breaker_threshold: u32);
    setter!(/// How long an open breaker refuses requests (default 5 s).
        breaker_cool_down: Duration);

    /// Builds the client with the [`HttpTransport`](client::HttpTransport)
    /// of its config.
    pub fn build(self) -> Result<LookupClient, ClientError> {
        let transport = client::HttpTransport::new(&self.config);
        self.build_with_transport(Arc::new(transport))
    }

    /// Builds the client over another transport (the config's endpoints
    /// are still the ones asked, in its order).
    pub fn build_with_transport(
        self,
        transport: Arc<dyn client::Transport>,
    ) -> Result<LookupClient, ClientError> {
        let s = self.settings;
        let endpoints = self
            .config
            .endpoints()
            .iter()
            .map(|url| EndpointState {
                url: url.clone(),
                breaker: Breaker::new(s.breaker_threshold, s.breaker_cool_down),
            })
            .collect();
        Ok(LookupClient {
            fresh: Cache::new(s.capacity.max(1)),
            known: Cache::new(s.capacity.max(1)),
            endpoints,
            transport,
            counters: Counters::default(),
            settings: s,
        })
    }
}
