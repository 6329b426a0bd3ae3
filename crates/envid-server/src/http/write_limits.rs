//! The limits on renewals and removals (issue 26): every renewal signs an
//! identity and appends to the state log, so one token could make
//! thousands a second; every removal answers whether an IP is static,
//! registered or someone else's, so an unlimited `DELETE` enumerates the
//! registry. Kept apart from `limits.rs` (load shedding and the `PUT`
//! limit) because these count per lease, not per fixed window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::RegistrationLimit;
use crate::config::Config;

/// The window a renewal is counted in before the lease is known (the first
/// renewal of a (caller, IP)): a minute, the registration window's default.
const FIRST_WINDOW: Duration = Duration::from_secs(60);

/// The renewal and removal limits.
#[derive(Debug)]
pub(crate) struct WriteLimits {
    /// Renewals per (caller, IP) per lease.
    pub(crate) renewals: RenewalLimit,
    /// `DELETE`s per (caller, IP), like `PUT`s.
    pub(crate) removals: RegistrationLimit,
}

impl WriteLimits {
    pub(crate) fn new(config: &Config) -> WriteLimits {
        WriteLimits {
            renewals: RenewalLimit::new(config.renew_limit),
            removals: RegistrationLimit::new(config.register_limit, config.register_window),
        }
    }

    /// Forgets idle windows (at most once a second, as the `PUT` limit).
    pub(crate) fn prune(&self) {
        if self.removals.prune() {
            self.renewals.prune();
        }
    }
}

/// One (caller, IP)'s renewals.
#[derive(Debug)]
struct Window {
    /// The lease of the registration renewed: the window's length.
    span: Duration,
    times: VecDeque<Instant>,
}

/// At most `per_lease` renewals per (caller, IP) within one lease length (a
/// sliding window as long as the registration's lease): generous for a
/// registrar that renews a few times a lease and retries, and a bound on
/// what a token can make the service sign and write.
#[derive(Debug)]
pub(crate) struct RenewalLimit {
    per_lease: usize,
    windows: Mutex<HashMap<(String, IpAddr), Window>>,
}

impl RenewalLimit {
    pub(crate) fn new(per_lease: usize) -> RenewalLimit {
        RenewalLimit {
            per_lease,
            windows: Mutex::default(),
        }
    }

    /// Counts one renewal of `ip` by `caller`, or says how long until the
    /// window has room (and counts nothing). 0 means no limit.
    pub(crate) fn admit(&self, caller: &str, ip: IpAddr) -> Result<(), Duration> {
        if self.per_lease == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows
            .entry((caller.to_owned(), ip))
            .or_insert_with(|| Window {
                span: FIRST_WINDOW,
                times: VecDeque::new(),
            });
        while w
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= w.span)
        {
            w.times.pop_front();
        }
        if w.times.len() >= self.per_lease {
            let oldest = w.times[w.times.len() - self.per_lease];
            return Err(w.span.saturating_sub(now.duration_since(oldest)));
        }
        w.times.push_back(now);
        Ok(())
    }

    /// The lease of the registration `caller` renewed: the window from now on.
    pub(crate) fn learn(&self, caller: &str, ip: IpAddr, lease_seconds: u64) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = windows.get_mut(&(caller.to_owned(), ip)) {
            w.span = Duration::from_secs(lease_seconds.max(1));
        }
    }

    fn prune(&self) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, w| w.times.back().is_some_and(|t| t.elapsed() < w.span));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_counted_per_lease() {
        let l = RenewalLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.admit("app:web", ip).is_ok());
        l.learn("app:web", ip, 1);
        assert!(l.admit("app:web", ip).is_ok());
        let wait = l.admit("app:web", ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another caller of the IP has its own window.
        assert!(l.admit("operator:release", ip).is_ok());
        std::thread::sleep(Duration::from_millis(1050));
        assert!(l.admit("app:web", ip).is_ok());
        assert!(RenewalLimit::new(0).admit("x", ip).is_ok());
    }
}
