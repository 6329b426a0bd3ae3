package io.envid;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Verifies signed identities (the {@code Envid-Identity} header's JWTs)
 * locally, against the environment service's key set ({@code GET /v1/keys}),
 * which a native thread keeps fresh. Thread-safe: share one per process.
 *
 * <pre>{@code
 * try (Verifier v = Verifier.builder().endpoint("http://envsvc:7070").build()) {
 *     Claims c = v.verify(request.getHeader("Envid-Identity"));
 *     System.out.println(c.app() + " in " + c.env());
 * } catch (EnvidException e) {
 *     // e.kind(): IDENTITY_EXPIRED, IDENTITY_BAD_SIGNATURE, …
 * }
 * }</pre>
 */
public final class Verifier implements AutoCloseable {
    /** The request header that carries an identity. */
    public static final String HEADER = "Envid-Identity";

    private final OwnedHandle handle;

    private Verifier(long handle) {
        this.handle = new OwnedHandle(handle, Native::verifierFree);
    }

    /** A builder: no endpoint yet, audience {@code envid}, any issuer. */
    public static Builder builder() {
        return new Builder();
    }

    /** Settings of a {@link Verifier}. */
    public static final class Builder {
        private final List<String> endpoints = new ArrayList<>();
        private String token;
        private Duration connectTimeout;
        private Duration perPhaseTimeout;
        private String keysCacheFile;
        private String audience;
        private String issuer;

        private Builder() {}

        /** Adds an endpoint of the service ({@code http://host:port}); tried in order. */
        public Builder endpoint(String url) {
            endpoints.add(url);
            return this;
        }

        /** A bearer token (the key set itself needs none). */
        public Builder token(String token) {
            this.token = token;
            return this;
        }

        /** The TCP connect (and TLS handshake) timeout. */
        public Builder connectTimeout(Duration d) {
            this.connectTimeout = d;
            return this;
        }

        /** The per-phase timeout of each request. */
        public Builder perPhaseTimeout(Duration d) {
            this.perPhaseTimeout = d;
            return this;
        }

        /** Keep the key set in this file, and start from it when the service is down. */
        public Builder keysCacheFile(Path path) {
            this.keysCacheFile = path == null ? null : path.toString();
            return this;
        }

        /** The audience identities must be for (default {@code envid}). */
        public Builder audience(String audience) {
            this.audience = audience;
            return this;
        }

        /** The issuer identities must come from (default: any). */
        public Builder issuer(String issuer) {
            this.issuer = issuer;
            return this;
        }

        /** Fetches the key set (or reads the cache file) and starts the refresh thread. */
        public Verifier build() {
            long h = Native.verifierNew(endpoints.toArray(new String[0]), token,
                    Native.millis(connectTimeout), Native.millis(perPhaseTimeout), keysCacheFile,
                    audience, issuer);
            return new Verifier(h);
        }
    }

    /**
     * Verifies {@code token}: signature by a known key, expiry (60 s leeway),
     * issuer and audience.
     *
     * @throws EnvidException with an {@code IDENTITY_*} kind when it is not
     *     valid; the message never contains the token
     */
    public Claims verify(String token) {
        if (token == null) {
            throw new EnvidException(EnvidException.Kind.IDENTITY_MALFORMED, "no identity was presented");
        }
        return new Claims(handle.call(h -> Native.verifierVerify(h, token)));
    }

    /** Frees the native verifier and stops its thread; idempotent. */
    @Override
    public void close() {
        handle.close();
    }
}
