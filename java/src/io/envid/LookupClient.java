package io.envid;

import java.time.Duration;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The IP-to-environment lookup client, for servers that see a client IP and
 * must learn its environment: a cache (positive and shorter negative TTL),
 * request coalescing, serve-stale during outages, at most one jittered retry,
 * circuit breakers and failover across endpoints (one per data center). The
 * Rust library's client, so Java and Rust servers behave the same.
 *
 * <p>Thread-safe: share one per process. Blocking. Close it when done
 * ({@link AutoCloseable}); a client that is never closed is freed once
 * unreachable. Calls after {@link #close()} throw an {@link EnvidException}
 * of kind {@code NULL_PARAMETER}.
 *
 * <pre>{@code
 * try (LookupClient c = LookupClient.builder().endpoint("http://envsvc.cn0:7070").build()) {
 *     c.lookup("10.1.2.3").ifPresent(r -> System.out.println(r.getApp() + " " + r.getEnv()));
 * }
 * }</pre>
 */
public final class LookupClient implements AutoCloseable {
    private final OwnedHandle handle;

    private LookupClient(long handle) {
        this.handle = new OwnedHandle(handle, Native::lookupFree);
    }

    /** A builder; add at least one endpoint. */
    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@link LookupClient}. */
    public static final class Builder extends ServiceBuilder<Builder> {
        private Duration ttl;
        private Duration negativeTtl;
        private Duration maxStale;
        private int maxRetries = -1;

        private Builder() {}

        /** How long a known answer is cached (default 5 min). */
        public Builder ttl(Duration d) {
            this.ttl = d;
            return this;
        }

        /** How long an "unknown IP" answer is cached (default 30 s). */
        public Builder negativeTtl(Duration d) {
            this.negativeTtl = d;
            return this;
        }

        /** The oldest answer served when the service fails (default 1 h). */
        public Builder maxStale(Duration d) {
            this.maxStale = d;
            return this;
        }

        /** Retries per lookup after the first attempt (default 1). */
        public Builder maxRetries(int n) {
            if (n < 0) {
                throw new EnvidException(EnvidException.Kind.INVALID_INPUT, "maxRetries must be >= 0");
            }
            this.maxRetries = n;
            return this;
        }

        /**
         * The client (no request is made yet).
         *
         * @throws EnvidException of kind {@code INVALID_INPUT} without endpoints or with a bad one
         */
        public LookupClient build() {
            long h = Native.lookupNew(endpointArray(), token,
                    Native.millis(connectTimeout), Native.millis(perPhaseTimeout), Native.millis(ttl),
                    Native.millis(negativeTtl), Native.millis(maxStale), maxRetries);
            return new LookupClient(h);
        }
    }

    /**
     * The environment of {@code ip} (IPv4 or IPv6 text); empty when the
     * service does not know it.
     *
     * @throws EnvidException {@code INVALID_INPUT} for a malformed IP,
     *     {@code LOOKUP_FAILED} when the service failed and no stale answer was left
     */
    public Optional<HostRecord> lookup(String ip) {
        if (ip == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "ip must not be null");
        }
        String[] r = handle.call(h -> Native.lookup(h, ip));
        return r == null ? Optional.empty() : Optional.of(new HostRecord(r));
    }

    /**
     * Looks up many IPs at once (cached ones locally, the rest in batches of
     * at most 1,000). The map has one entry per distinct IP, in the order
     * given; empty values are IPs the service does not know.
     *
     * @throws EnvidException {@code INVALID_INPUT} for a malformed IP,
     *     {@code LOOKUP_FAILED} when any lookup failed (see
     *     {@link #lookupEach} for the answers that did not)
     */
    public Map<String, Optional<HostRecord>> lookupMany(Collection<String> ips) {
        String[] in = ipArray(ips);
        Object[] out = handle.call(h -> Native.lookupMany(h, in));
        Map<String, Optional<HostRecord>> m = new LinkedHashMap<>();
        for (int i = 0; i < in.length; i++) {
            m.put(in[i], out[i] == null ? Optional.empty() : Optional.of(new HostRecord((String[]) out[i])));
        }
        return m;
    }

    /**
     * Looks up many IPs at once, like {@link #lookupMany}, but gives each IP
     * its own outcome instead of throwing when some fail: the records found
     * stay usable when others time out, and a malformed IP fails alone (kind
     * {@code INVALID_INPUT}). The map has one entry per distinct IP, in the
     * order given.
     *
     * @throws EnvidException {@code NULL_PARAMETER} when {@code ips} or one
     *     of its elements is null, or the client is closed
     */
    public Map<String, LookupResult> lookupEach(Collection<String> ips) {
        String[] in = ipArray(ips);
        Object[] out = handle.call(h -> Native.lookupEach(h, in));
        Map<String, LookupResult> m = new LinkedHashMap<>();
        for (int i = 0; i < in.length; i++) {
            Object o = out[i];
            LookupResult r = o instanceof EnvidException e ? LookupResult.failed(e)
                    : LookupResult.answered(o == null ? null : new HostRecord((String[]) o));
            m.putIfAbsent(in[i], r);
        }
        return m;
    }

    private static String[] ipArray(Collection<String> ips) {
        if (ips == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "ips must not be null");
        }
        String[] in = ips.toArray(new String[0]);
        for (String s : in) {
            if (s == null) {
                throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "ips must not contain null");
            }
        }
        return in;
    }

    /** The client's counters. */
    public Stats stats() {
        long[] s = handle.call(Native::lookupStats);
        return new Stats(s[0], s[1], s[2], s[3], s[4]);
    }

    /** Frees the client; waits for calls in progress. Idempotent. */
    @Override
    public void close() {
        handle.close();
    }

    /** Counters of a {@link LookupClient}. */
    public static final class Stats {
        private final long hits;
        private final long misses;
        private final long stale;
        private final long requests;
        private final long errors;

        Stats(long hits, long misses, long stale, long requests, long errors) {
            this.hits = hits;
            this.misses = misses;
            this.stale = stale;
            this.requests = requests;
            this.errors = errors;
        }

        /** Lookups answered from a fresh cache entry. */
        public long getHits() {
            return hits;
        }

        /** Lookups that needed the service (or a wait on another thread's request). */
        public long getMisses() {
            return misses;
        }

        /** Lookups answered with a stale value because the service failed. */
        public long getStale() {
            return stale;
        }

        /** HTTP requests sent (retries included). */
        public long getRequests() {
            return requests;
        }

        /** Failed requests, and lookups refused by open circuit breakers. */
        public long getErrors() {
            return errors;
        }

        @Override
        public String toString() {
            return "Stats{hits=" + hits + ", misses=" + misses + ", stale=" + stale + ", requests=" + requests
                    + ", errors=" + errors + "}";
        }
    }
}
