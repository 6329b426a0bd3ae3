package io.envid;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * How to reach the environment service, shared by the builders of
 * {@link LookupClient}, {@link Replica}, {@link Verifier}, {@link Registrar}
 * and {@link Events}: endpoints, token and timeouts (the Java face of the
 * library's one {@code ServiceConfig}).
 *
 * @param <B> the concrete builder, returned by every setter for chaining
 */
public abstract class ServiceBuilder<B extends ServiceBuilder<B>> {
    final List<String> endpoints = new ArrayList<>();
    String token;
    Duration connectTimeout;
    Duration perPhaseTimeout;

    ServiceBuilder() {}

    @SuppressWarnings("unchecked")
    private B self() {
        return (B) this;
    }

    /** Adds an endpoint, {@code http://HOST[:PORT]} or {@code https://…}; tried in order. */
    public B endpoint(String url) {
        endpoints.add(url);
        return self();
    }

    /** The bearer token sent on every request (never logged). */
    public B token(String token) {
        this.token = token;
        return self();
    }

    /** TCP/TLS connect timeout (default 500 ms). */
    public B connectTimeout(Duration d) {
        this.connectTimeout = d;
        return self();
    }

    /**
     * Per-phase timeout (default 2 s): bounds each phase of a request on
     * its own (sending it, waiting for the response head, reading the
     * body).
     */
    public B perPhaseTimeout(Duration d) {
        this.perPhaseTimeout = d;
        return self();
    }

    /**
     * The old name of {@link #perPhaseTimeout} (it never bounded the whole request).
     *
     * @deprecated use {@link #perPhaseTimeout}
     */
    @Deprecated
    public B requestTimeout(Duration d) {
        return perPhaseTimeout(d);
    }

    /** The endpoints, for the native builder. */
    String[] endpointArray() {
        return endpoints.toArray(new String[0]);
    }
}
