package io.envid;

import java.lang.ref.Reference;
import java.util.Collections;
import java.util.HashMap;
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
 * <p>Every value is read from the native library once, when the object is
 * made (the probes for hostname, IP, container and virtualization run
 * then); the getters return final fields and never cross JNI, so they cost
 * what a Java field read costs. Only {@link #toJson(boolean, boolean)} with
 * a token or sources asks the native object again.
 *
 * <p>Every failure is an {@link EnvidException}.
 */
public final class Environment {
    private static volatile Environment current;

    /**
     * The native object, kept only for {@link #toJson(boolean, boolean)}
     * with a token or sources: every getter reads the fields below, filled
     * by one native call when the object is made.
     */
    private final long handle;

    private final String json;
    private final Optional<String> app;
    private final String env;
    private final String envType;
    private final Optional<String> subEnv;
    private final String idc;
    private final String platform;
    private final Optional<String> hostname;
    private final Optional<String> ip;
    private final Optional<String> releaseId;
    private final Optional<String> releaseVersion;
    private final OptionalInt releaseBatch;
    private final Optional<String> releaseDeployedAt;
    private final Optional<String> k8sCluster;
    private final Optional<String> k8sNamespace;
    private final Optional<String> k8sPod;
    private final Optional<String> k8sNode;
    private final Optional<String> k8sWorkload;
    private final Optional<String> k8sPodUid;
    private final Optional<String> containerRuntime;
    private final Optional<String> containerId;
    private final Optional<String> virtualization;
    /** Unmodifiable, in key order. */
    private final Map<String, String> labels;
    /** The same labels as Optionals, so getLabel allocates nothing. */
    private final Map<String, Optional<String>> labelOptionals;

    private Environment(long handle, boolean owned) {
        this.handle = handle;
        if (owned) {
            // Registered before the snapshot, so a failing snapshot still frees the handle.
            Native.CLEANER.register(this, new Free(handle));
        }
        String[] s;
        try {
            s = Native.snapshot(handle);
        } finally {
            Reference.reachabilityFence(this);
        }
        int f = 1; // s[0] is the JSON; the fields follow in Native's field order.
        json = s[0];
        app = Optional.ofNullable(s[f + Native.APP]);
        env = s[f + Native.ENV];
        envType = s[f + Native.ENV_TYPE];
        subEnv = Optional.ofNullable(s[f + Native.SUB_ENV]);
        idc = s[f + Native.IDC];
        platform = s[f + Native.PLATFORM];
        hostname = Optional.ofNullable(s[f + Native.HOSTNAME]);
        ip = Optional.ofNullable(s[f + Native.IP]);
        releaseId = Optional.ofNullable(s[f + Native.RELEASE_ID]);
        releaseVersion = Optional.ofNullable(s[f + Native.RELEASE_VERSION]);
        String batch = s[f + Native.RELEASE_BATCH];
        releaseBatch = batch == null ? OptionalInt.empty() : OptionalInt.of(Integer.parseUnsignedInt(batch));
        releaseDeployedAt = Optional.ofNullable(s[f + Native.RELEASE_DEPLOYED_AT]);
        k8sCluster = Optional.ofNullable(s[f + Native.K8S_CLUSTER]);
        k8sNamespace = Optional.ofNullable(s[f + Native.K8S_NAMESPACE]);
        k8sPod = Optional.ofNullable(s[f + Native.K8S_POD]);
        k8sNode = Optional.ofNullable(s[f + Native.K8S_NODE]);
        k8sWorkload = Optional.ofNullable(s[f + Native.K8S_WORKLOAD]);
        k8sPodUid = Optional.ofNullable(s[f + Native.K8S_POD_UID]);
        containerRuntime = Optional.ofNullable(s[f + Native.CONTAINER_RUNTIME]);
        containerId = Optional.ofNullable(s[f + Native.CONTAINER_ID]);
        virtualization = Optional.ofNullable(s[f + Native.VIRTUALIZATION]);
        Map<String, String> l = new LinkedHashMap<>();
        Map<String, Optional<String>> lo = new HashMap<>();
        for (int i = f + Native.FIELD_COUNT; i + 1 < s.length; i += 2) {
            l.put(s[i], s[i + 1]);
            lo.put(s[i], Optional.of(s[i + 1]));
        }
        labels = Collections.unmodifiableMap(l);
        labelOptionals = lo;
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
                current = new Environment(Native.current(systemProperties()), false);
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
        long h = Native.load(o.descriptor, o.root, o.rulesFile, o.strict, o.envVars, systemProperties());
        return new Environment(h, true);
    }

    /** The system properties envid reads, in the order the native side expects them. */
    static final String[] PROPERTY_NAMES = {
        "envid.app", "envid.env", "envid.sub_env", "envid.idc", "envid.ip", "envid.descriptor",
        "apollo.path.server.properties",
    };

    /**
     * The JVM's {@code -Denvid.*} properties (and Apollo's
     * {@code apollo.path.server.properties}) that are set, as
     * {@code [key, value, ...]}: they rank above the {@code ENVID_*} variables,
     * with the source {@code system property envid.env}.
     */
    private static String[] systemProperties() {
        java.util.List<String> kv = new java.util.ArrayList<>();
        for (String name : PROPERTY_NAMES) {
            String value = System.getProperty(name);
            if (value != null) {
                kv.add(name);
                kv.add(value);
            }
        }
        return kv.toArray(new String[0]);
    }

    /** The application code ({@code flight_order}). */
    public Optional<String> getApp() {
        return app;
    }

    /** The environment name as the company spells it ({@code prod}, {@code beta}, {@code betanoah}). */
    public String getEnv() {
        return env;
    }

    /**
     * The class of {@link #getEnv()}: {@code prod}, {@code beta}, {@code dev},
     * {@code test}, {@code local}, or the lower-case name for others.
     */
    public String getEnvType() {
        return envType;
    }

    /** The sub environment / build group ({@code noahauto-2}). */
    public Optional<String> getSubEnv() {
        return subEnv;
    }

    /** The data center ({@code cn0}). */
    public String getIdc() {
        return idc;
    }

    /** The host kind: {@code container}, {@code kvm}, {@code physical} or {@code unknown}. */
    public String getPlatform() {
        return platform;
    }

    /** This host's name. */
    public Optional<String> getHostname() {
        return hostname;
    }

    /** The primary IP address, as text. */
    public Optional<String> getIp() {
        return ip;
    }

    /** The container runtime ({@code docker}, {@code podman}, {@code containerd}, {@code cri-o}, {@code kubernetes}). */
    public Optional<String> getContainerRuntime() {
        return containerRuntime;
    }

    /** The container id (64 hex characters). */
    public Optional<String> getContainerId() {
        return containerId;
    }

    /** The hypervisor, when visible ({@code kvm}, {@code vmware}, …). */
    public Optional<String> getVirtualization() {
        return virtualization;
    }

    /** The release id ({@code r-20261122-0042}). */
    public Optional<String> getReleaseId() {
        return releaseId;
    }

    /** The application version of the release ({@code 2.14.0}). */
    public Optional<String> getReleaseVersion() {
        return releaseVersion;
    }

    /** The rollout batch of the release. */
    public OptionalInt getReleaseBatch() {
        return releaseBatch;
    }

    /** The deployment time, RFC 3339 as written. */
    public Optional<String> getReleaseDeployedAt() {
        return releaseDeployedAt;
    }

    /** The Kubernetes cluster. */
    public Optional<String> getK8sCluster() {
        return k8sCluster;
    }

    /** The Kubernetes namespace. */
    public Optional<String> getK8sNamespace() {
        return k8sNamespace;
    }

    /** The pod name. */
    public Optional<String> getK8sPod() {
        return k8sPod;
    }

    /** The node name. */
    public Optional<String> getK8sNode() {
        return k8sNode;
    }

    /** The workload (deployment, statefulset) name. */
    public Optional<String> getK8sWorkload() {
        return k8sWorkload;
    }

    /** The pod's UID (from the downward-API volume or POD_UID). */
    public Optional<String> getK8sPodUid() {
        return k8sPodUid;
    }

    /** One label from the release system. */
    public Optional<String> getLabel(String key) {
        if (key == null) {
            throw new EnvidException(EnvidException.Kind.NULL_PARAMETER, "key must not be null");
        }
        return labelOptionals.getOrDefault(key, Optional.empty());
    }

    /** All labels, in key order (unmodifiable). */
    public Map<String, String> getLabels() {
        return labels;
    }

    /** The environment as JSON, without the token and without sources. */
    public String toJson() {
        return json;
    }

    /**
     * The environment as JSON: the same text as the Rust library's
     * {@code Environment::report(secrets, explain)}.
     *
     * @param secrets include the app token
     * @param explain include a {@code sources} map (where each field came from)
     */
    public String toJson(boolean secrets, boolean explain) {
        if (!secrets && !explain) {
            return json;
        }
        // Made on demand, so the token is not kept in the Java heap.
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
