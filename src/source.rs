//! Provenance: where each fact of an [`crate::Environment`] came from.

use std::fmt;
use std::path::PathBuf;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// The source that gave a field its value, highest precedence first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Set explicitly on the [`crate::EnvironmentBuilder`] in code.
    Builder,
    /// A JVM system property (`envid.env`, …), named; set by the Java binding.
    SystemProperty(String),
    /// A process environment variable (`ENVID_APP`, …), named.
    EnvVar(String),
    /// The descriptor file at this path.
    Descriptor(PathBuf),
    /// Apollo's `server.properties` at this path, read when no descriptor
    /// is found (see [`crate::apollo`]).
    Apollo(PathBuf),
    /// A key of the Kubernetes downward-API volume (see [`crate::podinfo`]):
    /// the user-visible file (`/etc/podinfo/annotations`) and the key
    /// (`envid.io/env`). `key` is empty where a whole file is meant: the
    /// pod's labels (`/etc/podinfo/labels`), its UID (`/etc/podinfo/uid`),
    /// or the directory in the `Unidentified` report.
    PodInfo {
        /// The file as the pod sees it.
        file: PathBuf,
        /// The label or annotation key.
        key: String,
    },
    /// A Kubernetes downward-API variable (`POD_NAME`, …), named.
    K8sVar(String),
    /// A hostname rule, by the rule's name.
    HostnameRule(String),
    /// The `env_type` derived from `env` through the alias table; `from` is
    /// where `env` itself came from.
    Alias {
        /// The source of the `env` value the class was derived from.
        from: Box<Source>,
    },
    /// A detection probe, with what it looked at (a path, a syscall, a variable).
    Probe(String),
    /// A built-in default.
    Default,
}

impl Source {
    /// The precedence rank of this kind of source: 0 (set in code) is the
    /// strongest, then JVM system properties, environment variables, the
    /// descriptor (or Apollo's file in its place), the Kubernetes
    /// downward-API volume, Kubernetes variables, hostname rules (and the alias table), probes, defaults.
    /// Merging takes each field from the lowest rank that gives it, and the
    /// `Unidentified` report lists its attempts in this order.
    pub fn precedence(&self) -> u8 {
        match self {
            Source::Builder => 0,
            Source::SystemProperty(_) => 1,
            Source::EnvVar(_) => 2,
            Source::Descriptor(_) | Source::Apollo(_) => 3,
            Source::PodInfo { .. } => 4,
            Source::K8sVar(_) => 5,
            Source::HostnameRule(_) | Source::Alias { .. } => 6,
            Source::Probe(_) => 7,
            Source::Default => 8,
        }
    }

    /// A short machine-readable kind: `builder`, `system_property`, `env_var`, `descriptor`, `apollo`,
    /// `podinfo`, `k8s_var`, `hostname_rule`, `alias`, `probe`, `default`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Builder => "builder",
            Source::SystemProperty(_) => "system_property",
            Source::EnvVar(_) => "env_var",
            Source::Descriptor(_) => "descriptor",
            Source::Apollo(_) => "apollo",
            Source::PodInfo { .. } => "podinfo",
            Source::K8sVar(_) => "k8s_var",
            Source::HostnameRule(_) => "hostname_rule",
            Source::Alias { .. } => "alias",
            Source::Probe(_) => "probe",
            Source::Default => "default",
        }
    }

    /// The detail that goes with the kind (variable name, path, rule name,
    /// probe), if any.
    pub fn detail(&self) -> Option<String> {
        match self {
            Source::Builder | Source::Default => None,
            Source::SystemProperty(s)
            | Source::EnvVar(s)
            | Source::K8sVar(s)
            | Source::HostnameRule(s)
            | Source::Probe(s) => Some(s.clone()),
            Source::Descriptor(p) | Source::Apollo(p) => Some(p.display().to_string()),
            Source::PodInfo { file, key } if key.is_empty() => Some(file.display().to_string()),
            Source::PodInfo { file, key } => Some(format!("{} {key}", file.display())),
            Source::Alias { from } => Some(format!("alias table, env from {from}")),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builder => f.write_str("the program (builder)"),
            Source::SystemProperty(p) => write!(f, "system property {p}"),
            Source::EnvVar(v) => write!(f, "environment variable {v}"),
            Source::Descriptor(p) => write!(f, "descriptor {}", p.display()),
            Source::Apollo(p) => write!(f, "apollo {}", p.display()),
            Source::PodInfo { file, key } if key.is_empty() => {
                write!(f, "podinfo {}", file.display())
            }
            Source::PodInfo { file, key } => write!(f, "podinfo {} {key}", file.display()),
            Source::K8sVar(v) => write!(f, "kubernetes variable {v}"),
            Source::HostnameRule(r) => write!(f, "hostname rule {r:?}"),
            Source::Alias { from } => write!(f, "alias table (env from {from})"),
            Source::Probe(p) => write!(f, "probe {p}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// Serialized as `{"kind": "...", "detail": "..."}`.
impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let detail = self.detail();
        let mut m = s.serialize_map(Some(if detail.is_some() { 2 } else { 1 }))?;
        m.serialize_entry("kind", self.kind())?;
        if let Some(d) = detail {
            m.serialize_entry("detail", &d)?;
        }
        m.end()
    }
}
