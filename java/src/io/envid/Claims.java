package io.envid;

import java.util.Optional;

/**
 * The claims of a verified identity (see {@link Verifier}): who signed it,
 * for whom, how long it is valid, and the environment the service checked.
 * Times are unix seconds.
 */
public final class Claims {
    private final String[] v;

    Claims(String[] v) {
        this.v = v;
    }

    /** The claims as JSON, exactly as the Rust library and the C API give them. */
    public String json() {
        return v[0];
    }

    /** The issuer ({@code iss}): the service's name. */
    public String issuer() {
        return v[1];
    }

    /** The subject ({@code sub}): {@code envid://<app>/<env>}. */
    public String subject() {
        return v[2];
    }

    /** The audience ({@code aud}). */
    public String audience() {
        return v[3];
    }

    /** Issued at ({@code iat}). */
    public long issuedAt() {
        return Long.parseLong(v[4]);
    }

    /** Not before ({@code nbf}). */
    public long notBefore() {
        return Long.parseLong(v[5]);
    }

    /** Expires at ({@code exp}). */
    public long expiresAt() {
        return Long.parseLong(v[6]);
    }

    /** The token's unique id ({@code jti}). */
    public String id() {
        return v[7];
    }

    /** The application code. */
    public String app() {
        return v[8];
    }

    /** The environment name. */
    public String env() {
        return v[9];
    }

    /** The environment class ({@code prod}, {@code beta}, …), when given. */
    public Optional<String> envType() {
        return Optional.ofNullable(v[10]);
    }

    /** The data center. */
    public String idc() {
        return v[11];
    }

    /** The address the identity was issued to, when given. */
    public Optional<String> ip() {
        return Optional.ofNullable(v[12]);
    }

    /** The sub environment, when given. */
    public Optional<String> subEnv() {
        return Optional.ofNullable(v[13]);
    }

    @Override
    public String toString() {
        return "Claims" + json();
    }
}
