package io.envid;

import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Hostname rules, the KVM fallback: what a hostname such as
 * {@code l-flightqma9.f.beta.cn0} says about app, environment and data
 * center. Immutable and thread-safe; native memory is freed automatically
 * once the object is unreachable.
 */
public final class HostnameRules {
    private static volatile HostnameRules builtin;

    private final long handle;

    private HostnameRules(long handle) {
        this.handle = handle;
        Native.CLEANER.register(this, new Free(handle));
    }

    private static final class Free implements Runnable {
        private final long handle;

        Free(long handle) {
            this.handle = handle;
        }

        @Override
        public void run() {
            Native.freeRules(handle);
        }
    }

    /** The built-in rules ({@code l-<app><n>.<biz>[.<env>].<idc>[.<domain>]}). */
    public static HostnameRules builtin() {
        HostnameRules b = builtin;
        if (b == null) {
            synchronized (HostnameRules.class) {
                if (builtin == null) {
                    builtin = new HostnameRules(Native.rulesBuiltin());
                }
                b = builtin;
            }
        }
        return b;
    }

    /**
     * The built-in rules amended or replaced by a TOML rules file.
     *
     * @throws EnvidException of kind {@code IO} (unreadable) or {@code RULES} (invalid)
     */
    public static HostnameRules load(Path path) {
        if (path == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "path must not be null");
        }
        return new HostnameRules(Native.rulesLoad(path.toString()));
    }

    /** What the first matching rule reads from {@code hostname}; empty when none matches. */
    public Optional<HostnameMatch> explain(String hostname) {
        if (hostname == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "hostname must not be null");
        }
        String[] r;
        try {
            r = Native.explain(handle, hostname);
        } finally {
            Reference.reachabilityFence(this);
        }
        if (r == null) {
            return Optional.empty();
        }
        return Optional.of(new HostnameMatch(r[0], r[1], r[2], Boolean.parseBoolean(r[3]), r[4], r[5], r[6], r[7]));
    }
}
