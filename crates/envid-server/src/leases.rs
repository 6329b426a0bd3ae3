//! Lease expiry and lease self-preservation (see README.md, "Protection
//! against mass deletion").
//!
//! Every `expiry_interval` the [`Sweeper`] asks the store which leases are
//! due ([`RegistryStore::lease_due`]) and ends them as one version
//! ([`RegistryStore::expire`]), unless **self-preservation** holds them:
//! when more than 15% of the live leases lapse within one lease period,
//! renewals collapsed fleet-wide, which is far likelier the network or the
//! service than the fleet, so leases stop expiring until renewals recover.
//! The sweeper owns what it decides ([`Preservation`]); `/healthz` only
//! reads it, and the log and `/metrics` say it too.
//!
//! With the etcd store leases end inside etcd, where the service cannot
//! hold them back: its `lease_due` has nothing due, and the replicas'
//! protection covers what etcd expires.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::protection::InForce;
use crate::store::{now_unix_ms, RegistryStore};

/// Share of live leases whose lapse within one lease period starts
/// self-preservation (Eureka's threshold is the complement, 85%).
const LAPSE_THRESHOLD: f64 = 0.15;
/// Fewer leases than this are never preserved: a fraction of a handful
/// of registrations says nothing about the fleet.
const MIN_LEASES: usize = 10;

/// Lease self-preservation in force, as `/healthz` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Preserving {
    /// When it started.
    pub(crate) since_unix_ms: u64,
    /// Leases past their end, kept.
    pub(crate) held: usize,
    /// Registrations (held ones included).
    pub(crate) live: usize,
}

/// Whether self-preservation is in force: written by the sweeper only.
pub(crate) type Preservation = InForce<Preserving>;

/// The lease sweep (see the module docs).
pub(crate) struct Sweeper {
    store: Arc<dyn RegistryStore>,
    metrics: Arc<Metrics>,
    /// `None` when self-preservation is turned off.
    lapses: Option<Lapses>,
    preservation: Arc<Preservation>,
}

impl Sweeper {
    /// A sweeper of `store`'s leases; with `preserve`, self-preservation
    /// is on and said in `preservation`.
    pub(crate) fn new(
        store: Arc<dyn RegistryStore>,
        metrics: Arc<Metrics>,
        preserve: bool,
        preservation: Arc<Preservation>,
    ) -> Sweeper {
        Sweeper {
            store,
            metrics,
            lapses: preserve.then(Lapses::default),
            preservation,
        }
    }

    /// One sweep: expire the due leases, or hold them.
    pub(crate) fn sweep(&mut self) {
        let now = now_unix_ms();
        let due = self.store.lease_due(now);
        if let Some(lapses) = &mut self.lapses {
            match lapses.decide(now, due.live, due.due) {
                Sweep::Hold(started) => {
                    if started {
                        tracing::warn!(
                            due = due.due,
                            live = due.live,
                            "lease self-preservation: more than 15% of the leases lapsed \
                             within one lease period; leases stop expiring until renewals recover"
                        );
                    }
                    self.metrics.preservation(true, due.due);
                    self.preservation.set(Some(Preserving {
                        since_unix_ms: lapses.since().unwrap_or(now),
                        held: due.due,
                        live: due.live,
                    }));
                    return;
                }
                Sweep::Resume => {
                    tracing::info!(
                        due = due.due,
                        live = due.live,
                        "lease self-preservation ended: renewals recovered; expiring the rest"
                    );
                    self.metrics.preservation(false, 0);
                    self.preservation.set(None);
                }
                Sweep::Expire => {}
            }
        }
        if due.due == 0 {
            return;
        }
        let (expired, change) = self.store.expire(now);
        if let Some(lapses) = &mut self.lapses {
            lapses.expired(now, expired.len(), due.longest_ms);
        }
        if !expired.is_empty() {
            self.metrics.expiries.inc_by(expired.len() as u64);
            if let Some(c) = change {
                tracing::info!(
                    expired = expired.len(),
                    version = c.version,
                    "leases expired"
                );
            }
        }
    }
}

/// The sweeper's memory: recent lapses, each kept for one lease period of
/// its own.
#[derive(Debug, Default)]
struct Lapses {
    /// (until when it counts, ms; how many leases lapsed).
    recent: VecDeque<(u64, usize)>,
    since: Option<u64>,
}

/// What the sweeper should do now.
#[derive(Debug, PartialEq, Eq)]
enum Sweep {
    /// Expire the due leases.
    Expire,
    /// Keep them: self-preservation (`true` when it starts now).
    Hold(bool),
    /// Self-preservation just ended: expire the due leases.
    Resume,
}

impl Lapses {
    /// Decides for one sweep at `now_ms`: `live` registrations, `due` of
    /// them past their end.
    fn decide(&mut self, now_ms: u64, live: usize, due: usize) -> Sweep {
        while self
            .recent
            .front()
            .is_some_and(|(until, _)| *until <= now_ms)
        {
            self.recent.pop_front();
        }
        let lapsed: usize = self.recent.iter().map(|(_, n)| n).sum();
        let population = live + lapsed;
        if self.since.is_some() {
            // Renewals recovered: what is still due is a normal share.
            if (due as f64) <= LAPSE_THRESHOLD * live as f64 || live < MIN_LEASES {
                self.since = None;
                self.recent.clear();
                return Sweep::Resume;
            }
            return Sweep::Hold(false);
        }
        if due > 0
            && population >= MIN_LEASES
            && (lapsed + due) as f64 > LAPSE_THRESHOLD * population as f64
        {
            self.since = Some(now_ms);
            return Sweep::Hold(true);
        }
        Sweep::Expire
    }

    /// `n` leases of at most `lease_ms` expired at `now_ms`.
    fn expired(&mut self, now_ms: u64, n: usize, lease_ms: u64) {
        if n > 0 {
            self.recent.push_back((now_ms.saturating_add(lease_ms), n));
        }
    }

    fn since(&self) -> Option<u64> {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lapses_expire_a_collapse_is_held_until_renewals_recover() {
        let mut l = Lapses::default();
        // 1 of 100 due: expire.
        assert_eq!(l.decide(0, 100, 1), Sweep::Expire);
        l.expired(0, 1, 10_000);
        // 14 more within the lease period: 15 of 100, not more than 15%.
        assert_eq!(l.decide(1_000, 99, 14), Sweep::Expire);
        l.expired(1_000, 14, 10_000);
        // One more: 16%.
        assert_eq!(l.decide(2_000, 85, 1), Sweep::Hold(true));
        assert_eq!(l.decide(3_000, 85, 60), Sweep::Hold(false));
        assert_eq!(l.since(), Some(2_000));
        // Renewals are back: 5 of 85 still due.
        assert_eq!(l.decide(4_000, 85, 5), Sweep::Resume);
        assert_eq!(l.since(), None);
        // Old lapses leave the window after their lease period.
        assert_eq!(l.decide(100_000, 80, 1), Sweep::Expire);
        // A small registry is never held.
        let mut small = Lapses::default();
        assert_eq!(small.decide(0, 5, 5), Sweep::Expire);
    }
}
