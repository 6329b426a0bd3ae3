//! Natives of `io.envid.Replica`.

use jni::objects::{JClass, JLongArray, JObjectArray, JString};
use jni::sys::jlong;
use jni::EnvUnowned;

use super::host_record::record_array;
use super::{millis, opt_string_arg, string_arg, string_array_arg, JResult, ThrowEnvid};
use crate::error::Fail;
use crate::options::envid_lookup_options;
use crate::replica::envid_replica;

/// Borrows the replica behind a handle.
fn replica_handle<'a>(h: jlong) -> JResult<&'a envid_replica> {
    let p = h as usize as *const envid_replica;
    // SAFETY: handles come from `replicaNew` and are freed by the Java
    // Replica only after every call on it returned (it holds a lock).
    unsafe { p.as_ref() }.ok_or_else(|| Fail::null("replica handle (closed?)").into())
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
    unowned
        .with_env(|env| -> JResult<jlong> {
            let urls = string_array_arg(env, &endpoints, "endpoints", "endpoint")?;
            let token = opt_string_arg(env, &token)?;
            let cache_file = opt_string_arg(env, &cache_file)?;
            let opts = envid_lookup_options::from_parts(
                urls,
                token,
                millis(connect_ms),
                millis(per_phase_ms),
                None,
                None,
                None,
                None,
            )
            .with_cache_file(cache_file);
            Ok(Box::into_raw(Box::new(envid_replica::new(&opts)?)) as usize as jlong)
        })
        .resolve::<ThrowEnvid>()
}

/// `static native void replicaFree(long handle)`; 0 is ignored. Stops the
/// replica's sync thread.
#[no_mangle]
pub extern "system" fn Java_io_envid_Native_replicaFree<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned
        .with_env(|_env| -> JResult<()> {
            // SAFETY: 0 or an unfreed handle from replicaNew, no longer in use.
            unsafe { crate::replica::envid_replica_free(handle as usize as *mut _) };
            Ok(())
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JObjectArray<'local, JString<'local>>> {
            let r = replica_handle(handle)?;
            let ip = string_arg(env, &ip, "ip")?;
            match r.lookup(&ip)? {
                Some(rec) => record_array(env, &rec),
                None => Ok(JObjectArray::default()),
            }
        })
        .resolve::<ThrowEnvid>()
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
    unowned
        .with_env(|env| -> JResult<JLongArray<'local>> {
            let s = replica_handle(handle)?.stats();
            let age = if s.age_ms == u64::MAX {
                -1
            } else {
                s.age_ms as jlong
            };
            let v = [
                s.version as jlong,
                s.records as jlong,
                age,
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
                if s.cache_age_ms == u64::MAX {
                    -1
                } else {
                    s.cache_age_ms as jlong
                },
            ];
            let arr = JLongArray::new(env, v.len())?;
            arr.set_region(env, 0, &v)?;
            Ok(arr)
        })
        .resolve::<ThrowEnvid>()
}
