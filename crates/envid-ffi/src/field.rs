//! `envid_field`: the numbers of the environment's fields, for
//! `envid_environment_field` and the JNI binding (whose Java constants
//! mirror them), with their dotted names as in the JSON.

/// A field of the environment, for `envid_environment_field`. Every field
/// is read as text: `ip` in its usual notation, `release.batch` in decimal,
/// `env_type` and `platform` as their lower-case names.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum envid_field {
    /// `app` (optional).
    ENVID_FIELD_APP = 0,
    /// `env` (always present).
    ENVID_FIELD_ENV = 1,
    /// `env_type`: `prod`, `beta`, `dev`, `test`, `local` or another name (always present).
    ENVID_FIELD_ENV_TYPE = 2,
    /// `sub_env` (optional).
    ENVID_FIELD_SUB_ENV = 3,
    /// `idc` (always present).
    ENVID_FIELD_IDC = 4,
    /// `platform`: `container`, `kvm`, `physical` or `unknown` (always present).
    ENVID_FIELD_PLATFORM = 5,
    /// `hostname` (optional).
    ENVID_FIELD_HOSTNAME = 6,
    /// `ip` (optional).
    ENVID_FIELD_IP = 7,
    /// `release.id` (optional).
    ENVID_FIELD_RELEASE_ID = 8,
    /// `release.version` (optional).
    ENVID_FIELD_RELEASE_VERSION = 9,
    /// `release.batch`, in decimal (optional).
    ENVID_FIELD_RELEASE_BATCH = 10,
    /// `release.deployed_at`, RFC 3339 as written (optional).
    ENVID_FIELD_RELEASE_DEPLOYED_AT = 11,
    /// `k8s.cluster` (optional).
    ENVID_FIELD_K8S_CLUSTER = 12,
    /// `k8s.namespace` (optional).
    ENVID_FIELD_K8S_NAMESPACE = 13,
    /// `k8s.pod` (optional).
    ENVID_FIELD_K8S_POD = 14,
    /// `k8s.node` (optional).
    ENVID_FIELD_K8S_NODE = 15,
    /// `k8s.workload` (optional).
    ENVID_FIELD_K8S_WORKLOAD = 16,
    /// `container.runtime`: `docker`, `podman`, `containerd`, `cri-o`, `kubernetes` (optional).
    ENVID_FIELD_CONTAINER_RUNTIME = 17,
    /// `container.id`, 64 hex characters (optional).
    ENVID_FIELD_CONTAINER_ID = 18,
    /// `virtualization`: the hypervisor when visible (optional).
    ENVID_FIELD_VIRTUALIZATION = 19,
    /// `k8s.pod_uid`: the pod's UID, from the downward-API volume or
    /// `POD_UID` (optional).
    ENVID_FIELD_K8S_POD_UID = 20,
}

/// The number of fields in [`envid_field`].
pub const ENVID_FIELD_COUNT: usize = 21;

impl envid_field {
    /// The field with this numeric value.
    pub fn from_code(code: i32) -> Option<envid_field> {
        use envid_field::*;
        const ALL: [envid_field; ENVID_FIELD_COUNT] = [
            ENVID_FIELD_APP,
            ENVID_FIELD_ENV,
            ENVID_FIELD_ENV_TYPE,
            ENVID_FIELD_SUB_ENV,
            ENVID_FIELD_IDC,
            ENVID_FIELD_PLATFORM,
            ENVID_FIELD_HOSTNAME,
            ENVID_FIELD_IP,
            ENVID_FIELD_RELEASE_ID,
            ENVID_FIELD_RELEASE_VERSION,
            ENVID_FIELD_RELEASE_BATCH,
            ENVID_FIELD_RELEASE_DEPLOYED_AT,
            ENVID_FIELD_K8S_CLUSTER,
            ENVID_FIELD_K8S_NAMESPACE,
            ENVID_FIELD_K8S_POD,
            ENVID_FIELD_K8S_NODE,
            ENVID_FIELD_K8S_WORKLOAD,
            ENVID_FIELD_CONTAINER_RUNTIME,
            ENVID_FIELD_CONTAINER_ID,
            ENVID_FIELD_VIRTUALIZATION,
            ENVID_FIELD_K8S_POD_UID,
        ];
        usize::try_from(code).ok().and_then(|i| ALL.get(i).copied())
    }

    /// The field's dotted name, as in the JSON.
    pub fn name(self) -> &'static str {
        use envid_field::*;
        match self {
            ENVID_FIELD_APP => "app",
            ENVID_FIELD_ENV => "env",
            ENVID_FIELD_ENV_TYPE => "env_type",
            ENVID_FIELD_SUB_ENV => "sub_env",
            ENVID_FIELD_IDC => "idc",
            ENVID_FIELD_PLATFORM => "platform",
            ENVID_FIELD_HOSTNAME => "hostname",
            ENVID_FIELD_IP => "ip",
            ENVID_FIELD_RELEASE_ID => "release.id",
            ENVID_FIELD_RELEASE_VERSION => "release.version",
            ENVID_FIELD_RELEASE_BATCH => "release.batch",
            ENVID_FIELD_RELEASE_DEPLOYED_AT => "release.deployed_at",
            ENVID_FIELD_K8S_CLUSTER => "k8s.cluster",
            ENVID_FIELD_K8S_NAMESPACE => "k8s.namespace",
            ENVID_FIELD_K8S_POD => "k8s.pod",
            ENVID_FIELD_K8S_NODE => "k8s.node",
            ENVID_FIELD_K8S_WORKLOAD => "k8s.workload",
            ENVID_FIELD_CONTAINER_RUNTIME => "container.runtime",
            ENVID_FIELD_CONTAINER_ID => "container.id",
            ENVID_FIELD_VIRTUALIZATION => "virtualization",
            ENVID_FIELD_K8S_POD_UID => "k8s.pod_uid",
        }
    }
}
