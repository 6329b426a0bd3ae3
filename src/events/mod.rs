//! Join and leave events for the systems that act on them (a database
//! grant service, a firewall, a load balancer): which IPs joined, left or
//! changed under a [`Filter`], delivered at least once, resumed after a
//! restart, and never a mass of leaves because the registry collapsed.
//!
//! [`Events`] follows the registry exactly as a [`Replica`](crate::replica::Replica)
//! does (the same stream: a snapshot, then long-polled deltas, `410`,
//! another history, protection against mass deletion) and keeps the set
//! of IPs the consumer believes joined under its filter, IP → record. Each
//! snapshot or delta is diffed against that set (level-triggered: what is
//! emitted is always the difference between what the consumer believes
//! and what the registry says), in IP order:
//!
//! * [`EventKind::Join`]: an IP is under the filter and was not joined;
//! * [`EventKind::Leave`]: a joined IP is gone, or no longer under the
//!   filter (an IP that moves from app A to app B is a leave for a
//!   consumer of A and a join for a consumer of B); the record is the last
//!   one known, and names the registration that left;
//! * [`EventKind::Change`]: a joined IP is still under the filter but is
//!   another registration, app, environment or data center; it carries
//!   the new record and the previous one (so both registrations). Other
//!   fields (labels, release) changing make no event.
//!
//! **An IP reused is not the same host.** Every registration has an id of
//! its own ([`HostRecord::registration`], assigned by the service). Join
//! and Leave carry it ([`Event::registration`]); a Change carries the new
//! and the previous one. A consumer that deletes only what matches the
//! registration it holds never takes a late or repeated Leave of an IP's
//! previous owner for the new owner's.
//!
//! **Exactly what a consumer needs to be correct.** An event is
//! acknowledged with [`Events::ack`] (which acknowledges every event
//! delivered before it too), or by returning `Ok` from the closure of
//! [`Events::run`]. With a [`checkpoint`](EventsBuilder::checkpoint), a
//! batch of events is written (and fsynced) before its first event is
//! delivered, and acknowledgements as they advance (lazily, at most
//! [`ack_flush_interval`](EventsBuilder::ack_flush_interval) late, or at
//! once with [`Events::flush`]). After a restart, the events that were not
//! acknowledged are delivered again with the same ids, then the registry
//! is fetched whole and exactly the difference with the checkpointed set
//! is emitted; the same after a `410` (another history, a compacted
//! revision, a restarted embedded store). No join and no leave is lost;
//! delivery is at least once, and [`Event::id`] (`history/version/ip`) is
//! stable, so a consumer can recognise a repeat. A checkpoint that does
//! not parse is an error naming the file (and line), never a silent fresh
//! start ([`EventsBuilder::ignore_corrupt_checkpoint`] allows one).
//!
//! **No mass revocation.** While the stream's protection against mass
//! deletion is on (a wipe, a truncated registry, renewals collapsing: see
//! the [replica documentation](crate::replica)), the deletes it holds are
//! not leaves: they are held ([`EventsStats::held_leaves`]) and emitted
//! once the registry recovers, for the IPs still gone then. Joins and
//! changes flow as usual. It is on by default and set like a replica's
//! ([`EventsBuilder::sync`]).
//!
//! Single-IP records only: a range of the registry file is never joined.
//! There is no thread: [`Events::next`] does the network exchanges on the
//! caller's thread, blocking at most its timeout (rounded up to the next
//! whole second of long poll when the service must be asked), which is
//! what a C or JNI binding wraps. Memory is the registry's records (shared
//! with the joined set, not copied) plus the events not yet acknowledged;
//! BENCHMARKS.md has the figure at 100,000 joined IPs.
//!
//! ```no_run
//! use std::time::Duration;
//! use envid::events::{EventKind, Events, Filter};
//! let config = envid::ServiceConfig::builder()
//!     .endpoint("http://envsvc.cn0.example:7070")
//!     .build()?;
//! let mut events = Events::builder(config)
//!     .filter(Filter::new().app("payment").env("prod"))
//!     .checkpoint("/var/lib/grants/envid-events.json")
//!     .build()?;
//! loop {
//!     let Some(event) = events.next(Duration::from_secs(10))? else {
//!         continue; // nothing new; events.stats() says how the stream is
//!     };
//!     match event.kind {
//!         EventKind::Join => println!("grant {} ({:?})", event.ip, event.registration),
//!         EventKind::Leave => println!("revoke {} if still {:?}", event.ip, event.registration),
//!         EventKind::Change => println!("regrant {}", event.ip),
//!     }
//!     events.ack(&event)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod checkpoint;
mod diff;
mod error;
mod filter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use builder::EventsBuilder;
pub use error::{CheckpointProblem, EventsError};
pub use filter::Filter;

use checkpoint::{Checkpoint, State};
use diff::Transition;

use crate::client::ServiceConfig;
use crate::protocol::{HostRecord, RecordKey};
use crate::replica::follow::{Changed, Exchange, Follow, Step};

/// What happened to an IP under the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The IP is under the filter now and was not.
    Join,
    /// The IP was under the filter and is not any more.
    Leave,
    /// Still under the filter, but another registration, app, environment
    /// or data center.
    Change,
}

impl EventKind {
    /// `join`, `leave` or `change`, as the CLI, its hooks and the JSON say it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Join => "join",
            EventKind::Leave => "leave",
            EventKind::Change => "change",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event: plain data, and its JSON (the CLI's line, the checkpoint's)
/// is its serde form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The stable id, `history/version/ip` (`-` for a service without
    /// histories): the same when the event is delivered again.
    pub id: String,
    /// Join, leave or change.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The address.
    pub ip: IpAddr,
    /// The history of `version` (see
    /// [`RegistrySnapshot::history`](crate::protocol::RegistrySnapshot::history)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// The registry version the event was seen at.
    pub version: u64,
    /// The registration that joined, left, or is the IP's now (a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// A change's previous registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_registration: Option<String>,
    /// The record: the new one, or the last one known for a leave
    /// (shared with the stream's view, not copied).
    pub record: Arc<HostRecord>,
    /// A change's previous record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Arc<HostRecord>>,
    /// When the event was computed (Unix milliseconds), which survives a
    /// restart: how long it has waited for its acknowledgement.
    pub computed_unix_ms: u64,
}

impl Event {
    fn from_transition(t: &Transition, history: Option<&str>, version: u64, now_ms: u64) -> Event {
        Event {
            id: format!("{}/{version}/{}", history.unwrap_or("-"), t.ip),
            kind: t.kind,
            ip: t.ip,
            history: history.map(String::from),
            version,
            registration: t.record.registration.clone(),
            previous_registration: t.previous.as_ref().and_then(|p| p.registration.clone()),
            record: t.record.clone(),
            previous: t.previous.clone(),
            computed_unix_ms: now_ms,
        }
    }

    /// `joined` after this event (replaying a checkpoint's journal).
    fn apply_to(&self, joined: &mut HashMap<IpAddr, Arc<HostRecord>>) {
        match self.kind {
            EventKind::Join | EventKind::Change => {
                joined.insert(self.ip, self.record.clone());
            }
            EventKind::Leave => {
                joined.remove(&self.ip);
            }
        }
    }

    /// How long ago it was computed.
    pub fn age(&self) -> Duration {
        (UNIX_EPOCH + Duration::from_millis(self.computed_unix_ms))
            .elapsed()
            .unwrap_or_default()
    }

    /// Its JSON, one line (as `envid events` prints it).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event is plain data")
    }
}

/// The state and counters of [`Events`], read with [`Events::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventsStats {
    /// The registry version the joined set is at.
    pub version: u64,
    /// Its history.
    pub history: Option<String>,
    /// IPs joined under the filter (once every pending event is acted on).
    pub joined: usize,
    /// Events not yet acknowledged, delivered or not.
    pub pending: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// How long the oldest event not yet acknowledged has waited since it
    /// was computed; `None` when every event is acknowledged.
    pub oldest_pending_age: Option<Duration>,
    /// Whether the stream's protection against mass deletion is on.
    pub protected: bool,
    /// When it began.
    pub protected_since: Option<SystemTime>,
    /// Leaves held back by it: joined IPs the service no longer has.
    pub held_leaves: usize,
    /// The normal record count protection compares with.
    pub normal_records: usize,
    /// Successful exchanges with the service.
    pub syncs: u64,
    /// Whole-registry fetches (the first, after `410`, after another history).
    pub snapshots: u64,
    /// Non-empty deltas.
    pub deltas: u64,
    /// Failed exchanges (each retried after a backoff).
    pub sync_errors: u64,
    /// Joins, leaves and changes computed by this instance.
    pub joins: u64,
    /// See `joins`.
    pub leaves: u64,
    /// See `joins`.
    pub changes: u64,
    /// Time since the last successful exchange; `None` before the first.
    pub age: Option<Duration>,
}

#[derive(Debug, Default)]
struct Counters {
    syncs: u64,
    snapshots: u64,
    deltas: u64,
    sync_errors: u64,
    joins: u64,
    leaves: u64,
    changes: u64,
}

/// A consumer's view of joins and leaves under a filter. See the [module
/// documentation](self).
pub struct Events {
    follow: Follow,
    filter: Filter,
    checkpoint: Option<Checkpoint>,
    state: State,
    /// How many of `state.pending` were handed out.
    delivered: usize,
    unsaved_acks: usize,
    first_unsaved_ack: Option<Instant>,
    ack_flush_interval: Duration,
    /// No request before this (min_poll_interval, backoff).
    resume_at: Option<Instant>,
    /// A step's changes were not turned into events (the checkpoint could
    /// not be written): look at every IP next time.
    full_diff: bool,
    held_leaves: usize,
    counters: Counters,
    last_sync: Option<Instant>,
    last_error: Option<String>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("filter", &self.filter)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Events {
    /// A builder over `config`, with the filter that takes every host and
    /// no checkpoint.
    pub fn builder(config: ServiceConfig) -> EventsBuilder {
        EventsBuilder::new(config)
    }

    fn new(
        follow: Follow,
        filter: Filter,
        checkpoint: Option<Checkpoint>,
        state: State,
        ack_flush_interval: Duration,
        last_error: Option<String>,
    ) -> Events {
        Events {
            follow,
            filter,
            checkpoint,
            state,
            delivered: 0,
            unsaved_acks: 0,
            first_unsaved_ack: None,
            ack_flush_interval,
            resume_at: None,
            full_diff: false,
            held_leaves: 0,
            counters: Counters::default(),
            last_sync: None,
            last_error,
        }
    }

    /// The next event, waiting for one at most `timeout` (`Ok(None)` when
    /// none came). Events not yet acknowledged from before a restart come
    /// first; then the service is asked, on this thread (a long poll of at
    /// most `timeout` in whole seconds, and of at most `poll_wait`).
    /// Service errors are retried after a backoff and counted
    /// ([`EventsStats::sync_errors`], [`Events::last_error`]); the errors
    /// returned are the checkpoint's.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>, EventsError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.flush_due()?;
            if let Some(e) = self.state.pending.get(self.delivered) {
                self.delivered += 1;
                return Ok(Some(e.clone()));
            }
            if let Some(at) = self.resume_at {
                let now = Instant::now();
                if at >= deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return Ok(None);
                }
                std::thread::sleep(at.saturating_duration_since(now));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = self.follow.settings.poll_wait.min(left);
            let started = Instant::now();
            let result = self.follow.step(wait, &|| false);
            self.resume_at = Some(Instant::now() + self.follow.pause(result.is_ok(), started));
            match result {
                Ok(step) => self.after_step(step)?,
                Err(e) => {
                    self.counters.sync_errors += 1;
                    self.last_error = Some(e.to_string());
                }
            }
            if self.delivered >= self.state.pending.len() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn after_step(&mut self, step: Step) -> Result<(), EventsError> {
        self.counters.syncs += 1;
        self.last_sync = Some(Instant::now());
        match step.exchange {
            Exchange::Snapshot => self.counters.snapshots += 1,
            Exchange::Delta => self.counters.deltas += 1,
            Exchange::Empty | Exchange::Gone => {}
        }
        let changed = if self.full_diff {
            Some(Changed::All)
        } else {
            step.changed
        };
        if let Some(changed) = changed {
            self.compute(changed)?;
        }
        if step.entered_protection {
            self.last_error = Some(format!(
                "holding {} leaves: the registry has {} records, its normal count is {} \
                 (protection against mass deletion)",
                self.held_leaves,
                self.follow
                    .protection
                    .actual
                    .as_ref()
                    .map_or(0, |a| a.len()),
                self.follow.protection.normal()
            ));
        }
        Ok(())
    }

    /// Diffs the served view against the joined set and queues the events,
    /// written to the checkpoint first.
    fn compute(&mut self, changed: Changed) -> Result<(), EventsError> {
        let view = self.follow.view().clone();
        let transitions = diff::diff(&self.state.joined, &view, &changed, &self.filter);
        self.held_leaves = self
            .follow
            .protection
            .held
            .iter()
            .filter(|k| matches!(k, RecordKey::Ip(ip) if self.state.joined.contains_key(ip)))
            .count();
        if !transitions.is_empty() {
            let now = now_ms();
            let events: Vec<Event> = transitions
                .iter()
                .map(|t| Event::from_transition(t, view.history(), view.version(), now))
                .collect();
            if let Some(cp) = &mut self.checkpoint {
                if let Err(e) = cp.append_batch(view.history(), view.version(), &events) {
                    self.full_diff = true;
                    return Err(e);
                }
            }
            for t in &transitions {
                diff::apply(&mut self.state.joined, t);
                match t.kind {
                    EventKind::Join => self.counters.joins += 1,
                    EventKind::Leave => self.counters.leaves += 1,
                    EventKind::Change => self.counters.changes += 1,
                }
            }
            self.state.pending.extend(events);
        }
        if changed == Changed::All {
            // Records read from the checkpoint, or kept from an older view,
            // that the view holds unchanged: share the view's copy.
            for (ip, rec) in self.state.joined.iter_mut() {
                if let Some(now) = view.get(&RecordKey::Ip(*ip)) {
                    if !Arc::ptr_eq(rec, now) && **rec == **now {
                        *rec = now.clone();
                    }
                }
            }
        }
        self.full_diff = false;
        self.state.version = view.version();
        self.state.history = view.history().map(String::from);
        self.compact_if_due()
    }

    /// Acknowledges `event` and every event delivered before it: they are
    /// not delivered again after a restart (once written: see
    /// [`EventsBuilder::ack_flush_interval`]). An event already
    /// acknowledged (a repeat) is ignored.
    pub fn ack(&mut self, event: &Event) -> Result<(), EventsError> {
        self.ack_id(&event.id)
    }

    /// [`ack`](Self::ack) by the event's [`Event::id`], for a binding that
    /// hands its caller the id rather than the event (the JNI one); an id
    /// of no delivered event is ignored.
    pub fn ack_id(&mut self, id: &str) -> Result<(), EventsError> {
        let Some(pos) = self
            .state
            .pending
            .iter()
            .take(self.delivered)
            .position(|e| e.id == id)
        else {
            return Ok(());
        };
        let n = pos + 1;
        self.state.pending.drain(..n);
        // The first sync of a large registry queues a join per IP: give
        // that room back once it is acted on.
        if self.state.pending.capacity() > 64
            && self.state.pending.len() < self.state.pending.capacity() / 4
        {
            self.state.pending.shrink_to(self.state.pending.len() * 2);
        }
        self.delivered -= n;
        self.unsaved_acks += n;
        self.first_unsaved_ack.get_or_insert_with(Instant::now);
        self.flush_due()
    }

    /// Writes the acknowledgements not yet written, now.
    pub fn flush(&mut self) -> Result<(), EventsError> {
        if self.unsaved_acks == 0 {
            return Ok(());
        }
        if let Some(cp) = &mut self.checkpoint {
            cp.append_acked(self.unsaved_acks)?;
        }
        self.unsaved_acks = 0;
        self.first_unsaved_ack = None;
        self.compact_if_due()
    }

    fn flush_due(&mut self) -> Result<(), EventsError> {
        match self.first_unsaved_ack {
            Some(t) if t.elapsed() >= self.ack_flush_interval => self.flush(),
            _ => Ok(()),
        }
    }

    fn compact_if_due(&mut self) -> Result<(), EventsError> {
        let Some(cp) = &mut self.checkpoint else {
            return Ok(());
        };
        if cp.wants_compaction() {
            self.state.normal_records = self.follow.protection.normal();
            cp.compact(&self.state)?;
            // The rewrite holds every acknowledgement made so far.
            self.unsaved_acks = 0;
            self.first_unsaved_ack = None;
        }
        Ok(())
    }

    /// Delivers every event not yet acknowledged again, oldest first (a
    /// consumer that failed on one and wants it back without a restart).
    pub fn redeliver(&mut self) {
        self.delivered = 0;
    }

    /// Runs `handle` on each event, for ever: an event it returns `Ok` for
    /// is acknowledged; the first `Err` stops the loop and is returned
    /// (that event is not acknowledged: it is delivered again).
    pub fn run<E>(
        &mut self,
        mut handle: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<E, EventsError> {
        loop {
            if let Some(event) = self.next(Duration::from_secs(60))? {
                match handle(&event) {
                    Ok(()) => self.ack(&event)?,
                    Err(e) => {
                        self.redeliver();
                        self.flush()?;
                        return Ok(e);
                    }
                }
            }
        }
    }

    /// The IPs joined under the filter (once every pending event is acted
    /// on), with their records.
    pub fn joined(&self) -> impl Iterator<Item = (IpAddr, &HostRecord)> {
        self.state.joined.iter().map(|(ip, r)| (*ip, &**r))
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The state and counters so far.
    pub fn stats(&self) -> EventsStats {
        let c = &self.counters;
        let p = &self.follow.protection;
        EventsStats {
            version: self.state.version,
            history: self.state.history.clone(),
            joined: self.state.joined.len(),
            pending: self.state.pending.len(),
            delivered: self.delivered,
            oldest_pending_age: self.state.pending.front().map(Event::age),
            protected: p.since.is_some(),
            protected_since: p.since,
            held_leaves: self.held_leaves,
            normal_records: p.normal(),
            syncs: c.syncs,
            snapshots: c.snapshots,
            deltas: c.deltas,
            sync_errors: c.sync_errors,
            joins: c.joins,
            leaves: c.leaves,
            changes: c.changes,
            age: self.last_sync.map(|t| t.elapsed()),
        }
    }

    /// The last problem (a service error, protection starting, a corrupt
    /// checkpoint ignored), as a sentence; kept after recovery.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // Best effort: what is not written is delivered again.
        let _ = self.flush();
    }
}
