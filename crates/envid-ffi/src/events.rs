//! `envid_events` and `envid_event`: join, leave and change events under a
//! filter (`envid::events`), for C consumers that act on them (a database
//! granting access, a firewall): a blocking `envid_events_next`, a
//! cumulative `envid_events_ack`, a checkpoint that survives restarts.
//!
//! The consumer does the network exchanges on the calling thread (there
//! is no background thread), so the object is one consumer's: calls from
//! several threads are serialized by a lock, and a `get_stats` from a
//! monitoring thread waits for a `next` in progress (at most its timeout).

use std::ffi::{c_char, CString};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use envid::events::{Event, EventKind, Events, Filter};

use crate::error::{envid_result, Fail, FfiResult};
use crate::marshal::{free_box, new_out, obj_arg, owned_c_string, path_arg, write_out};
use crate::options::envid_lookup_options;
use crate::panic::{ffi_boundary, ffi_boundary_void};

/// One consumer of join and leave events. Free with `envid_events_free`
/// (which writes the acknowledgements not yet written).
#[derive(Debug)]
pub struct envid_events {
    events: Mutex<Events>,
}

/// What happened to an IP under the filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum envid_event_kind {
    /// The IP is under the filter now and was not.
    ENVID_EVENT_JOIN = 0,
    /// The IP was under the filter and is not any more (gone, or moved to
    /// another app, env or idc); the record is the last one known.
    ENVID_EVENT_LEAVE = 1,
    /// Still under the filter, but another registration, app, env or idc.
    ENVID_EVENT_CHANGE = 2,
}

impl From<EventKind> for envid_event_kind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Join => envid_event_kind::ENVID_EVENT_JOIN,
            EventKind::Leave => envid_event_kind::ENVID_EVENT_LEAVE,
            EventKind::Change => envid_event_kind::ENVID_EVENT_CHANGE,
        }
    }
}

/// One event, with its strings made once for the borrowed getters. Owned
/// by the caller of `envid_events_next`; free with `envid_event_free`.
#[derive(Debug)]
pub struct envid_event {
    event: Event,
    id: CString,
    ip: CString,
    registration: Option<CString>,
    previous_registration: Option<CString>,
    app: Option<CString>,
    env: Option<CString>,
    idc: Option<CString>,
}

/// The state and counters of a consumer (`envid_events_get_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct envid_events_stats {
    /// The registry version the joined set is at.
    pub version: u64,
    /// IPs joined under the filter (once every pending event is acted on).
    pub joined: u64,
    /// Events not yet acknowledged, delivered or not.
    pub pending: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Milliseconds the oldest unacknowledged event has waited since it was
    /// computed; `UINT64_MAX` when every event is acknowledged.
    pub oldest_pending_age_ms: u64,
    /// 1 while the stream's protection against mass deletion is on (leaves
    /// are held, not emitted), else 0.
    pub is_protected: u8,
    /// When it began, in milliseconds since the Unix epoch; 0 when off.
    pub protected_since_ms: u64,
    /// Leaves held by the protection: joined IPs the service no longer has.
    pub held_leaves: u64,
    /// The normal record count protection compares with.
    pub normal_records: u64,
    /// Successful exchanges with the service.
    pub syncs: u64,
    /// Whole-registry fetches.
    pub snapshots: u64,
    /// Non-empty deltas.
    pub deltas: u64,
    /// Failed exchanges (each retried after a backoff; see
    /// `envid_events_last_sync_error`).
    pub sync_errors: u64,
    /// Joins computed by this object.
    pub joins: u64,
    /// Leaves computed by this object.
    pub leaves: u64,
    /// Changes computed by this object.
    pub changes: u64,
    /// Milliseconds since the last successful exchange; `UINT64_MAX` before
    /// the first.
    pub age_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn c_string(s: &str) -> FfiResult<CString> {
    CString::new(s).map_err(|_| Fail::invalid("the value contains a NUL byte"))
}

fn opt_c_string(s: Option<&str>) -> FfiResult<Option<CString>> {
    s.map(c_string).transpose()
}

/// A filter field's values from `a,b, c` (empty entries dropped), as
/// `envid events --app a,b` takes them.
fn values(s: Option<&str>) -> Vec<String> {
    s.into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

impl envid_event {
    fn new(event: Event) -> FfiResult<envid_event> {
        let r = &event.record;
        Ok(envid_event {
            id: c_string(&event.id)?,
            ip: c_string(&event.ip.to_string())?,
            registration: opt_c_string(event.registration.as_deref())?,
            previous_registration: opt_c_string(event.previous_registration.as_deref())?,
            app: opt_c_string(r.app.as_deref())?,
            env: Some(c_string(&r.env)?),
            idc: Some(c_string(&r.idc)?),
            event,
        })
    }

    /// The library's event.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// The filter of the C API's four comma-separated fields (`None`: any):
/// apps, envs, env types, idcs.
pub fn comma_filter(fields: [Option<&str>; 4]) -> Filter {
    let [apps, envs, env_types, idcs] = fields;
    Filter {
        apps: values(apps),
        envs: values(envs),
        env_types: values(env_types),
        idcs: values(idcs),
    }
}

impl envid_events {
    /// A consumer on the options' service config (endpoints, token, proxy,
    /// CA file, timeouts; the cache settings do not apply), under `filter`,
    /// with a checkpoint when `checkpoint` is given. Reads the checkpoint;
    /// makes no request yet.
    pub fn new(
        opts: &envid_lookup_options,
        filter: Filter,
        checkpoint: Option<std::path::PathBuf>,
    ) -> FfiResult<envid_events> {
        let mut b = Events::builder(opts.service_config()?).filter(filter);
        if let Some(path) = checkpoint {
            b = b.checkpoint(path);
        }
        Ok(envid_events {
            events: Mutex::new(b.build()?),
        })
    }

    /// The consumer, locked for one call. A call that panicked may have
    /// left it half updated: refuse rather than guess.
    fn lock(&self) -> FfiResult<MutexGuard<'_, Events>> {
        self.events.lock().map_err(|_| {
            Fail::new(
                envid_result::ENVID_PANIC,
                "an earlier call on this envid_events panicked; free it and create another",
            )
        })
    }

    /// The next event within `timeout`, `None` when none came.
    pub fn next(&self, timeout: Duration) -> FfiResult<Option<Event>> {
        Ok(self.lock()?.next(timeout)?)
    }

    /// Acknowledges the delivered event with this id and every one before it.
    pub fn ack(&self, id: &str) -> FfiResult {
        Ok(self.lock()?.ack_id(id)?)
    }

    /// Writes the acknowledgements not yet written.
    pub fn flush(&self) -> FfiResult {
        Ok(self.lock()?.flush()?)
    }

    /// Delivers every unacknowledged event again, oldest first.
    pub fn redeliver(&self) -> FfiResult {
        self.lock()?.redeliver();
        Ok(())
    }

    /// The last problem the stream had, as a sentence.
    pub fn last_sync_error(&self) -> FfiResult<Option<String>> {
        Ok(self.lock()?.last_error().map(String::from))
    }

    /// The state and counters so far.
    pub fn stats(&self) -> FfiResult<envid_events_stats> {
        let s = self.lock()?.stats();
        Ok(envid_events_stats {
            version: s.version,
            joined: s.joined as u64,
            pending: s.pending as u64,
            delivered: s.delivered as u64,
            oldest_pending_age_ms: s.oldest_pending_age.map_or(u64::MAX, millis),
            is_protected: u8::from(s.protected),
            protected_since_ms: s
                .protected_since
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, millis),
            held_leaves: s.held_leaves as u64,
            normal_records: s.normal_records as u64,
            syncs: s.syncs,
            snapshots: s.snapshots,
            deltas: s.deltas,
            sync_errors: s.sync_errors,
            joins: s.joins,
            leaves: s.leaves,
            changes: s.changes,
            age_ms: s.age.map_or(u64::MAX, millis),
        })
    }
}

/// Reads an optional C string argument (NULL → `None`).
///
/// # Safety
/// `p` must be NULL or NUL-terminated and valid for the call.
unsafe fn opt_str<'a>(p: *const c_char, what: &'static str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { crate::marshal::str_arg(p, what) }.map(Some)
}

/// Creates a consumer of join, leave and change events from connection
/// options (`envid_lookup_options`: endpoints, token, proxy, CA file,
/// timeouts; the cache settings do not apply) and a filter: `apps`,
/// `envs`, `env_types` and `idcs` are each NULL (any) or comma-separated
/// values, any of which matches (`"payment,billing"`), as `envid events
/// --app` takes them; a record is under the filter when every field given
/// matches. `checkpoint` (NULL: none) is the file where what the consumer
/// believes joined and the events not yet acknowledged are kept (and
/// `FILE.journal` beside it), so a restart delivers the unacknowledged
/// events again with the same ids, then exactly what changed meanwhile;
/// without one every start begins with a join per IP under the filter.
///
/// Reads the checkpoint; makes no request yet (`envid_events_next` does).
/// `ENVID_INVALID_INPUT` without endpoints or with a bad one;
/// `ENVID_CHECKPOINT` when the checkpoint exists but is corrupt, of
/// another format, of another filter, or cannot be written (the message
/// names the file and line; it is never silently replaced).
///
/// Ownership: `*out` is owned by the caller; free with `envid_events_free`.
/// `opts` and the strings are only read and may be freed afterwards.
///
/// # Safety
/// `opts` NULL or live; each string NULL or NUL-terminated; `out` NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn envid_events_new(
    opts: *const envid_lookup_options,
    apps: *const c_char,
    envs: *const c_char,
    env_types: *const c_char,
    idcs: *const c_char,
    checkpoint: *const c_char,
    out: *mut *mut envid_events,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let o = unsafe { obj_arg(opts, "opts") }?;
        // SAFETY: each NULL or NUL-terminated by contract.
        let filter = comma_filter(unsafe {
            [
                opt_str(apps, "apps")?,
                opt_str(envs, "envs")?,
                opt_str(env_types, "env_types")?,
                opt_str(idcs, "idcs")?,
            ]
        });
        // SAFETY: NULL or NUL-terminated by contract.
        let checkpoint = unsafe { path_arg(checkpoint, "checkpoint") }?;
        // SAFETY: NULL or writable by contract.
        unsafe { new_out(out, || envid_events::new(o, filter, checkpoint)) }
    })
}

/// Frees a consumer, writing the acknowledgements not yet written first
/// (best effort: what is not written is delivered again after a restart).
/// NULL is a no-op. Events it delivered stay valid (free them with
/// `envid_event_free`).
///
/// # Safety
/// `events` NULL or from `envid_events_new`, not yet freed, and no longer
/// used by any thread.
#[no_mangle]
pub unsafe extern "C" fn envid_events_free(events: *mut envid_events) {
    // SAFETY: NULL or from envid_events_new, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(events) })
}

/// Waits at most `timeout_ms` for the next event. `ENVID_OK` with `*out`
/// the event; `ENVID_TIMEOUT` (and `*out = NULL`) when none came in time:
/// not a failure, call again. Events not acknowledged before a restart come
/// first, with their ids; then the service is asked, on this thread (a
/// long poll of at most `timeout_ms`, in whole seconds). Service errors are
/// retried after a backoff, never returned: they are counted in the stats
/// (`sync_errors`) and `envid_events_last_sync_error` says the last.
/// `ENVID_CHECKPOINT` when the checkpoint cannot be written (no event is
/// delivered that it does not hold).
///
/// An event is delivered again (after a restart, or after
/// `envid_events_redeliver`) until it is acknowledged: act on it, then
/// `envid_events_ack` it. Do not ack an event that failed: later acks
/// cover every event delivered before them.
///
/// Ownership: `*out` is owned by the caller; free with `envid_event_free`.
///
/// # Safety
/// `events` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_events_next(
    events: *const envid_events,
    timeout_ms: u64,
    out: *mut *mut envid_event,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let ev = unsafe { obj_arg(events, "events") }?;
        // SAFETY: checked non-null; writable by contract. Written first, so
        // a timeout or a failure leaves NULL rather than a stale pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        match ev.next(Duration::from_millis(timeout_ms))? {
            Some(e) => {
                let p = Box::into_raw(Box::new(envid_event::new(e)?));
                // SAFETY: checked non-null; writable by contract.
                unsafe { write_out(out, p, "out") }
            }
            None => Err(Fail::new(
                envid_result::ENVID_TIMEOUT,
                format!("no event within {timeout_ms} ms"),
            )),
        }
    })
}

/// Acknowledges `event` and every event delivered before it: they are not
/// delivered again after a restart once written (within a second, at once
/// with `envid_events_flush`, and at `envid_events_free`). An event
/// already acknowledged (a repeat) is ignored. `ENVID_CHECKPOINT` when the
/// checkpoint cannot be written.
///
/// # Safety
/// `events` and `event` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_events_ack(
    events: *const envid_events,
    event: *const envid_event,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let ev = unsafe { obj_arg(events, "events") }?;
        // SAFETY: NULL or live by contract.
        let e = unsafe { obj_arg(event, "event") }?;
        ev.ack(&e.event.id)
    })
}

/// Writes the acknowledgements not yet written, now.
/// `ENVID_CHECKPOINT` when the checkpoint cannot be written.
///
/// # Safety
/// `events` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_events_flush(events: *const envid_events) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        unsafe { obj_arg(events, "events") }?.flush()
    })
}

/// Delivers every event not yet acknowledged again, oldest first: for a
/// consumer that failed to act on one and wants it back without a restart.
///
/// # Safety
/// `events` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn envid_events_redeliver(events: *const envid_events) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        unsafe { obj_arg(events, "events") }?.redeliver()
    })
}

/// Reads the consumer's state and counters (pending events and the oldest
/// one's age, held leaves, protection, exchanges, joins, leaves, changes).
/// Waits for an `envid_events_next` in progress on another thread.
///
/// # Safety
/// `events` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_events_get_stats(
    events: *const envid_events,
    out: *mut envid_events_stats,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: NULL or live by contract.
        let s = unsafe { obj_arg(events, "events") }?.stats()?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, s, "out") }
    })
}

/// The last problem of the consumer's stream (a service error, protection
/// starting, a corrupt checkpoint ignored) as a sentence; kept after the
/// stream recovers. `ENVID_NOT_FOUND` (and `*out = NULL`) when there was none.
///
/// Ownership: `*out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `events` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_events_last_sync_error(
    events: *const envid_events,
    out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: checked non-null; writable by contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or live by contract.
        let ev = unsafe { obj_arg(events, "events") }?;
        let message = ev
            .last_sync_error()?
            .ok_or_else(|| Fail::not_found("the stream has had no problem"))?;
        let s = owned_c_string(message)?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(out, s, "out") }
    })
}

/// Frees an event. NULL is a no-op. Strings borrowed from it become invalid.
///
/// # Safety
/// `event` NULL or from `envid_events_next`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn envid_event_free(event: *mut envid_event) {
    // SAFETY: NULL or from envid_events_next, unused, by contract.
    ffi_boundary_void(|| unsafe { free_box(event) })
}

/// The event's kind: `ENVID_EVENT_JOIN`, `ENVID_EVENT_LEAVE` or
/// `ENVID_EVENT_CHANGE`. (Named `get_kind`: `envid_event_kind` is the type.)
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_get_kind(
    event: *const envid_event,
    out: *mut envid_event_kind,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let e = unsafe { obj_arg(event, "event") }?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, e.event.kind.into(), "out") }
    })
}

/// The registry version the event was seen at.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_version(
    event: *const envid_event,
    out: *mut u64,
) -> envid_result {
    ffi_boundary(|| {
        // SAFETY: NULL or live by contract.
        let e = unsafe { obj_arg(event, "event") }?;
        // SAFETY: NULL or writable by contract.
        unsafe { write_out(out, e.event.version, "out") }
    })
}

/// The body of every borrowed string getter: writes the string, or NULL
/// and `ENVID_NOT_FOUND` naming `what` when absent.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
unsafe fn get_str(
    event: *const envid_event,
    out: *mut *const c_char,
    what: &'static str,
    pick: impl FnOnce(&envid_event) -> Option<&CString>,
) -> FfiResult {
    if out.is_null() {
        return Err(Fail::null("out"));
    }
    // SAFETY: checked non-null; writable by contract. NULL unless found.
    unsafe { out.write(std::ptr::null()) };
    // SAFETY: NULL or live by contract.
    let e = unsafe { obj_arg(event, "event") }?;
    let value = pick(e).ok_or_else(|| Fail::not_found(format!("the event has no {what}")))?;
    // SAFETY: checked non-null; writable by contract.
    unsafe { write_out(out, value.as_ptr(), "out") }
}

/// The event's stable id, `history/version/ip`: the same when the event is
/// delivered again, so a consumer can recognise a repeat.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_id(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "id", |e| Some(&e.id)) })
}

/// The IP address (text).
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_ip(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "ip", |e| Some(&e.ip)) })
}

/// The registration that joined, left, or (a change) is the IP's now: an
/// id the service gives every registration, new when an IP is registered
/// again. Revoke on a leave only what was granted to this registration,
/// and a late leave of an IP's previous owner never revokes the new one.
/// `ENVID_NOT_FOUND` (and `*out = NULL`) for a record of the registry
/// file, which has none.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_registration(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "registration", |e| e.registration.as_ref()) })
}

/// A change's previous registration; `ENVID_NOT_FOUND` (and `*out = NULL`)
/// for a join or a leave, or when the previous record had none.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_previous_registration(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe {
        get_str(event, out, "previous registration", |e| {
            e.previous_registration.as_ref()
        })
    })
}

/// The record's application (the new record's, or for a leave the last
/// one known); `ENVID_NOT_FOUND` (and `*out = NULL`) when it has none.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_app(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "app", |e| e.app.as_ref()) })
}

/// The record's environment name; always present.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_env(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "env", |e| e.env.as_ref()) })
}

/// The record's data center; always present.
///
/// Ownership: `*out` is borrowed from `event`, valid as long as it.
///
/// # Safety
/// `event` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_idc(
    event: *const envid_event,
    out: *mut *const c_char,
) -> envid_result {
    // SAFETY: forwarded contracts.
    ffi_boundary(|| unsafe { get_str(event, out, "idc", |e| e.idc.as_ref()) })
}

/// The whole event as one line of JSON, as `envid events` prints it:
/// `id`, `event` (`join`, `leave`, `change`), `ip`, `history`, `version`,
/// `registration`, `previous_registration`, `record` (every field of the
/// record), `previous` (a change's previous record), `computed_unix_ms`.
///
/// Ownership: `*json_out` is owned by the caller; free with `envid_string_free`.
///
/// # Safety
/// `event` NULL or live; `json_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn envid_event_to_json(
    event: *const envid_event,
    json_out: *mut *mut c_char,
) -> envid_result {
    ffi_boundary(|| {
        if json_out.is_null() {
            return Err(Fail::null("json_out"));
        }
        // SAFETY: NULL or live by contract.
        let e = unsafe { obj_arg(event, "event") }?;
        let s = owned_c_string(e.event.to_json())?;
        // SAFETY: checked non-null; writable by contract.
        unsafe { write_out(json_out, s, "json_out") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_comma_separated_and_trimmed() {
        assert_eq!(values(Some("a, b,,c ")), ["a", "b", "c"]);
        assert!(values(None).is_empty());
        assert!(values(Some(" , ")).is_empty());
    }
}
