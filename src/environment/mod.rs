//! The merged, cached [`Environment`] and its builder.
//!
//! Sources are consulted field by field, highest precedence first
//! (ARCHITECTURE.md, "Invariants"; README, "Where facts come from"):
//!
//! 1. values set on the [`EnvironmentBuilder`];
//! 2. `ENVID_APP`, `ENVID_ENV`, `ENVID_SUB_ENV`, `ENVID_IDC`, `ENVID_PLATFORM`,
//!    `ENVID_IP` (off with [`EnvironmentBuilder::env_vars`]);
//! 3. the descriptor file;
//! 4. the Kubernetes downward-API volume (`/etc/podinfo`, or
//!    `ENVID_PODINFO`; see [`crate::podinfo`]), for `env`, `idc`,
//!    `sub_env`, `app`, `k8s.pod_uid` and, when the mapping asks, `labels`;
//! 5. the Kubernetes downward-API variables `POD_NAME`, `POD_NAMESPACE`,
//!    `NODE_NAME`, `POD_UID` (for `k8s`) and `POD_IP` (for `ip`);
//! 6. hostname rules, for `env`, `idc` and `app`;
//! 7. detection probes, for `platform`, `container`, `virtualization`,
//!    `hostname` and `ip`.
//!
//! Probes are lazy: a probe runs only when its field is read and no higher
//! source gave it, and then once per [`Environment`]. Loading from a complete
//! descriptor therefore reads one file, looks for the downward-API
//! directory (one `stat` when there is none), and makes no other system call
//! but `uname` when a hostname rule is needed.
//!
//! `env_type` is taken explicitly from the source that gave `env` (or a higher
//! one); otherwise it is derived from `env` through the alias table of the
//! [`Rules`](crate::rules::Rules).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::descriptor::Problem;
use crate::detect::{self, Detection};
use crate::env_type::EnvType;
use crate::error::LoadError;
use crate::model::{ContainerInfo, Field, K8s, Labels, Platform, Release, Secret};
use crate::source::Source;
use crate::vars::Vars;

mod builder;
mod load;
mod unidentified;

pub use builder::EnvironmentBuilder;

/// A value and where it came from, while merging (the loader and the
/// report of an unidentified load share it).
type Sourced<T> = Option<(T, Source)>;

/// The descriptor paths tried when neither `ENVID_DESCRIPTOR` nor the builder names one.
pub const DEFAULT_DESCRIPTOR_PATHS: [&str; 2] =
    ["/etc/envid/environment.toml", "/etc/envid/environment.json"];

/// The variable naming a descriptor that must exist.
pub const DESCRIPTOR_VAR: &str = "ENVID_DESCRIPTOR";

/// The JVM system property naming a descriptor that must exist (above
/// [`DESCRIPTOR_VAR`]).
pub const DESCRIPTOR_PROPERTY: &str = "envid.descriptor";

/// Where this process runs: the merged facts and where each came from.
///
/// Obtain the process-wide one with [`current`], or a fresh one with
/// [`Environment::builder`]. Fields read by probes (`platform`, `container`,
/// `virtualization`, `hostname`, `ip`) are probed on first access.
#[derive(Clone, Debug)]
pub struct Environment {
    app: Option<(String, Source)>,
    env: (String, Source),
    env_type: (EnvType, Source),
    sub_env: Option<(String, Source)>,
    idc: (String, Source),
    token: Option<(Secret, Source)>,
    release: Option<(Release, Source)>,
    k8s: Option<K8s>,
    k8s_sources: BTreeMap<&'static str, Source>,
    labels: Labels,
    labels_source: Option<Source>,
    warnings: Vec<Problem>,
    descriptor_path: Option<PathBuf>,
    probes: Probes,
}

/// Facts known before probing, and the lazily run probes for the rest.
#[derive(Clone, Debug)]
struct Probes {
    root: PathBuf,
    vars: Vars,
    platform: Option<(Platform, Source)>,
    ip: Option<(IpAddr, Source)>,
    hostname: OnceCell<Option<(String, Source)>>,
    detection: OnceCell<Detection>,
    probed_ip: OnceCell<Option<(IpAddr, Source)>>,
}

impl Probes {
    fn detection(&self) -> &Detection {
        self.detection
            .get_or_init(|| detect::detect(&self.root, &self.vars))
    }

    fn hostname(&self) -> Option<&(String, Source)> {
        self.hostname
            .get_or_init(|| {
                detect::hostname(&self.root).map(|(name, probe)| (name, Source::Probe(probe)))
            })
            .as_ref()
    }

    fn platform(&self) -> (Platform, Source) {
        if let Some(p) = &self.platform {
            return p.clone();
        }
        let d = self.detection();
        match d.platform {
            Some(p) => (p, Source::Probe(probe_summary(d))),
            None => (Platform::Unknown, Source::Default),
        }
    }

    fn ip(&self) -> Option<&(IpAddr, Source)> {
        if let Some(ip) = &self.ip {
            return Some(ip);
        }
        self.probed_ip
            .get_or_init(|| {
                if self.root != Path::new("/") {
                    // A fake root has no interfaces of its own; reading the
                    // real machine's would mix two hosts.
                    return None;
                }
                detect::primary_ip()
                    .map(|(ip, iface)| (ip, Source::Probe(format!("interface {iface}"))))
            })
            .as_ref()
    }
}

fn probe_summary(d: &Detection) -> String {
    evidence_summary(d, |_| true)
}

/// VM evidence comes from DMI and cpuinfo; everything else is container evidence.
fn is_vm_evidence(line: &str) -> bool {
    line.starts_with("/sys/class/dmi") || line.starts_with("/proc/cpuinfo")
}

fn evidence_summary(d: &Detection, keep: impl Fn(&str) -> bool) -> String {
    let lines: Vec<&str> = d
        .evidence
        .iter()
        .map(String::as_str)
        .filter(|l| keep(l))
        .collect();
    if lines.is_empty() {
        "platform detection".to_string()
    } else {
        lines.join("; ")
    }
}

impl Environment {
    /// A builder for an environment with custom paths, root, rules or overrides.
    pub fn builder() -> EnvironmentBuilder {
        EnvironmentBuilder::default()
    }

    /// Application code, when any source gave one.
    pub fn app(&self) -> Option<&str> {
        self.app.as_ref().map(|(v, _)| v.as_str())
    }

    /// Environment name as the company spells it (`prod`, `beta`, `betanoah`).
    pub fn env(&self) -> &str {
        &self.env.0
    }

    /// The class of [`Environment::env`].
    pub fn env_type(&self) -> &EnvType {
        &self.env_type.0
    }

    /// Sub environment / build group.
    pub fn sub_env(&self) -> Option<&str> {
        self.sub_env.as_ref().map(|(v, _)| v.as_str())
    }

    /// Data center.
    pub fn idc(&self) -> &str {
        &self.idc.0
    }

    /// Host kind; probed on first access unless a higher source gave it.
    pub fn platform(&self) -> Platform {
        self.probes.platform().0
    }

    /// Container facts, when probes found a container.
    pub fn container(&self) -> Option<&ContainerInfo> {
        self.probes.detection().container.as_ref()
    }

    /// The hypervisor, when visible (also under a container).
    pub fn virtualization(&self) -> Option<&str> {
        self.probes.detection().virtualization.as_deref()
    }

    /// This host's name.
    pub fn hostname(&self) -> Option<&str> {
        self.probes.hostname().map(|(h, _)| h.as_str())
    }

    /// Primary IP address by the primary-IP policy (see [`crate::detect`]).
    pub fn ip(&self) -> Option<IpAddr> {
        self.probes.ip().map(|(ip, _)| *ip)
    }

    /// The app token. The [`Secret`] never prints itself; call
    /// [`Secret::expose`] where the value is really needed.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref().map(|(t, _)| t)
    }

    /// Release facts.
    pub fn release(&self) -> Option<&Release> {
        self.release.as_ref().map(|(r, _)| r)
    }

    /// Kubernetes facts.
    pub fn k8s(&self) -> Option<&K8s> {
        self.k8s.as_ref()
    }

    /// Labels from the release system (and the builder).
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// One label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Problems that did not stop loading (unknown descriptor keys, missing
    /// expected fields), for `envid check`-style reporting.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// The descriptor that was read, if any.
    pub fn descriptor_path(&self) -> Option<&Path> {
        self.descriptor_path.as_deref()
    }

    /// Evidence the detection probes found (runs them if not yet run).
    pub fn evidence(&self) -> &[String] {
        &self.probes.detection().evidence
    }

    /// Where `field` came from; `None` when no source gave it. Reading the
    /// source of a probed field runs its probe.
    pub fn source(&self, field: Field) -> Option<Source> {
        match field {
            Field::App => self.app.as_ref().map(|(_, s)| s.clone()),
            Field::Env => Some(self.env.1.clone()),
            Field::EnvType => Some(self.env_type.1.clone()),
            Field::SubEnv => self.sub_env.as_ref().map(|(_, s)| s.clone()),
            Field::Idc => Some(self.idc.1.clone()),
            Field::Platform => Some(self.probes.platform().1),
            Field::Container => {
                let d = self.probes.detection();
                d.container
                    .is_some()
                    .then(|| Source::Probe(evidence_summary(d, |l| !is_vm_evidence(l))))
            }
            Field::Virtualization => {
                let d = self.probes.detection();
                d.virtualization
                    .is_some()
                    .then(|| Source::Probe(evidence_summary(d, is_vm_evidence)))
            }
            Field::Hostname => self.probes.hostname().map(|(_, s)| s.clone()),
            Field::Ip => self.probes.ip().map(|(_, s)| s.clone()),
            Field::Token => self.token.as_ref().map(|(_, s)| s.clone()),
            Field::Release => self.release.as_ref().map(|(_, s)| s.clone()),
            Field::K8s => {
                let mut it = self.k8s_sources.values();
                let first = it.next()?.clone();
                Some(if it.all(|s| *s == first) {
                    first
                } else {
                    // Mixed: the descriptor had part, downward-API variables the rest.
                    self.k8s_sources
                        .values()
                        .find(|s| matches!(s, Source::Descriptor(_)))
                        .cloned()
                        .unwrap_or(first)
                })
            }
            Field::Labels => self.labels_source.clone(),
        }
    }

    /// Every field that has a value, with its source; `k8s.<sub>` keys are
    /// added for each Kubernetes fact.
    pub fn sources(&self) -> BTreeMap<String, Source> {
        let mut out = BTreeMap::new();
        for f in Field::ALL {
            if let Some(s) = self.source(f) {
                out.insert(f.as_str().to_string(), s);
            }
        }
        for (k, s) in &self.k8s_sources {
            out.insert(format!("k8s.{k}"), s.clone());
        }
        out
    }

    /// A serializable view: the model's fields (token only when `secrets`),
    /// plus a `sources` map when `explain`.
    pub fn report(&self, secrets: bool, explain: bool) -> Report<'_> {
        Report {
            env: self,
            secrets,
            explain,
        }
    }
}

/// Serializes as [`Environment::report`] without secrets or sources.
impl Serialize for Environment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report(false, false).serialize(s)
    }
}

/// A serializable view of an [`Environment`] (see [`Environment::report`]).
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    env: &'a Environment,
    secrets: bool,
    explain: bool,
}

impl Serialize for Report<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.env;
        let mut m = s.serialize_map(None)?;
        if let Some(app) = e.app() {
            m.serialize_entry("app", app)?;
        }
        m.serialize_entry("env", e.env())?;
        m.serialize_entry("env_type", e.env_type())?;
        if let Some(v) = e.sub_env() {
            m.serialize_entry("sub_env", v)?;
        }
        m.serialize_entry("idc", e.idc())?;
        m.serialize_entry("platform", &e.platform())?;
        if let Some(v) = e.container() {
            m.serialize_entry("container", v)?;
        }
        if let Some(v) = e.virtualization() {
            m.serialize_entry("virtualization", v)?;
        }
        if let Some(v) = e.hostname() {
            m.serialize_entry("hostname", v)?;
        }
        if let Some(v) = e.ip() {
            m.serialize_entry("ip", &v)?;
        }
        if self.secrets {
            if let Some(t) = e.token() {
                m.serialize_entry("token", t.expose())?;
            }
        }
        if let Some(v) = e.release() {
            m.serialize_entry("release", v)?;
        }
        if let Some(v) = e.k8s() {
            m.serialize_entry("k8s", v)?;
        }
        m.serialize_entry("labels", e.labels())?;
        if self.explain {
            let mut sources = e.sources();
            if !self.secrets {
                // The token's provenance is fine to show; its value is not here.
                sources.retain(|k, _| k != "token" || e.token().is_some());
            }
            m.serialize_entry("sources", &sources)?;
        }
        m.end()
    }
}

static CURRENT: OnceCell<Environment> = OnceCell::new();

/// The process-wide environment, loaded once with the default settings (the
/// process environment, the default descriptor paths, the built-in rules).
///
/// A failed load is not cached: the next call tries again, so a process that
/// starts before its descriptor is written recovers once it is.
#[inline]
pub fn current() -> Result<&'static Environment, LoadError> {
    // The fast path (one acquire load) inlines into callers; loading stays out of line.
    match CURRENT.get() {
        Some(env) => Ok(env),
        None => load_current(),
    }
}

#[cold]
fn load_current() -> Result<&'static Environment, LoadError> {
    CURRENT.get_or_try_init(|| Environment::builder().load())
}

/// The process-wide environment if it was already loaded; never loads.
pub fn current_if_loaded() -> Option<&'static Environment> {
    CURRENT.get()
}
