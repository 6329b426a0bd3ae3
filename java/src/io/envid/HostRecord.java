package io.envid;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * What the environment service knows about an IP (a single-IP record or the
 * narrowest CIDR range containing it): the environment model's fields minus
 * the token. Immutable.
 */
public final class HostRecord {
    // The layout of the native String[] (crates/envid-ffi/src/jni/host_record.rs).
    private static final int JSON = 0;
    private static final int IP = 1;
    private static final int CIDR = 2;
    private static final int APP = 3;
    private static final int ENV = 4;
    private static final int ENV_TYPE = 5;
    private static final int SUB_ENV = 6;
    private static final int IDC = 7;
    private static final int PLATFORM = 8;
    private static final int HOSTNAME = 9;
    private static final int CONTAINER_RUNTIME = 10;
    private static final int CONTAINER_ID = 11;
    private static final int RELEASE_ID = 12;
    private static final int RELEASE_VERSION = 13;
    private static final int RELEASE_BATCH = 14;
    private static final int RELEASE_DEPLOYED_AT = 15;
    private static final int K8S_CLUSTER = 16;
    private static final int K8S_NAMESPACE = 17;
    private static final int K8S_POD = 18;
    private static final int K8S_NODE = 19;
    private static final int K8S_WORKLOAD = 20;
    private static final int K8S_POD_UID = 21;
    private static final int LABELS = 22;

    private final String[] f;
    private final Map<String, String> labels;

    HostRecord(String[] fields) {
        this.f = fields;
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = LABELS; i + 1 < fields.length; i += 2) {
            m.put(fields[i], fields[i + 1]);
        }
        this.labels = Collections.unmodifiableMap(m);
    }

    private Optional<String> opt(int i) {
        return Optional.ofNullable(f[i]);
    }

    /** The single IP this record is for (absent for a CIDR record). */
    public Optional<String> getIp() {
        return opt(IP);
    }

    /** The range this record is for (absent for a single-IP record). */
    public Optional<String> getCidr() {
        return opt(CIDR);
    }

    /** The application code. */
    public Optional<String> getApp() {
        return opt(APP);
    }

    /** The environment name. */
    public String getEnv() {
        return f[ENV];
    }

    /** The environment class: the record's, else derived from the env by the built-in alias table. */
    public String getEnvType() {
        return f[ENV_TYPE];
    }

    /** The sub environment. */
    public Optional<String> getSubEnv() {
        return opt(SUB_ENV);
    }

    /** The data center. */
    public String getIdc() {
        return f[IDC];
    }

    /** The host kind ({@code container}, {@code kvm}, {@code physical}, {@code unknown}). */
    public Optional<String> getPlatform() {
        return opt(PLATFORM);
    }

    /** The host name. */
    public Optional<String> getHostname() {
        return opt(HOSTNAME);
    }

    /** The container runtime. */
    public Optional<String> getContainerRuntime() {
        return opt(CONTAINER_RUNTIME);
    }

    /** The container id. */
    public Optional<String> getContainerId() {
        return opt(CONTAINER_ID);
    }

    /** The release id. */
    public Optional<String> getReleaseId() {
        return opt(RELEASE_ID);
    }

    /** The application version of the release. */
    public Optional<String> getReleaseVersion() {
        return opt(RELEASE_VERSION);
    }

    /** The rollout batch. */
    public OptionalInt getReleaseBatch() {
        return f[RELEASE_BATCH] == null ? OptionalInt.empty() : OptionalInt.of(Integer.parseUnsignedInt(f[RELEASE_BATCH]));
    }

    /** The deployment time (RFC 3339). */
    public Optional<String> getReleaseDeployedAt() {
        return opt(RELEASE_DEPLOYED_AT);
    }

    /** The Kubernetes cluster. */
    public Optional<String> getK8sCluster() {
        return opt(K8S_CLUSTER);
    }

    /** The Kubernetes namespace. */
    public Optional<String> getK8sNamespace() {
        return opt(K8S_NAMESPACE);
    }

    /** The pod name. */
    public Optional<String> getK8sPod() {
        return opt(K8S_POD);
    }

    /** The node name. */
    public Optional<String> getK8sNode() {
        return opt(K8S_NODE);
    }

    /** The workload name. */
    public Optional<String> getK8sWorkload() {
        return opt(K8S_WORKLOAD);
    }

    /** The pod's UID. */
    public Optional<String> getK8sPodUid() {
        return opt(K8S_POD_UID);
    }

    /** The labels (unmodifiable, in key order). */
    public Map<String, String> getLabels() {
        return labels;
    }

    /** The record as the service's JSON. */
    public String toJson() {
        return f[JSON];
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof HostRecord && ((HostRecord) o).toJson().equals(toJson());
    }

    @Override
    public int hashCode() {
        return toJson().hashCode();
    }

    /** The JSON form. */
    @Override
    public String toString() {
        return toJson();
    }
}
