package io.envid;

import java.lang.ref.Reference;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * Where this process runs: app, environment, data center, platform, release
 * and Kubernetes facts, as the envid Rust library determines them (the same
 * code, so the same answers as Rust crates and C programs on the host).
 *
 * <p>Get the process-wide environment with {@link #current()}, or load one
 * with {@link #load(LoadOptions)}. Instances are immutable and thread-safe.
 * Native memory of a loaded environment is freed automatically once the
 * object is unreachable; the process-wide one lives as long as the process.
 *
 * <p>Every failure is an {@link EnvidException}.
 */
public final class Environment {
    private static volatile Environment current;

    private final long handle;

    private Environment(long handle, boolean owned) {
        this.handle = handle;
        if (owned) {
            Native.CLEANER.register(this, new Free(handle));
        }
    }

    /** Frees a loaded environment; holds no reference to its owner. */
    private static final class Free implements Runnable {
        private final long handle;

        Free(long handle) {
            this.handle = handle;
        }

        @Override
        public void run() {
            Native.freeEnvironment(handle);
        }
    }

    /**
     * The process-wide environment: loaded once with the defaults (process
     * variables, {@code ENVID_DESCRIPTOR} or {@code /etc/envid/environment.toml},
     * built-in hostname rules) and cached. A failed load is not cached: the
     * next call tries again.
     *
     * @throws EnvidException when the environment cannot be identified
     */
    public static Environment current() {
        Environment c = current;
        if (c != null) {
            return c;
        }
        synchronized (Environment.class) {
            if (current == null) {
                current = new Environment(Native.current(), false);
            }
            return current;
        }
    }

    /**
     * Loads a fresh environment (not cached).
     *
     * @throws EnvidException with kind {@code IO}, {@code DESCRIPTOR}, {@code RULES},
     *     {@code INVALID_VALUE} or {@code UNIDENTIFIED}
     */
    public static Environment load(LoadOptions options) {
        LoadOptions o = options == null ? LoadOptions.defaults() : options;
        long h = Native.load(o.descriptor, o.root, o.rulesFile, o.strict, o.envVars);
        return new Environment(h, true);
    }

    private String field(int f) {
        try {
            return Native.field(handle, f);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    private Optional<String> optional(int f) {
        return Optional.ofNullable(field(f));
    }

    /** The application code ({@code flight_order}). */
    public Optional<String> getApp() {
        return optional(Native.APP);
    }

    /** The environment name as the company spells it ({@code prod}, {@code beta}, {@code betanoah}). */
    public String getEnv() {
        return field(Native.ENV);
    }

    /**
     * The class of {@link #getEnv()}: {@code prod}, {@code beta}, {@code dev},
     * {@code test}, {@code local}, or the lower-case name for others.
     */
    public String getEnvType() {
        return field(Native.ENV_TYPE);
    }

    /** The sub environment / build group ({@code noahauto-2}). */
    public Optional<String> getSubEnv() {
        return optional(Native.SUB_ENV);
    }

    /** The data center ({@code cn0}). */
    public String getIdc() {
        return field(Native.IDC);
    }

    /** The host kind: {@code container}, {@code kvm}, {@code physical} or {@code unknown}. */
    public String getPlatform() {
        return field(Native.PLATFORM);
    }

    /** This host's name. */
    public Optional<String> getHostname() {
        return optional(Native.HOSTNAME);
    }

    /** The primary IP address, as text. */
    public Optional<String> getIp() {
        return optional(Native.IP);
    }

    /** The container runtime ({@code docker}, {@code podman}, {@code containerd}, {@code cri-o}, {@code kubernetes}). */
    public Optional<String> getContainerRuntime() {
        return optional(Native.CONTAINER_RUNTIME);
    }

    /** The container id (64 hex characters). */
    public Optional<String> getContainerId() {
        return optional(Native.CONTAINER_ID);
    }

    /** The hypervisor, when visible ({@code kvm}, {@code vmware}, …). */
    public Optional<String> getVirtualization() {
        return optional(Native.VIRTUALIZATION);
    }

    /** The release id ({@code r-20261122-0042}). */
    public Optional<String> getReleaseId() {
        return optional(Native.RELEASE_ID);
    }

    /** The application version of the release ({@code 2.14.0}). */
    public Optional<String> getReleaseVersion() {
        return optional(Native.RELEASE_VERSION);
    }

    /** The rollout batch of the release. */
    public OptionalInt getReleaseBatch() {
        String b = field(Native.RELEASE_BATCH);
        return b == null ? OptionalInt.empty() : OptionalInt.of(Integer.parseUnsignedInt(b));
    }

    /** The deployment time, RFC 3339 as written. */
    public Optional<String> getReleaseDeployedAt() {
        return optional(Native.RELEASE_DEPLOYED_AT);
    }

    /** The Kubernetes cluster. */
    public Optional<String> getK8sCluster() {
        return optional(Native.K8S_CLUSTER);
    }

    /** The Kubernetes namespace. */
    public Optional<String> getK8sNamespace() {
        return optional(Native.K8S_NAMESPACE);
    }

    /** The pod name. */
    public Optional<String> getK8sPod() {
        return optional(Native.K8S_POD);
    }

    /** The node name. */
    public Optional<String> getK8sNode() {
        return optional(Native.K8S_NODE);
    }

    /** The workload (deployment, statefulset) name. */
    public Optional<String> getK8sWorkload() {
        return optional(Native.K8S_WORKLOAD);
    }

    /** One label from the release system. */
    public Optional<String> getLabel(String key) {
        if (key == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "key must not be null");
        }
        try {
            return Optional.ofNullable(Native.label(handle, key));
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** All labels, in key order (unmodifiable). */
    public Map<String, String> getLabels() {
        String[] kv;
        try {
            kv = Native.labels(handle);
        } finally {
            Reference.reachabilityFence(this);
        }
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i + 1 < kv.length; i += 2) {
            m.put(kv[i], kv[i + 1]);
        }
        return Collections.unmodifiableMap(m);
    }

    /** The environment as JSON, without the token and without sources. */
    public String toJson() {
        return toJson(false, false);
    }

    /**
     * The environment as JSON: the same text as the Rust library's
     * {@code Environment::report(secrets, explain)}.
     *
     * @param secrets include the app token
     * @param explain include a {@code sources} map (where each field came from)
     */
    public String toJson(boolean secrets, boolean explain) {
        try {
            return Native.toJson(handle, secrets, explain);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The JSON form (no token). */
    @Override
    public String toString() {
        return toJson();
    }
}
