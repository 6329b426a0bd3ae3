//! Whether each etcd endpoint accepts connections, for the console's
//! Health page and `GET /v1/status` (`StoreStatus::members`).
//!
//! A TCP connect rather than an etcd request per member: etcd-client
//! balances over the endpoints and cannot aim a request at one, and a
//! client of its own per member would authenticate (a bcrypt on etcd's
//! side) at every check. Reaching the port says a member is up; whether it
//! serves us is `/healthz`'s `status` and the last error.

use std::sync::Arc;
use std::time::Duration;

use super::EtcdStore;
use crate::store::{now_unix_ms, MemberStatus};

/// How often the endpoints are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long one connect may take before the member counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `host:port` of an endpoint URL (`http://h:2379`, `https://h:2379`, `h:2379`).
fn host_port(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

impl EtcdStore {
    /// Checks every endpoint, every [`CHECK_INTERVAL`], for as long as the
    /// store runs.
    pub(super) async fn check_members(self: Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut checked = Vec::with_capacity(self.config.endpoints.len());
            for endpoint in &self.config.endpoints {
                let connect = tokio::net::TcpStream::connect(host_port(endpoint));
                let reachable = matches!(
                    tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
                    Ok(Ok(_))
                );
                checked.push(MemberStatus {
                    endpoint: endpoint.clone(),
                    reachable: Some(reachable),
                    checked_unix_ms: Some(now_unix_ms()),
                });
            }
            *self.members.lock().unwrap_or_else(|e| e.into_inner()) = checked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn endpoints_become_host_and_port() {
        assert_eq!(host_port("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("https://etcd-1:2379/"), "etcd-1:2379");
        assert_eq!(host_port("etcd-2:2379"), "etcd-2:2379");
    }
}
