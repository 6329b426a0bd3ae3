//! Natives of `io.envid.Events`.

use envid::events::{Event, Filter};
use jni::objects::{JClass, JLongArray, JObject, JObjectArray, JString};
use jni::sys::jlong;
use jni::{Env, EnvUnowned};

use super::host_record::record_array;
use super::{
    borrow_handle, connection_options, handle_ptr, into_handle, jni_boundary, long_array, opt_path,
    string_arg, string_array, string_array_arg, JResult,
};
use crate::error::Fail;
use crate::events::{envid_events, envid_events_free};

/// Borrows the consumer behind a handle.
fn events_handle<'a>(h: jlong) -> JResult<&'a envid_events> {
    // SAFETY: handles come from `eventsNew` and are freed by the Java
    // Events only after every call on it returned (it holds a lock).
    unsafe { borrow_handle(h, "events handle (closed?)") }
}

/// -1 stands for the C API's `UINT64_MAX` (none, never).
fn or_minus_one(v: u64) -> jlong {
    if v == u64::MAX {
        -1
    } else {
        v as jlong
    }
}

/// `static native long eventsNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs, String[] apps, String[] envs, String[]
/// envTypes, String[] idcs, String checkpoint)`: values ≤ 0 keep the
/// defaults; each filter array holds the values any of which matches
/// (empty: any); a null checkpoint means none. Reads the checkpoint.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // one per Java argument
pub extern "system" fn Java_io_envid_Native_eventsNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
    apps: JObjectArray<'local, JString<'local>>,
    envs: JObjectArray<'local, JString<'local>>,
    env_types: JObjectArray<'local, JString<'local>>,
    idcs: JObjectArray<'local, JString<'local>>,
    checkpoint: JString<'local>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let opts = connection_options(env, &endpoints, &token, connect_ms, per_phase_ms)?;
        let filter = Filter {
            apps: string_array_arg(env, &apps, "apps", "app")?,
            envs: string_array_arg(env, &envs, "envs", "env")?,
            env_types: string_array_arg(env, &env_types, "envTypes", "envType")?,
            idcs: string_array_arg(env, &idcs, "idcs", "idc")?,
        };
        let checkpoint = opt_path(env, &checkpoint, "checkpoint")?;
        Ok(into_handle(envid_events::new(&opts, filter, checkpoint)?))
    })
}

/// `static native void eventsFree(long handle)`; 0 is ignored. Writes the
/// acknowledgements not yet written.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from eventsNew, no longer in use.
        unsafe { envid_events_free(handle_ptr(handle)) };
        Ok(())
    })
}

/// An event as `io.envid.Events.Event` reads it: `{String[] head, String[]
/// record, String[] previous}`, head being the JSON, kind, id, ip,
/// history, version, registration, previous registration and computed
/// Unix ms (null where absent), the records in `HostRecord`'s layout
/// (previous null but for a change).
fn event_arrays<'local>(
    env: &mut Env<'local>,
    e: &Event,
) -> JResult<JObjectArray<'local, JObject<'local>>> {
    let json = e.to_json();
    let ip = e.ip.to_string();
    let version = e.version.to_string();
    let computed = e.computed_unix_ms.to_string();
    let head = string_array(
        env,
        &[
            Some(&json),
            Some(e.kind.as_str()),
            Some(&e.id),
            Some(&ip),
            e.history.as_deref(),
            Some(&version),
            e.registration.as_deref(),
            e.previous_registration.as_deref(),
            Some(&computed),
        ],
    )?;
    let out = JObjectArray::<JObject>::new(env, 3, JObject::null())?;
    let record = JObject::from(record_array(env, &e.record)?);
    let previous = match &e.previous {
        Some(p) => JObject::from(record_array(env, p)?),
        None => JObject::null(),
    };
    for (i, element) in [JObject::from(head), record, previous]
        .into_iter()
        .enumerate()
    {
        out.set_element(env, i, &element)?;
        env.delete_local_ref(element);
    }
    Ok(out)
}

/// `static native Object[] eventsNext(long handle, long timeoutMs)`: the
/// next event (see `event_arrays`), or null when the timeout passed with
/// none.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsNext<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    timeout_ms: jlong,
) -> JObjectArray<'local, JObject<'local>> {
    jni_boundary(&mut unowned, |env| {
        let ev = events_handle(handle)?;
        let timeout = u64::try_from(timeout_ms)
            .map_err(|_| Fail::invalid("the timeout must not be negative"))?;
        match ev.next(std::time::Duration::from_millis(timeout))? {
            Some(e) => event_arrays(env, &e),
            None => Ok(JObjectArray::default()),
        }
    })
}

/// `static native void eventsAck(long handle, String id)`: acknowledges
/// the delivered event with this id and every one delivered before it.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsAck<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    id: JString<'local>,
) {
    jni_boundary(&mut unowned, |env| {
        let ev = events_handle(handle)?;
        let id = string_arg(env, &id, "event id")?;
        Ok(ev.ack(&id)?)
    })
}

/// `static native void eventsFlush(long handle)`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsFlush<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| Ok(events_handle(handle)?.flush()?))
}

/// `static native void eventsRedeliver(long handle)`.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsRedeliver<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| Ok(events_handle(handle)?.redeliver()?))
}

/// `static native String eventsLastError(long handle)`: the stream's last
/// problem, or null.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsLastError<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    jni_boundary(&mut unowned, |env| {
        match events_handle(handle)?.last_sync_error()? {
            Some(m) => Ok(env.new_string(m)?),
            None => Ok(JString::default()),
        }
    })
}

/// `static native long[] eventsStats(long handle)`: version, joined,
/// pending, delivered, oldest pending age ms (-1 when none), protected
/// (0/1), protected since (Unix ms, 0 when not), held leaves, normal
/// records, syncs, snapshots, deltas, sync errors, joins, leaves, changes,
/// age ms (-1 before the first exchange).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_eventsStats<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JLongArray<'local> {
    jni_boundary(&mut unowned, |env| {
        let s = events_handle(handle)?.stats()?;
        let v = [
            s.version as jlong,
            s.joined as jlong,
            s.pending as jlong,
            s.delivered as jlong,
            or_minus_one(s.oldest_pending_age_ms),
            jlong::from(s.is_protected),
            s.protected_since_ms as jlong,
            s.held_leaves as jlong,
            s.normal_records as jlong,
            s.syncs as jlong,
            s.snapshots as jlong,
            s.deltas as jlong,
            s.sync_errors as jlong,
            s.joins as jlong,
            s.leaves as jlong,
            s.changes as jlong,
            or_minus_one(s.age_ms),
        ];
        long_array(env, &v)
    })
}
