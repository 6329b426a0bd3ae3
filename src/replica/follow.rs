//! Following the registry: a snapshot, then long-polled deltas, each judged
//! by the protection against mass deletion. The one implementation of the
//! stream that both the replica (which serves the view) and
//! [`events`](crate::events) (which diffs it against what a consumer
//! believes) are built on, so `410`, another history, a service gone back
//! in time, endpoint rotation, backoff and protection behave the same for
//! both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protection::{Protection, Verdict};
use super::settings::Settings;
use super::view::ReplicaView;
use crate::client::{decode, not_found, ClientError, Method, Request, Transport};
use crate::protocol::{
    registry_poll_path, RecordKey, RegistryDelta, RegistrySnapshot, REGISTRY_PATH,
};

/// The stream's state: where it is, what it serves, and how it reaches
/// the service.
pub(crate) struct Follow {
    transport: Arc<dyn Transport>,
    /// The config's endpoints, tried in turn.
    endpoints: Vec<String>,
    /// Index of the endpoint in use.
    endpoint: usize,
    pub(crate) settings: Settings,
    need_snapshot: bool,
    /// The served view: the service's, unless protection holds deletes.
    view: Arc<ReplicaView>,
    pub(crate) protection: Protection,
    /// The next backoff after an error.
    backoff: Duration,
}

/// What one exchange with the service was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// A whole registry.
    Snapshot,
    /// A delta that changed something.
    Delta,
    /// A long poll that ended with no change (or a delta that had to be
    /// dropped: another history, an older version; a snapshot comes next).
    Empty,
    /// `410 Gone`: a snapshot comes next.
    Gone,
}

/// Which records of the served view may differ from before a step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    /// Only these keys (a delta while protection stayed off).
    Keys(Vec<RecordKey>),
    /// Any record (a snapshot, or protection starting, going on or ending).
    All,
}

/// The result of [`Follow::step`].
pub(crate) struct Step {
    pub(crate) exchange: Exchange,
    /// `None` when the served view is the same as before.
    pub(crate) changed: Option<Changed>,
    /// Protection began with this step.
    pub(crate) entered_protection: bool,
}

enum Fetched {
    Snapshot(ReplicaView),
    Delta(RegistryDelta),
    Gone,
}

impl Follow {
    pub(crate) fn new(
        transport: Arc<dyn Transport>,
        endpoints: Vec<String>,
        settings: Settings,
    ) -> Follow {
        let backoff = settings.backoff;
        Follow {
            transport,
            endpoints,
            endpoint: 0,
            settings,
            need_snapshot: true,
            view: Arc::new(ReplicaView::default()),
            protection: Protection::default(),
            backoff,
        }
    }

    /// Starts from `view` (a replica's cache file, the records a consumer
    /// of events believes in): its count is the normal one until the
    /// service says more, and it is what protection keeps serving if the
    /// first snapshot collapsed. A snapshot is still fetched first.
    pub(crate) fn start_from(&mut self, view: ReplicaView, normal: usize) {
        self.protection
            .observe(view.len().max(normal), &self.settings);
        self.view = Arc::new(view);
        self.need_snapshot = true;
    }

    /// The served view.
    pub(crate) fn view(&self) -> &Arc<ReplicaView> {
        &self.view
    }

    /// How many endpoints there are (the first snapshot tries each once).
    pub(crate) fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// One exchange with the current endpoint: a snapshot, or a long poll
    /// that the service may hold `wait` (whole seconds). `stopped` is asked
    /// between the answer and its use: a stopped owner installs nothing.
    /// On error moves to the next endpoint; the caller pauses
    /// [`pause`](Self::pause) either way.
    pub(crate) fn step(
        &mut self,
        wait: Duration,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Step, ClientError> {
        let endpoint = self.endpoints[self.endpoint % self.endpoints.len()].clone();
        let fetched = if self.need_snapshot {
            self.fetch_snapshot(&endpoint).map(Fetched::Snapshot)
        } else {
            let actual = self.actual();
            self.poll(&endpoint, actual.version, actual.history.as_deref(), wait)
        };
        if stopped() {
            return Ok(Step {
                exchange: Exchange::Empty,
                changed: None,
                entered_protection: false,
            });
        }
        let outcome = fetched.and_then(|f| {
            self.install(f).map_err(|message| ClientError::Decode {
                endpoint: endpoint.clone(),
                message,
            })
        });
        match &outcome {
            Ok(_) => self.backoff = self.settings.backoff,
            Err(_) => self.endpoint = self.endpoint.wrapping_add(1),
        }
        outcome
    }

    /// How long to wait before the next step, after one that started at
    /// `started` and ended `ok` or not: `min_poll_interval` between
    /// successes, a jittered exponential backoff after errors.
    pub(crate) fn pause(&mut self, ok: bool, started: Instant) -> Duration {
        if ok {
            return self
                .settings
                .min_poll_interval
                .saturating_sub(started.elapsed());
        }
        let pause = self
            .backoff
            .mul_f64(0.5 + fastrand::f64())
            .min(self.settings.max_backoff);
        self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
        pause
    }

    fn install(&mut self, fetched: Fetched) -> Result<Step, String> {
        let quiet = |exchange| Step {
            exchange,
            changed: None,
            entered_protection: false,
        };
        match fetched {
            Fetched::Snapshot(view) => {
                let step = self.publish(Arc::new(view), None)?;
                self.need_snapshot = false;
                Ok(Step {
                    exchange: Exchange::Snapshot,
                    ..step
                })
            }
            Fetched::Gone => {
                // Behind the retained history: the whole registry again, now.
                self.need_snapshot = true;
                Ok(quiet(Exchange::Gone))
            }
            Fetched::Delta(delta) => {
                let current = self.actual();
                if delta.history.is_some() && delta.history != current.history {
                    // A delta against another history (a service that forgot
                    // ours): never applied; start over from a snapshot.
                    self.need_snapshot = true;
                    Ok(quiet(Exchange::Empty))
                } else if delta.version < current.version {
                    // The service went back in time (restarted from its file):
                    // our version means nothing to it any more.
                    self.need_snapshot = true;
                    Ok(quiet(Exchange::Empty))
                } else if delta.is_empty() {
                    // While protected, an empty poll is judged again too, so a
                    // collapse that outlasts the window ends without a change.
                    if self.protection.actual.is_some() {
                        let next = current.apply(delta.version, Vec::new(), &[])?;
                        let step = self.publish(Arc::new(next), Some(delta))?;
                        Ok(Step {
                            exchange: Exchange::Empty,
                            ..step
                        })
                    } else if delta.version != current.version {
                        drop(current);
                        Arc::make_mut(&mut self.view).version = delta.version;
                        Ok(Step {
                            exchange: Exchange::Empty,
                            changed: Some(Changed::Keys(Vec::new())),
                            entered_protection: false,
                        })
                    } else {
                        Ok(quiet(Exchange::Empty))
                    }
                } else {
                    let step = self.apply_delta(delta)?;
                    Ok(Step {
                        exchange: Exchange::Delta,
                        ..step
                    })
                }
            }
        }
    }

    /// The service's view as far as the stream knows it (the served one
    /// unless protected).
    fn actual(&self) -> Arc<ReplicaView> {
        match &self.protection.actual {
            Some(a) => a.clone(),
            None => self.view.clone(),
        }
    }

    /// A non-empty delta. While protection is off and stays off, it is
    /// applied to the served view itself: in place when nobody else holds
    /// it (events), else to one copy (a replica's readers keep theirs).
    fn apply_delta(&mut self, d: RegistryDelta) -> Result<Step, String> {
        let base = self.actual();
        let mut keys: HashSet<RecordKey> = d.deletes.iter().copied().collect();
        let mut upserted = HashSet::with_capacity(d.upserts.len());
        for r in &d.upserts {
            let key = r
                .key()
                .ok_or_else(|| "a record has neither `ip` nor `cidr`".to_string())?;
            upserted.insert(key);
            keys.insert(key);
        }
        // Deletes apply before upserts: a key of the delta is there after
        // it exactly when it is upserted.
        let count =
            base.len() - keys.iter().filter(|k| base.get(k).is_some()).count() + upserted.len();
        if self.protection.actual.is_none() && !self.protection.would_protect(count, &self.settings)
        {
            self.protection.observe(count, &self.settings);
            drop(base);
            Arc::make_mut(&mut self.view).apply_mut(d.version, d.upserts, &d.deletes)?;
            return Ok(Step {
                exchange: Exchange::Delta,
                changed: Some(Changed::Keys(keys.into_iter().collect())),
                entered_protection: false,
            });
        }
        let next = base.apply(d.version, d.upserts.clone(), &d.deletes)?;
        self.publish(Arc::new(next), Some(d))
    }

    /// Lets protection decide whether to serve `actual` (reached by `delta`
    /// from the last one, or a whole snapshot) or to keep the view served,
    /// and serves it.
    fn publish(
        &mut self,
        actual: Arc<ReplicaView>,
        delta: Option<RegistryDelta>,
    ) -> Result<Step, String> {
        let was_protected = self.protection.actual.is_some();
        let snapshot = delta.is_none();
        let verdict = self
            .protection
            .judge(&actual, delta, &self.view, &self.settings)?;
        let entered_protection = matches!(verdict, Verdict::Protect { entering: true, .. });
        self.view = match verdict {
            Verdict::Trust => actual,
            Verdict::Protect { served, .. } => served,
        };
        let protected = self.protection.actual.is_some();
        Ok(Step {
            exchange: Exchange::Delta,
            changed: (snapshot || was_protected || protected).then_some(Changed::All),
            entered_protection,
        })
    }

    fn fetch_snapshot(&self, endpoint: &str) -> Result<ReplicaView, ClientError> {
        let bytes = self
            .transport
            .send(&Request::new(Method::Get, endpoint, REGISTRY_PATH))?
            .ok_or_else(|| not_found(endpoint))?;
        let body: RegistrySnapshot = decode(endpoint, &bytes)?;
        let mut view =
            ReplicaView::from_records(body.version, body.records).map_err(|message| {
                ClientError::Decode {
                    endpoint: endpoint.to_string(),
                    message,
                }
            })?;
        view.history = body.history;
        Ok(view)
    }

    fn poll(
        &self,
        endpoint: &str,
        since: u64,
        history: Option<&str>,
        wait: Duration,
    ) -> Result<Fetched, ClientError> {
        let wait = wait.as_secs();
        let path = registry_poll_path(since, wait, history);
        let request =
            Request::new(Method::Get, endpoint, &path).long_poll(Duration::from_secs(wait));
        match self.transport.send(&request) {
            Ok(Some(bytes)) => Ok(Fetched::Delta(decode(endpoint, &bytes)?)),
            Ok(None) => Err(not_found(endpoint)),
            Err(ClientError::Status { status: 410, .. }) => Ok(Fetched::Gone),
            Err(e) => Err(e),
        }
    }
}
