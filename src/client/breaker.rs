//! A per-endpoint circuit breaker.
//!
//! Closed: requests flow; `threshold` consecutive failures open it. Open: no
//! request is sent until `cool_down` has passed (or a `Retry-After` the
//! endpoint asked for). Then one probe is let through (half open): success
//! closes it, failure opens it for another cool-down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker of one endpoint.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cool_down: Duration,
}

/// What [`Breaker::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Send the request.
    Yes,
    /// Do not: the breaker is open for this much longer.
    No(Duration),
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    /// May a request go to this endpoint now? In half-open state only the
    /// first caller gets through (the probe); others wait out the probe.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *s {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } if now >= until => {
                *s = State::HalfOpen;
                Admit::Yes
            }
            State::Open { until } => Admit::No(until - now),
            // A probe is in flight; treat as open for a short while.
            State::HalfOpen => Admit::No(Duration::from_millis(50).min(self.cool_down)),
        }
    }

    /// The request succeeded.
    pub(crate) fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = State::Closed { failures: 0 };
    }

    /// The request failed; `hold` is a `Retry-After` to honour, if any.
    pub(crate) fn failure(&self, now: Instant, hold: Option<Duration>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = |d: Duration| State::Open { until: now + d };
        *s = match (*s, hold) {
            (_, Some(h)) => open(h.max(self.cool_down)),
            (State::HalfOpen, None) | (State::Open { .. }, None) => open(self.cool_down),
            (State::Closed { failures }, None) if failures + 1 >= self.threshold => {
                open(self.cool_down)
            }
            (State::Closed { failures }, None) => State::Closed {
                failures: failures + 1,
            },
        };
    }

    /// True when requests currently flow (closed).
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Closed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cool_down() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.failure(t0, None);
            assert_eq!(b.admit(t0), Admit::Yes);
        }
        b.failure(t0, None);
        assert!(matches!(b.admit(t0), Admit::No(_)));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(later), Admit::Yes, "the probe");
        assert!(matches!(b.admit(later), Admit::No(_)), "only one probe");
        b.failure(later, None);
        assert!(matches!(b.admit(later), Admit::No(_)));
        let much_later = later + Duration::from_secs(11);
        assert_eq!(b.admit(much_later), Admit::Yes);
        b.success();
        assert!(b.is_closed());
    }

    #[test]
    fn retry_after_holds_it_open_at_least_that_long() {
        let b = Breaker::new(5, Duration::from_secs(1));
        let t0 = Instant::now();
        b.failure(t0, Some(Duration::from_secs(30)));
        assert!(matches!(
            b.admit(t0 + Duration::from_secs(29)),
            Admit::No(_)
        ));
        assert_eq!(b.admit(t0 + Duration::from_secs(31)), Admit::Yes);
    }
}
