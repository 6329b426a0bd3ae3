//! The reference environment service (DESIGN.md, "The IP lookup protocol").
//! STUB: the public API below is the contract the CLI and the lookup tests use.
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to run the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// The TOML registry file.
    pub registry_path: PathBuf,
    /// Where to listen; port 0 picks an ephemeral port.
    pub listen: SocketAddr,
    /// Bearer token required on every endpoint but `/healthz` when set.
    pub token: Option<String>,
    /// How often the registry file is checked for changes.
    pub reload_interval: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most IPs in one `POST /v1/hosts/lookup`.
    pub max_batch: usize,
}

impl Config {
    /// Defaults: 127.0.0.1:7070, no token, 1 s reload check, 256 KiB bodies, 1,000 IPs a batch.
    pub fn new(registry_path: impl Into<PathBuf>) -> Config {
        Config {
            registry_path: registry_path.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: None,
            reload_interval: Duration::from_secs(1),
            max_body_bytes: 256 * 1024,
            max_batch: 1000,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The registry file is missing or invalid at start.
    #[error("registry: {0}")]
    Registry(String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A service running on its own runtime thread (tests, embedding).
#[derive(Debug)]
pub struct ServerHandle {}

impl ServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        unimplemented!()
    }
    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr())
    }
    /// Stops accepting, drains in-flight requests, and joins the runtime thread.
    pub fn shutdown(self) {}
}

/// Binds (before returning) and serves on a background thread with its own runtime.
pub fn spawn(config: Config) -> Result<ServerHandle, ServerError> {
    let _ = config;
    unimplemented!()
}

/// Serves in the foreground until SIGTERM or Ctrl-C (the `envid serve` command).
pub fn run_blocking(config: Config) -> Result<(), ServerError> {
    let _ = config;
    unimplemented!()
}
