//! Natives of `io.envid.Replica`.

use jni::objects::{JClass, JLongArray, JObjectArray, JString};
use jni::sys::jlong;
use jni::EnvUnowned;

use super::host_record::optional_record;
use super::{
    borrow_handle, connection_options, handle_ptr, into_handle, jni_boundary, long_array,
    opt_string_arg, string_arg, JResult,
};
use crate::replica::{envid_replica, envid_replica_free};

/// Borrows the replica behind a handle.
fn replica_handle<'a>(h: jlong) -> JResult<&'a envid_replica> {
    // SAFETY: handles come from `replicaNew` and are freed by the Java
    // Replica only after every call on it returned (it holds a lock).
    unsafe { borrow_handle(h, "replica handle (closed?)") }
}

/// An age for Java: -1 stands for the C API's `UINT64_MAX` (never synced,
/// no cache file).
fn age_ms(ms: u64) -> jlong {
    if ms == u64::MAX {
        -1
    } else {
        ms as jlong
    }
}

/// `static native long replicaNew(String[] endpoints, String token, long
/// connectMs, long perPhaseMs, String cacheFile)`: values ≤ 0 keep the
/// defaults; a null cache file means none. Fetches the registry (or reads
/// the cache file) before returning.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaNew<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    endpoints: JObjectArray<'local, JString<'local>>,
    token: JString<'local>,
    connect_ms: jlong,
    per_phase_ms: jlong,
    cache_file: JString<'local>,
) -> jlong {
    jni_boundary(&mut unowned, |env| {
        let opts = connection_options(env, &endpoints, &token, connect_ms, per_phase_ms)?;
        let opts = opts.with_cache_file(opt_string_arg(env, &cache_file)?);
        Ok(into_handle(envid_replica::new(&opts)?))
    })
}

/// `static native void replicaFree(long handle)`; 0 is ignored. Stops the
/// replica's sync thread.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    jni_boundary(&mut unowned, |_env| {
        // SAFETY: 0 or an unfreed handle from replicaNew, no longer in use.
        unsafe { envid_replica_free(handle_ptr(handle)) };
        Ok(())
    })
}

/// `static native String[] replicaLookup(long handle, String ip)`: the
/// record, or null when the registry does not know the IP.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaLookup<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    ip: JString<'local>,
) -> JObjectArray<'local, JString<'local>> {
    jni_boundary(&mut unowned, |env| {
        let r = replica_handle(handle)?;
        let ip = string_arg(env, &ip, "ip")?;
        optional_record(env, r.lookup(&ip)?)
    })
}

/// `static native long[] replicaStats(long handle)`: version, records,
/// age ms (-1 when never synced), syncs, snapshots, deltas, sync errors,
/// from cache (0/1), cache errors, protected (0/1), held deletes, protected
/// since (Unix ms, 0 when not), normal records, cache state (the
/// `ENVID_CACHE_*` value), cache age ms (-1 when none).
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaStats<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JLongArray<'local> {
    jni_boundary(&mut unowned, |env| {
        let s = replica_handle(handle)?.stats();
        let v = [
            s.version as jlong,
            s.records as jlong,
            age_ms(s.age_ms),
            s.syncs as jlong,
            s.snapshots as jlong,
            s.deltas as jlong,
            s.sync_errors as jlong,
            jlong::from(s.from_cache),
            s.cache_errors as jlong,
            jlong::from(s.is_protected),
            s.held_deletes as jlong,
            s.protected_since_ms as jlong,
            s.normal_records as jlong,
            jlong::from(s.cache_state),
            age_ms(s.cache_age_ms),
        ];
        long_array(env, &v)
    })
}
