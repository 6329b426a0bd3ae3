//! Protection of the served registry against mass deletion (see README.md,
//! "Protection against mass deletion"):
//!
//! * a registry file reload that would delete more than half of the static
//!   records (an empty or truncated file) is refused unless
//!   [`Config::allow_mass_delete`](crate::Config::allow_mass_delete) is set;
//!   the old registry keeps serving;
//! * **lease self-preservation**: when more than 15% of the live leases
//!   lapse within one lease period (renewals collapsed fleet-wide, which is
//!   far likelier the network or the service than the fleet), leases stop
//!   expiring until renewals recover.
//!
//! Both are said on the log, `/healthz` and `/metrics`; [`Guard`] holds
//! what those show.
//!
//! With an etcd store (not built yet), leases expire inside etcd, where the
//! service cannot hold them back: that store will keep its own leases alive
//! (renewing the etcd leases of registrations itself) while its renewal
//! traffic looks collapsed by the same rule, and the replicas' protection
//! covers what etcd expires anyway.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Share of live leases whose lapse within one lease period starts
/// self-preservation (Eureka's threshold is the complement, 85%).
pub(crate) const LAPSE_THRESHOLD: f64 = 0.15;
/// Fewer leases than this are never preserved: a fraction of a handful
/// of registrations says nothing about the fleet.
pub(crate) const MIN_LEASES: usize = 10;

/// A refused reload, as `/healthz` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RefusedReload {
    /// Why, in a sentence.
    pub(crate) message: String,
    /// Static records being served.
    pub(crate) static_records: usize,
    /// How many of them the file would delete.
    pub(crate) would_delete: usize,
    /// When it was first refused.
    pub(crate) since_unix_ms: u64,
}

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

/// What protection is doing now.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    pub(crate) refused: Mutex<Option<RefusedReload>>,
    pub(crate) preserving: Mutex<Option<Preserving>>,
}

impl Guard {
    pub(crate) fn refused(&self) -> Option<RefusedReload> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn preserving(&self) -> Option<Preserving> {
        self.preserving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Whether a reload that deletes `would_delete` of `static_records` is a
/// mass deletion (more than half; an empty file deletes them all).
pub(crate) fn is_mass_delete(static_records: usize, would_delete: usize) -> bool {
    would_delete > 0 && would_delete * 2 > static_records
}

/// The lease sweeper's memory: recent lapses, each kept for one lease
/// period of its own.
#[derive(Debug, Default)]
pub(crate) struct Lapses {
    /// (until when it counts, ms; how many leases lapsed).
    recent: VecDeque<(u64, usize)>,
    since: Option<u64>,
}

/// What the sweeper should do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// Expire the due leases.
    Expire,
    /// Keep them: self-preservation (`true` when it starts now).
    Hold(bool),
    /// Self-preservation just ended: expire the due leases.
    Resume,
}

impl Lapses {
    /// Decides for one sweep at `now_ms`: `live` registrations, `due` of
    /// them past their end, the longest lease among the due ones.
    pub(crate) fn decide(&mut self, now_ms: u64, live: usize, due: usize) -> Sweep {
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
    pub(crate) fn expired(&mut self, now_ms: u64, n: usize, lease_ms: u64) {
        if n > 0 {
            self.recent.push_back((now_ms.saturating_add(lease_ms), n));
        }
    }

    pub(crate) fn since(&self) -> Option<u64> {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_delete_is_more_than_half() {
        assert!(is_mass_delete(10, 10));
        assert!(is_mass_delete(10, 6));
        assert!(!is_mass_delete(10, 5));
        assert!(is_mass_delete(1, 1));
        assert!(!is_mass_delete(0, 0));
    }

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
