package io.envid;

import java.lang.ref.Reference;
import java.time.Duration;
import java.util.Optional;

/**
 * Registers this instance with the environment service, renews and removes
 * the registration, and hands the process the signed identity the service
 * returns (when it signs identities). Thread-safe: share one per process.
 *
 * <pre>{@code
 * try (Registrar r = Registrar.builder().endpoint("http://envsvc:7070").token(appToken).build()) {
 *     r.register(Environment.current(), Duration.ofMinutes(5));
 *     r.identity().ifPresent(id -> outgoing.setHeader(Verifier.HEADER, id));
 * }
 * }</pre>
 *
 * <p>The identity is a credential: never log it.
 */
public final class Registrar implements AutoCloseable {
    private final OwnedHandle handle;

    private Registrar(long handle) {
        this.handle = new OwnedHandle(handle, Native::registrarFree);
    }

    /** A builder: no endpoint, no token, the library's default timeouts. */
    public static Builder builder() {
        return new Builder();
    }

    /** Settings of a {@link Registrar}. */
    public static final class Builder extends ServiceBuilder<Builder> {
        private Builder() {}

        /**
         * Builds the registrar; makes no request yet.
         *
         * @throws EnvidException {@code INVALID_INPUT} without an endpoint or with a malformed one
         */
        public Registrar build() {
            long h = Native.registrarNew(endpointArray(), token,
                    Native.millis(connectTimeout), Native.millis(perPhaseTimeout));
            return new Registrar(h);
        }
    }

    /**
     * Registers the environment's IP with the environment's facts (never its
     * app token) for {@code lease}.
     *
     * @throws EnvidException {@code INVALID_INPUT} when the environment has no IP,
     *     {@code LOOKUP_FAILED} when the service refused or failed
     */
    public void register(Environment env, Duration lease) {
        register(env, lease, null);
    }

    /**
     * Registers {@code ip} (null: the environment's IP) with the
     * environment's facts for {@code lease}.
     *
     * @throws EnvidException {@code INVALID_INPUT} for a malformed IP,
     *     {@code LOOKUP_FAILED} when the service refused or failed
     */
    public void register(Environment env, Duration lease, String ip) {
        if (env == null || lease == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "env and lease must not be null");
        }
        if (lease.isNegative()) {
            throw new EnvidException(EnvidException.Kind.INVALID_INPUT, "the lease must not be negative");
        }
        long seconds = lease.getSeconds();
        try {
            handle.call(h -> {
                Native.registrarRegister(h, env.nativeHandle(), seconds, ip);
                return null;
            });
        } finally {
            Reference.reachabilityFence(env);
        }
    }

    /**
     * Renews {@code ip}'s lease (and the identity). Only the registration
     * this registrar made is renewed: when another host registered
     * {@code ip} since, it throws {@code LOOKUP_FAILED} (HTTP 409) and
     * renews nothing (registering again would take the IP from that host).
     *
     * @return false when the service no longer knows {@code ip}: register again
     */
    public boolean renew(String ip) {
        requireIp(ip);
        return handle.call(h -> Native.registrarRenew(h, ip));
    }

    /**
     * Removes {@code ip}'s registration; an unknown IP is not an error. Only
     * the registration this registrar made: one another host made since is
     * left alone, without an error.
     */
    public void deregister(String ip) {
        requireIp(ip);
        handle.call(h -> {
            Native.registrarDeregister(h, ip);
            return null;
        });
    }

    /**
     * The newest signed identity (a JWT) from a registration or renewal;
     * empty when the service signs none. Renew at least every half of its
     * lifetime.
     */
    public Optional<String> identity() {
        return Optional.ofNullable(handle.call(Native::registrarIdentity));
    }

    private static void requireIp(String ip) {
        if (ip == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "ip must not be null");
        }
    }

    /** Frees the native registrar; later calls throw. */
    @Override
    public void close() {
        handle.close();
    }
}
