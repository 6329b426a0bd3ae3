//! The replica's protection against mass deletion (see the [replica
//! documentation](super)): the recent normal record count, and the
//! decision, each time the service says something, to serve what it says
//! or the last healthy view plus every new record, holding the deletes.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::settings::Settings;
use super::view::ReplicaView;
use crate::protocol::{RecordKey, RegistryDelta};

/// Protection against mass deletion: the recent normal count, and while
/// protected, the service's own view beside the one served.
#[derive(Default)]
pub(crate) struct Protection {
    /// (bucket start, largest count seen in it), oldest first.
    buckets: VecDeque<(Instant, usize)>,
    /// While protected: the service's view (the served one holds more).
    pub(crate) actual: Option<Arc<ReplicaView>>,
    /// While protected: keys served that the service deleted.
    pub(crate) held: HashSet<RecordKey>,
    /// When the current protection started.
    pub(crate) since: Option<SystemTime>,
}

/// What [`Protection::judge`] decided the replica serves.
pub(crate) enum Verdict {
    /// The service's view, as it is.
    Trust,
    /// This view instead: the last one served plus every new or changed
    /// record, the service's deletes held. `entering`: protection began now.
    Protect {
        served: Arc<ReplicaView>,
        entering: bool,
    },
}

impl Protection {
    /// Records a count the service gave; forgets buckets past the window.
    pub(crate) fn observe(&mut self, count: usize, s: &Settings) {
        let now = Instant::now();
        let bucket = (s.protection_window / 36).max(Duration::from_millis(1));
        match self.buckets.back_mut() {
            Some((start, max)) if now.duration_since(*start) < bucket => *max = (*max).max(count),
            _ => self.buckets.push_back((now, count)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| now.duration_since(*start) > s.protection_window)
            && self.buckets.len() > 1
        {
            self.buckets.pop_front();
        }
    }

    /// The largest count within the window.
    pub(crate) fn normal(&self) -> usize {
        self.buckets.iter().map(|b| b.1).max().unwrap_or(0)
    }

    /// Whether the service's view having `count` records would be
    /// protected against, by the counts observed so far (entering below
    /// `enter` × normal, staying below `leave` × normal). Observing `count`
    /// first can only lower the normal count or make it `count`, so a
    /// `false` here stays `false` after [`observe`](Self::observe).
    pub(crate) fn would_protect(&self, count: usize, s: &Settings) -> bool {
        let normal = self.normal();
        let guarded = s.protection && normal >= s.protection_min_records.max(1);
        let count = count as f64;
        guarded
            && if self.actual.is_some() {
                count < s.protection_leave * normal as f64
            } else {
                count < s.protection_enter * normal as f64
            }
    }

    /// Judges the service's view `actual` (reached by `delta` from the
    /// last one, or a whole snapshot when `delta` is `None`) against the
    /// normal count, and says what to serve instead of `served_before`.
    pub(crate) fn judge(
        &mut self,
        actual: &Arc<ReplicaView>,
        delta: Option<RegistryDelta>,
        served_before: &ReplicaView,
        s: &Settings,
    ) -> Result<Verdict, String> {
        self.observe(actual.len(), s);
        if !self.would_protect(actual.len(), s) {
            self.since = None;
            self.actual = None;
            self.held.clear();
            return Ok(Verdict::Trust);
        }
        let entering = self.actual.is_none();
        // The served view: the last one plus every new or changed
        // record; what the service deleted stays, held.
        let served = match (delta, entering) {
            (Some(d), false) => {
                for k in &d.deletes {
                    if served_before.get(k).is_some() {
                        self.held.insert(*k);
                    }
                }
                for r in &d.upserts {
                    if let Some(k) = r.key() {
                        self.held.remove(&k);
                    }
                }
                served_before.apply(d.version, d.upserts, &[])?
            }
            _ => {
                let mut next = served_before.apply(
                    actual.version,
                    actual.records().map(|r| (**r).clone()).collect(),
                    &[],
                )?;
                next.version = actual.version;
                self.held = served_before
                    .records
                    .keys()
                    .filter(|k| actual.get(k).is_none())
                    .copied()
                    .collect();
                next
            }
        };
        if entering {
            self.since = Some(SystemTime::now());
        }
        self.actual = Some(actual.clone());
        Ok(Verdict::Protect {
            served: Arc::new(served),
            entering,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_count_is_the_largest_within_the_window() {
        let s = Settings {
            protection_window: Duration::from_millis(360),
            ..Settings::default()
        };
        let mut g = Protection::default();
        g.observe(100, &s);
        g.observe(40, &s);
        g.observe(200, &s);
        g.observe(100, &s);
        // The largest count, not an accumulation of what was seen.
        assert_eq!(g.normal(), 200);
        std::thread::sleep(Duration::from_millis(400));
        g.observe(40, &s);
        assert_eq!(g.normal(), 40, "older buckets left the window");
    }
}
