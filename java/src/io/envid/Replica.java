package io.envid;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The environment service's whole registry in memory, for servers that look
 * up many IPs on a hot path: {@link #lookup(String)} is a local
 * longest-prefix match (exact IP, else the narrowest range) that never
 * touches the network, while a background thread keeps the registry in sync
 * (one snapshot, then long-polled deltas applied atomically). On errors it
 * keeps answering from the last version; with a {@linkplain
 * Builder#cacheFile(Path) cache file} it also answers after a restart during
 * an outage. The Rust library's replica, so Java and Rust servers agree.
 *
 * <p>Thread-safe: share one per process. Close it when done ({@link
 * AutoCloseable}; closing stops the sync thread); a replica that is never
 * closed is freed once unreachable. Calls after {@link #close()} throw an
 * {@link EnvidException} of kind {@code NULL_PARAMETER}.
 *
 * <pre>{@code
 * try (Replica r = Replica.builder().endpoint("http://envsvc.cn0:7070")
 *         .cacheFile(Path.of("/var/cache/envid/registry.json")).build()) {
 *     r.lookup("10.1.2.3").ifPresent(h -> System.out.println(h.getApp() + " " + h.getEnv()));
 * }
 * }</pre>
 */
public final class Replica implements AutoCloseable {
    private final OwnedHandle handle;

    private Replica(long handle) {
        this.handle = new OwnedHandle(handle, Native::replicaFree);
    }

    /** A builder; add at least one endpoint. */
    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@link Replica}. */
    public static final class Builder {
        private final List<String> endpoints = new ArrayList<>();
        private String token;
        private Duration connectTimeout;
        private Duration perPhaseTimeout;
        private String cacheFile;

        private Builder() {}

        /** Adds an endpoint, {@code http://HOST[:PORT]} or {@code https://…}; tried in turn on errors. */
        public Builder endpoint(String url) {
            endpoints.add(url);
            return this;
        }

        /** The bearer token sent on every request. */
        public Builder token(String token) {
            this.token = token;
            return this;
        }

        /** TCP/TLS connect timeout (default 500 ms). */
        public Builder connectTimeout(Duration d) {
            this.connectTimeout = d;
            return this;
        }

        /**
         * Per-phase timeout (default 10 s): bounds each phase of a request on
         * its own (sending it, waiting for the response head, reading the
         * body), and the slack added to a long poll's wait.
         */
        public Builder perPhaseTimeout(Duration d) {
            this.perPhaseTimeout = d;
            return this;
        }

        /**
         * The old name of {@link #perPhaseTimeout} (it never bounded the whole request).
         *
         * @deprecated use {@link #perPhaseTimeout}
         */
        @Deprecated
        public Builder requestTimeout(Duration d) {
            return perPhaseTimeout(d);
        }

        /**
         * Where the last snapshot is kept (written atomically), read at start
         * when the service is unreachable.
         */
        public Builder cacheFile(Path path) {
            this.cacheFile = path == null ? null : path.toString();
            return this;
        }

        /**
         * Fetches the registry (or reads the cache file when the service is
         * unreachable) and starts the sync thread.
         *
         * @throws EnvidException {@code INVALID_INPUT} without endpoints or with a bad one,
         *     {@code LOOKUP_FAILED} when neither the service nor the cache file gave data
         */
        public Replica build() {
            long h = Native.replicaNew(endpoints.toArray(new String[0]), token,
                    Native.millis(connectTimeout), Native.millis(perPhaseTimeout), cacheFile);
            return new Replica(h);
        }
    }

    /**
     * The environment of {@code ip} (IPv4 or IPv6 text) from the replica;
     * empty when the registry does not know it. Never blocks on the network.
     *
     * @throws EnvidException {@code INVALID_INPUT} for a malformed IP
     */
    public Optional<HostRecord> lookup(String ip) {
        if (ip == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "ip must not be null");
        }
        String[] r = handle.call(h -> Native.replicaLookup(h, ip));
        return r == null ? Optional.empty() : Optional.of(new HostRecord(r));
    }

    /** The replica's counters. */
    public Stats stats() {
        return new Stats(handle.call(Native::replicaStats));
    }

    /** Stops the sync thread and frees the replica; waits for calls in progress. Idempotent. */
    @Override
    public void close() {
        handle.close();
    }

    /** Counters of a {@link Replica}. */
    public static final class Stats {
        private final long[] v;

        Stats(long[] v) {
            this.v = v;
        }

        /** The registry version held. */
        public long getVersion() {
            return v[0];
        }

        /** Records held (single IPs and ranges). */
        public long getRecords() {
            return v[1];
        }

        /** Time since the last successful sync; empty when it never synced (started from the cache file). */
        public Optional<Duration> getAge() {
            return v[2] < 0 ? Optional.empty() : Optional.of(Duration.ofMillis(v[2]));
        }

        /** Successful exchanges with the service. */
        public long getSyncs() {
            return v[3];
        }

        /** Whole-registry fetches. */
        public long getSnapshots() {
            return v[4];
        }

        /** Deltas applied. */
        public long getDeltas() {
            return v[5];
        }

        /** Failed exchanges (the replica kept serving its last version). */
        public long getSyncErrors() {
            return v[6];
        }

        /** True when the data came from the cache file and no sync has succeeded since. */
        public boolean isFromCache() {
            return v[7] != 0;
        }

        /** Cache files that could not be read or written. */
        public long getCacheErrors() {
            return v[8];
        }

        /**
         * True while the replica protects its view against a mass deletion: it serves its last healthy view
         * plus new records and holds the deletes.
         */
        public boolean isProtected() {
            return v[9] != 0;
        }

        /** Deletes held while protected; 0 otherwise. */
        public long getHeldDeletes() {
            return v[10];
        }

        /** When the current protection started; empty when not protected. */
        public Optional<Instant> getProtectedSince() {
            return v[11] == 0 ? Optional.empty() : Optional.of(Instant.ofEpochMilli(v[11]));
        }

        /** The recent normal record count protection compares with. */
        public long getNormalRecords() {
            return v[12];
        }

        /** The cache file's state: {@code unused}, {@code missing}, {@code corrupt}, {@code unusable} or {@code present}. */
        public String getCacheState() {
            switch ((int) v[13]) {
                case 1:
                    return "missing";
                case 2:
                    return "corrupt";
                case 3:
                    return "unusable";
                case 4:
                    return "present";
                default:
                    return "unused";
            }
        }

        /** How old the cache file's content is; empty when there is no usable cache file. */
        public Optional<Duration> getCacheAge() {
            return v[14] < 0 ? Optional.empty() : Optional.of(Duration.ofMillis(v[14]));
        }

        @Override
        public String toString() {
            return "Stats{version=" + v[0] + ", records=" + v[1] + ", ageMs=" + v[2] + ", syncs=" + v[3]
                    + ", snapshots=" + v[4] + ", deltas=" + v[5] + ", syncErrors=" + v[6] + ", fromCache="
                    + (v[7] != 0) + ", cacheErrors=" + v[8] + ", protected=" + (v[9] != 0) + ", heldDeletes="
                    + v[10] + ", normalRecords=" + v[12] + ", cache=" + getCacheState() + ", cacheAgeMs=" + v[14]
                    + "}";
        }
    }
}
