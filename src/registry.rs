//! Host records of the IP lookup protocol, the registry file, and the
//! longest-prefix table both the reference service and the replica client use.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{ContainerInfo, EnvType, K8s, Labels, Platform, Release};

/// One record of the environment service: the model's fields minus the token,
/// keyed by a single `ip` or a `cidr` range (exactly one of the two). Unknown
/// fields are ignored so older clients keep working with newer services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The single address this record is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The range this record is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<ipnet::IpNet>,
    /// Application code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Environment name.
    pub env: String,
    /// Environment class; derived from `env` by the built-in alias table when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_type: Option<EnvType>,
    /// Sub environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_env: Option<String>,
    /// Data center.
    pub idc: String,
    /// Host kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Container facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Release facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// Kubernetes facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8s>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}
