package io.envid;

import java.lang.ref.Cleaner;

/**
 * The native methods of {@code libenvid_ffi} (Rust, {@code crates/envid-ffi/src/jni/}, one file per Java class).
 * Package-private: the public API is {@link Environment}, {@link HostnameRules},
 * {@link LookupClient} and the other clients.
 *
 * <p>The library is loaded once, when this class initializes, by
 * {@link NativeLoader}: {@code -Denvid.library=FILE}, else
 * {@code java.library.path}, else the copy bundled in the jar.
 */
final class Native {
    private Native() {}

    /** Frees native objects whose Java owner became unreachable. */
    static final Cleaner CLEANER = Cleaner.create();

    /** A timeout for the native builders: 0 (keep the default) for null, else at least 1 ms. */
    static long millis(java.time.Duration d) {
        if (d == null) {
            return 0;
        }
        if (d.isNegative() || d.isZero()) {
            throw new EnvidException(EnvidException.Kind.INVALID_INPUT, "durations must be positive: " + d);
        }
        return Math.max(1, d.toMillis());
    }

    // Field numbers: the C API's envid_field.
    static final int APP = 0;
    static final int ENV = 1;
    static final int ENV_TYPE = 2;
    static final int SUB_ENV = 3;
    static final int IDC = 4;
    static final int PLATFORM = 5;
    static final int HOSTNAME = 6;
    static final int IP = 7;
    static final int RELEASE_ID = 8;
    static final int RELEASE_VERSION = 9;
    static final int RELEASE_BATCH = 10;
    static final int RELEASE_DEPLOYED_AT = 11;
    static final int K8S_CLUSTER = 12;
    static final int K8S_NAMESPACE = 13;
    static final int K8S_POD = 14;
    static final int K8S_NODE = 15;
    static final int K8S_WORKLOAD = 16;
    static final int CONTAINER_RUNTIME = 17;
    static final int CONTAINER_ID = 18;
    static final int VIRTUALIZATION = 19;
    static final int K8S_POD_UID = 20;
    /** How many fields there are (the C API's ENVID_FIELD_COUNT). */
    static final int FIELD_COUNT = 21;

    static {
        NativeLoader.load();
    }

    static native long current(String[] properties);

    static native long load(String descriptor, String root, String rulesFile, boolean strict, boolean envVars,
            String[] properties);

    static native void freeEnvironment(long handle);

    static native String field(long handle, int field);

    /**
     * Everything an {@link Environment} keeps, in one call: {@code {json,
     * field 0 .. field FIELD_COUNT-1 (null when absent), label key, label
     * value, ...}}, the JSON without token or sources, labels in key order.
     */
    static native String[] snapshot(long handle);

    static native String toJson(long handle, boolean secrets, boolean explain);

    static native long rulesBuiltin();

    static native long rulesLoad(String path);

    static native void freeRules(long handle);

    static native String[] explain(long rules, String hostname);

    static native long lookupNew(String[] endpoints, String token, long connectMs, long perPhaseMs, long ttlMs,
            long negativeTtlMs, long maxStaleMs, int maxRetries);

    static native void lookupFree(long handle);

    /** The record's fields ({@link HostRecord} layout), or null when unknown. */
    static native String[] lookup(long handle, String ip);

    /** For each IP a record (String[]) or null; throws when any lookup failed. */
    static native Object[] lookupMany(long handle, String[] ips);

    /**
     * For each IP a record (String[]), null (unknown) or the EnvidException
     * of its failure (returned, not thrown).
     */
    static native Object[] lookupEach(long handle, String[] ips);

    /** hits, misses, stale, requests, errors. */
    static native long[] lookupStats(long handle);

    /** Builds a replica (fetches the registry or reads the cache file); values <= 0 keep defaults. */
    static native long replicaNew(String[] endpoints, String token, long connectMs, long perPhaseMs,
            String cacheFile);

    static native void replicaFree(long handle);

    /** The record's fields ({@link HostRecord} layout), or null when unknown. */
    static native String[] replicaLookup(long handle, String ip);

    /** version, records, age ms (-1: never synced), syncs, snapshots, deltas, sync errors, from cache, cache errors. */
    static native long[] replicaStats(long handle);

    /** A verifier of signed identities; see {@link Verifier}. */
    static native long verifierNew(String[] endpoints, String token, long connectMs, long perPhaseMs,
            String keysCacheFile, String audience, String issuer);

    /** Frees a verifier (0 is ignored). */
    static native void verifierFree(long handle);

    /** The claims of a valid identity (see {@link Claims}), or throws. */
    static native String[] verifierVerify(long handle, String token);

    /** A registrar; values <= 0 keep the defaults. */
    static native long registrarNew(String[] endpoints, String token, long connectMs, long perPhaseMs);

    /** Frees a registrar (0 is ignored). */
    static native void registrarFree(long handle);

    /** Registers {@code ip} (null: the environment's) with the environment's facts. */
    static native void registrarRegister(long handle, long environment, long leaseSeconds, String ip);

    /** Renews the lease; false when the service no longer knows the IP. */
    static native boolean registrarRenew(long handle, String ip);

    /** Removes the registration. */
    static native void registrarDeregister(long handle, String ip);

    /** The newest signed identity, or null. */
    static native String registrarIdentity(long handle);

    /**
     * A consumer of join and leave events; values <= 0 keep the defaults, empty filter arrays match anything,
     * a null checkpoint means none.
     */
    static native long eventsNew(String[] endpoints, String token, long connectMs, long perPhaseMs, String[] apps,
            String[] envs, String[] envTypes, String[] idcs, String checkpoint);

    /** Frees a consumer, writing its acknowledgements first (0 is ignored). */
    static native void eventsFree(long handle);

    /** {String[] head, String[] record, String[] previous} ({@link Events.Event} layout), or null on timeout. */
    static native Object[] eventsNext(long handle, long timeoutMs);

    /** Acknowledges the delivered event with this id and every one before it. */
    static native void eventsAck(long handle, String id);

    /** Writes the acknowledgements not yet written. */
    static native void eventsFlush(long handle);

    /** Delivers every unacknowledged event again. */
    static native void eventsRedeliver(long handle);

    /** The stream's last problem, or null. */
    static native String eventsLastError(long handle);

    /** The {@link Events.Stats} layout. */
    static native long[] eventsStats(long handle);

    /** Panics in Rust; for the test suite only (present only in a library built with envid-ffi's test-hooks feature). */
    static native void panicForTest();
}
