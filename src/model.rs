//! The environment model as plain typed values (ARCHITECTURE.md, "Where am I").
//!
//! These types carry no behaviour beyond parsing and printing their own
//! names; where a value comes from is the business of [`crate::environment`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// [`EnvType`](crate::env_type::EnvType) by its old second path; it lives
/// in [`crate::env_type`] (and at the crate root).
#[deprecated(note = "use envid::EnvType or envid::env_type::EnvType")]
pub type EnvType = crate::env_type::EnvType;

/// What kind of host this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A container (docker, podman, containerd, cri-o, Kubernetes pod), whatever runs below it.
    Container,
    /// A KVM (or other hypervisor) virtual machine.
    Kvm,
    /// Bare metal: no container and no hypervisor evidence.
    Physical,
    /// Nothing could be told.
    Unknown,
}

impl Platform {
    /// The lower-case name used in descriptors, `ENVID_PLATFORM` and output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Container => "container",
            Platform::Kvm => "kvm",
            Platform::Physical => "physical",
            Platform::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Platform`] or [`ContainerRuntime`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownName {
    /// What was being parsed (`platform`, `container runtime`).
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

impl FromStr for Platform {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "container" => Ok(Platform::Container),
            "kvm" => Ok(Platform::Kvm),
            "physical" => Ok(Platform::Physical),
            "unknown" => Ok(Platform::Unknown),
            _ => Err(UnknownName {
                what: "platform",
                value: s.to_string(),
                expected: "container, kvm, physical, unknown",
            }),
        }
    }
}

/// The container runtime, as far as the evidence tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    /// Docker (moby).
    Docker,
    /// Podman.
    Podman,
    /// containerd without Kubernetes evidence.
    Containerd,
    /// CRI-O.
    #[serde(rename = "cri-o")]
    CriO,
    /// A Kubernetes pod (whatever CRI runtime is underneath).
    Kubernetes,
}

impl ContainerRuntime {
    /// The lower-case name used in output.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for ContainerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContainerRuntime {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(ContainerRuntime::Docker),
            "podman" => Ok(ContainerRuntime::Podman),
            "containerd" => Ok(ContainerRuntime::Containerd),
            "cri-o" | "crio" => Ok(ContainerRuntime::CriO),
            "kubernetes" | "k8s" => Ok(ContainerRuntime::Kubernetes),
            _ => Err(UnknownName {
                what: "container runtime",
                value: s.to_string(),
                expected: "docker, podman, containerd, cri-o, kubernetes",
            }),
        }
    }
}

/// Container facts, when the host is a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The runtime, when the evidence names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<ContainerRuntime>,
    /// The container id: exactly 64 lower-case hex characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Release facts written by the release system.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Release id, e.g. `r-20261122-0042`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Version of the application, e.g. `2.14.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Rollout batch number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// Deployment time, validated RFC 3339, kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
}

/// Kubernetes facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8s {
    /// Cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Workload (deployment, statefulset) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The pod's UID (`metadata.uid`), from the downward-API volume's `uid`
    /// file or `POD_UID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl K8s {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.cluster.is_none()
            && self.namespace.is_none()
            && self.pod.is_none()
            && self.node.is_none()
            && self.workload.is_none()
            && self.pod_uid.is_none()
    }
}

/// Free-form labels from the release system.
pub type Labels = BTreeMap<String, String>;

/// A secret string (the app token). `Debug` and `Display` never show it; the
/// only way to read it is [`Secret::expose`], so every leak is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call only where the user asked to see it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Names of the model's fields, used as keys of provenance maps, of
/// `ENVID_*` variables and of output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `app`
    App,
    /// `env`
    Env,
    /// `env_type`
    EnvType,
    /// `sub_env`
    SubEnv,
    /// `idc`
    Idc,
    /// `platform`
    Platform,
    /// `container`
    Container,
    /// `virtualization`
    Virtualization,
    /// `hostname`
    Hostname,
    /// `ip`
    Ip,
    /// `token`
    Token,
    /// `release`
    Release,
    /// `k8s`
    K8s,
    /// `labels`
    Labels,
}

impl Field {
    /// Every field, in output order.
    pub const ALL: [Field; 14] = [
        Field::App,
        Field::Env,
        Field::EnvType,
        Field::SubEnv,
        Field::Idc,
        Field::Platform,
        Field::Container,
        Field::Virtualization,
        Field::Hostname,
        Field::Ip,
        Field::Token,
        Field::Release,
        Field::K8s,
        Field::Labels,
    ];

    /// The field's name as in the descriptor and JSON output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Field::App => "app",
            Field::Env => "env",
            Field::EnvType => "env_type",
            Field::SubEnv => "sub_env",
            Field::Idc => "idc",
            Field::Platform => "platform",
            Field::Container => "container",
            Field::Virtualization => "virtualization",
            Field::Hostname => "hostname",
            Field::Ip => "ip",
            Field::Token => "token",
            Field::Release => "release",
            Field::K8s => "k8s",
            Field::Labels => "labels",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_type::EnvType;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn platform_names_round_trip() {
        for p in [
            Platform::Container,
            Platform::Kvm,
            Platform::Physical,
            Platform::Unknown,
        ] {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
        }
        let err = "vm".parse::<Platform>().unwrap_err();
        assert!(err.to_string().contains("\"vm\""), "{err}");
    }

    #[test]
    fn env_type_other_keeps_lowercase_name() {
        assert_eq!(EnvType::from_class_name("PROD"), EnvType::Prod);
        assert_eq!(
            EnvType::from_class_name("Perf"),
            EnvType::Other("perf".into())
        );
    }
}
