//! The merged, cached [`Environment`] and its builder.
//!
//! Sources are consulted field by field, highest precedence first
//! (DESIGN.md, "Where facts come from"):
//!
//! 1. values set on the [`EnvironmentBuilder`];
//! 2. `ENVID_APP`, `ENVID_ENV`, `ENVID_SUB_ENV`, `ENVID_IDC`, `ENVID_PLATFORM`,
//!    `ENVID_IP` (off with [`EnvironmentBuilder::env_vars`]);
//! 3. the descriptor file;
//! 4. the Kubernetes downward-API variables `POD_NAME`, `POD_NAMESPACE`,
//!    `NODE_NAME` (for `k8s`) and `POD_IP` (for `ip`);
//! 5. hostname rules, for `env`, `idc` and `app`;
//! 6. detection probes, for `platform`, `container`, `virtualization`,
//!    `hostname` and `ip`.
//!
//! Probes are lazy: a probe runs only when its field is read and no higher
//! source gave it, and then once per [`Environment`]. Loading from a complete
//! descriptor therefore reads one file and makes no other system call but
//! `uname` when a hostname rule is needed.
//!
//! `env_type` is taken explicitly from the source that gave `env` (or a higher
//! one); otherwise it is derived from `env` through the alias table of the
//! [`Rules`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::descriptor::{self, Descriptor};
use crate::detect::{self, Detection};
use crate::error::{Attempt, Error, Fact, Problem, ProblemKind, Unidentified};
use crate::hostname::{HostnameMatch, Rules};
use crate::model::{ContainerInfo, EnvType, Field, K8s, Labels, Platform, Release, Secret};
use crate::source::Source;
use crate::vars::Vars;

/// The descriptor paths tried when neither `ENVID_DESCRIPTOR` nor the builder names one.
pub const DEFAULT_DESCRIPTOR_PATHS: [&str; 2] =
    ["/etc/envid/environment.toml", "/etc/envid/environment.json"];

/// The variable naming a descriptor that must exist.
pub const DESCRIPTOR_VAR: &str = "ENVID_DESCRIPTOR";

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

    /// Primary IP address by DESIGN.md's policy.
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

/// Builds an [`Environment`]: custom descriptor paths, probe root, rules,
/// explicit values (highest precedence), strict mode, and whether `ENVID_*`
/// variables are read.
#[derive(Clone, Debug)]
pub struct EnvironmentBuilder {
    app: Option<String>,
    env: Option<String>,
    env_type: Option<EnvType>,
    sub_env: Option<String>,
    idc: Option<String>,
    platform: Option<Platform>,
    ip: Option<IpAddr>,
    hostname: Option<String>,
    token: Option<Secret>,
    labels: Labels,
    descriptors: Option<Vec<PathBuf>>,
    descriptor_required: bool,
    root: PathBuf,
    rules: Option<Rules>,
    rules_file: Option<PathBuf>,
    strict: bool,
    env_vars: bool,
    vars: Vars,
}

impl Default for EnvironmentBuilder {
    fn default() -> Self {
        EnvironmentBuilder {
            app: None,
            env: None,
            env_type: None,
            sub_env: None,
            idc: None,
            platform: None,
            ip: None,
            hostname: None,
            token: None,
            labels: Labels::new(),
            descriptors: None,
            descriptor_required: false,
            root: PathBuf::from("/"),
            rules: None,
            rules_file: None,
            strict: false,
            env_vars: true,
            vars: Vars::Process,
        }
    }
}

impl EnvironmentBuilder {
    /// Sets `app` explicitly.
    pub fn app(mut self, v: impl Into<String>) -> Self {
        self.app = Some(v.into());
        self
    }
    /// Sets `env` explicitly.
    pub fn env(mut self, v: impl Into<String>) -> Self {
        self.env = Some(v.into());
        self
    }
    /// Sets `env_type` explicitly (otherwise derived from `env`).
    pub fn env_type(mut self, v: EnvType) -> Self {
        self.env_type = Some(v);
        self
    }
    /// Sets `sub_env` explicitly.
    pub fn sub_env(mut self, v: impl Into<String>) -> Self {
        self.sub_env = Some(v.into());
        self
    }
    /// Sets `idc` explicitly.
    pub fn idc(mut self, v: impl Into<String>) -> Self {
        self.idc = Some(v.into());
        self
    }
    /// Sets `platform` explicitly (no platform probe then).
    pub fn platform(mut self, v: Platform) -> Self {
        self.platform = Some(v);
        self
    }
    /// Sets `ip` explicitly (no interface probe then).
    pub fn ip(mut self, v: IpAddr) -> Self {
        self.ip = Some(v);
        self
    }
    /// Sets `hostname` explicitly (used by hostname rules too).
    pub fn hostname(mut self, v: impl Into<String>) -> Self {
        self.hostname = Some(v.into());
        self
    }
    /// Sets the app token explicitly.
    pub fn token(mut self, v: Secret) -> Self {
        self.token = Some(v);
        self
    }
    /// Adds a label (over the descriptor's label of the same key).
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    /// Reads exactly this descriptor; a missing file is an error.
    pub fn descriptor(mut self, path: impl Into<PathBuf>) -> Self {
        self.descriptors = Some(vec![path.into()]);
        self.descriptor_required = true;
        self
    }
    /// Replaces the list of descriptor paths: the first that exists is read;
    /// none existing is not an error. An empty list reads no descriptor.
    pub fn descriptor_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.descriptors = Some(paths.into_iter().map(Into::into).collect());
        self.descriptor_required = false;
        self
    }
    /// Probes files below `root` instead of `/` (fake hosts in tests). The
    /// default descriptor paths are looked up below it as well; the
    /// interface probe for `ip` is skipped for any root but `/`.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }
    /// Uses these hostname rules and aliases instead of the built-in ones.
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = Some(rules);
        self
    }
    /// Loads hostname rules and aliases from a TOML file (see [`Rules::load`]).
    pub fn rules_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rules_file = Some(path.into());
        self
    }
    /// Strict mode: descriptor warnings (unknown keys, missing expected
    /// fields) become errors.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
    /// Whether `ENVID_*` variables (including `ENVID_DESCRIPTOR`) are read; on by default.
    pub fn env_vars(mut self, on: bool) -> Self {
        self.env_vars = on;
        self
    }
    /// Where variables are read from (process environment by default).
    pub fn vars(mut self, vars: Vars) -> Self {
        self.vars = vars;
        self
    }

    /// Loads a fresh environment.
    pub fn load(self) -> Result<Environment, Error> {
        Loader::new(self).load()
    }
}

/// One load: the builder's settings plus the attempts recorded on the way.
struct Loader {
    b: EnvironmentBuilder,
    attempts: Vec<Attempt>,
}

/// A value and where it came from, while merging.
type Sourced<T> = Option<(T, Source)>;

fn first<T>(candidates: impl IntoIterator<Item = Sourced<T>>) -> Sourced<T> {
    candidates.into_iter().flatten().next()
}

impl Loader {
    fn new(b: EnvironmentBuilder) -> Loader {
        Loader {
            b,
            attempts: Vec::new(),
        }
    }

    fn var(&self, name: &str) -> Sourced<String> {
        if !self.b.env_vars {
            return None;
        }
        self.b
            .vars
            .get(name)
            .map(|v| (v, Source::EnvVar(name.to_string())))
    }

    fn builder<T: Clone>(v: &Option<T>) -> Sourced<T> {
        v.clone().map(|v| (v, Source::Builder))
    }

    /// Finds and reads the descriptor by the location policy.
    fn descriptor(&mut self) -> Result<Option<descriptor::Parsed>, Error> {
        let (paths, required): (Vec<PathBuf>, bool) =
            match (&self.b.descriptors, self.var(DESCRIPTOR_VAR)) {
                (Some(p), _) => (p.clone(), self.b.descriptor_required),
                (None, Some((p, _))) => (vec![PathBuf::from(p)], true),
                (None, None) => (
                    DEFAULT_DESCRIPTOR_PATHS
                        .iter()
                        .map(|p| self.b.root.join(p.trim_start_matches('/')))
                        .collect(),
                    false,
                ),
            };
        if paths.is_empty() {
            self.attempts.push(Attempt {
                source: "descriptor".into(),
                outcome: "no descriptor path configured".into(),
            });
        }
        for path in paths {
            match descriptor::read(&path, self.b.strict) {
                Ok(parsed) => return Ok(Some(parsed)),
                Err(e) if e.kind() == ProblemKind::NotFound && !required => {
                    self.attempts.push(Attempt {
                        source: format!("descriptor {}", path.display()),
                        outcome: "file not found".into(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    fn load(mut self) -> Result<Environment, Error> {
        let rules = match (&self.b.rules, &self.b.rules_file) {
            (Some(r), _) => r.clone(),
            (None, Some(path)) => Rules::load(path)?,
            (None, None) => Rules::builtin(),
        };

        let parsed = self.descriptor()?;
        let (desc, warnings) = match parsed {
            Some(p) => (Some(p.descriptor), p.warnings),
            None => (None, Vec::new()),
        };
        let dsrc = desc.as_ref().map(|d| Source::Descriptor(d.path.clone()));
        let from_desc = |get: &dyn Fn(&Descriptor) -> Option<String>| -> Sourced<String> {
            let d = desc.as_ref()?;
            get(d).map(|v| (v, dsrc.clone().expect("descriptor source")))
        };

        let mut app = first([
            Self::builder(&self.b.app),
            self.var("ENVID_APP"),
            from_desc(&|d| d.app.clone()),
        ]);
        let mut env = first([
            Self::builder(&self.b.env),
            self.var("ENVID_ENV"),
            from_desc(&|d| d.env.clone()),
        ]);
        let sub_env = first([
            Self::builder(&self.b.sub_env),
            self.var("ENVID_SUB_ENV"),
            from_desc(&|d| d.sub_env.clone()),
        ]);
        let mut idc = first([
            Self::builder(&self.b.idc),
            self.var("ENVID_IDC"),
            from_desc(&|d| d.idc.clone()),
        ]);
        let platform = first([
            Self::builder(&self.b.platform),
            self.parsed_var("ENVID_PLATFORM", Field::Platform, |s| {
                s.parse::<Platform>().map_err(|e| e.to_string())
            })?,
            desc.as_ref()
                .and_then(|d| d.platform)
                .map(|p| (p, dsrc.clone().expect("descriptor source"))),
        ]);
        let ip = first([
            Self::builder(&self.b.ip),
            self.parsed_var("ENVID_IP", Field::Ip, parse_ip)?,
            desc.as_ref()
                .and_then(|d| d.ip)
                .map(|ip| (ip, dsrc.clone().expect("descriptor source"))),
            self.k8s_ip()?,
        ]);

        let probes = Probes {
            root: self.b.root.clone(),
            vars: self.b.vars.clone(),
            platform,
            ip,
            hostname: OnceCell::new(),
            detection: OnceCell::new(),
            probed_ip: OnceCell::new(),
        };
        if let Some(h) = &self.b.hostname {
            let _ = probes.hostname.set(Some((h.clone(), Source::Builder)));
        }

        // Hostname rules only when a field they give is still missing: on a
        // container with a full descriptor the hostname is random anyway.
        let mut hostname_match: Option<HostnameMatch> = None;
        if app.is_none() || env.is_none() || idc.is_none() {
            match probes.hostname() {
                Some((h, _)) => match rules.explain(h) {
                    Some(m) => hostname_match = Some(m),
                    None => self.attempts.push(Attempt {
                        source: format!("hostname rules on {h:?}"),
                        outcome: "no rule matched".into(),
                    }),
                },
                None => self.attempts.push(Attempt {
                    source: "hostname rules".into(),
                    outcome: "hostname could not be read".into(),
                }),
            }
        }
        if let Some(m) = &hostname_match {
            let src = Source::HostnameRule(m.rule.clone());
            app = app.or_else(|| m.app.clone().map(|a| (a, src.clone())));
            env = env.or_else(|| Some((m.env.clone(), src.clone())));
            idc = idc.or_else(|| m.idc.clone().map(|i| (i, src.clone())));
        }

        let env_type = env.as_ref().map(|(name, env_src)| {
            let explicit = first([
                Self::builder(&self.b.env_type),
                desc.as_ref()
                    .and_then(|d| d.env_type.clone())
                    .map(|t| (t, dsrc.clone().expect("descriptor source"))),
            ]);
            match explicit {
                Some((t, s)) if precedence(&s) <= precedence(env_src) => (t, s),
                _ => (
                    rules.env_type_of(name),
                    Source::Alias {
                        from: Box::new(env_src.clone()),
                    },
                ),
            }
        });

        let token = first([
            Self::builder(&self.b.token),
            desc.as_ref()
                .and_then(|d| d.token.clone())
                .map(|t| (t, dsrc.clone().expect("descriptor source"))),
        ]);
        let release = desc
            .as_ref()
            .and_then(|d| d.release.clone())
            .map(|r| (r, dsrc.clone().expect("descriptor source")));

        let (k8s, k8s_sources) = self.k8s(desc.as_ref(), dsrc.as_ref());

        let mut labels = desc.as_ref().map(|d| d.labels.clone()).unwrap_or_default();
        let labels_source = if !self.b.labels.is_empty() {
            Some(Source::Builder)
        } else if !labels.is_empty() {
            dsrc.clone()
        } else {
            None
        };
        labels.extend(self.b.labels.clone());

        match (env, idc, env_type) {
            (Some(env), Some(idc), Some(env_type)) => Ok(Environment {
                app,
                env,
                env_type,
                sub_env,
                idc,
                token,
                release,
                k8s,
                k8s_sources,
                labels,
                labels_source,
                warnings,
                descriptor_path: desc.as_ref().map(|d| d.path.clone()),
                probes,
            }),
            (env, idc, _) => {
                let mut missing = Vec::new();
                if env.is_none() {
                    missing.push(Field::Env);
                }
                if idc.is_none() {
                    missing.push(Field::Idc);
                }
                let attempts =
                    self.explain_attempts(&missing, desc.as_ref(), hostname_match.as_ref());
                let mut found = Vec::new();
                let mut add = |field: Field, value: Option<String>, source: Option<Source>| {
                    if let (Some(value), Some(source)) = (value, source) {
                        found.push(Fact {
                            field,
                            value,
                            source,
                        });
                    }
                };
                add(
                    Field::App,
                    app.as_ref().map(|a| a.0.clone()),
                    app.map(|a| a.1),
                );
                add(
                    Field::Env,
                    env.as_ref().map(|a| a.0.clone()),
                    env.map(|a| a.1),
                );
                add(
                    Field::Idc,
                    idc.as_ref().map(|a| a.0.clone()),
                    idc.map(|a| a.1),
                );
                let (p, ps) = probes.platform();
                add(Field::Platform, Some(p.to_string()), Some(ps));
                let d = probes.detection();
                if let Some(c) = &d.container {
                    let text = match (&c.runtime, &c.id) {
                        (Some(r), Some(id)) => format!("{r} {id}"),
                        (Some(r), None) => r.to_string(),
                        (None, Some(id)) => id.clone(),
                        (None, None) => "yes".into(),
                    };
                    add(
                        Field::Container,
                        Some(text),
                        Some(Source::Probe(evidence_summary(d, |l| !is_vm_evidence(l)))),
                    );
                }
                if let Some(v) = &d.virtualization {
                    add(
                        Field::Virtualization,
                        Some(v.clone()),
                        Some(Source::Probe(evidence_summary(d, is_vm_evidence))),
                    );
                }
                if let Some((h, s)) = probes.hostname() {
                    add(Field::Hostname, Some(h.clone()), Some(s.clone()));
                }
                if let Some((ip, s)) = probes.ip() {
                    add(Field::Ip, Some(ip.to_string()), Some(s.clone()));
                }
                Err(Error::Unidentified(Box::new(Unidentified {
                    missing,
                    attempts,
                    found,
                })))
            }
        }
    }

    /// The attempts list of an unidentified load, in precedence order.
    fn explain_attempts(
        &mut self,
        missing: &[Field],
        desc: Option<&Descriptor>,
        hostname_match: Option<&HostnameMatch>,
    ) -> Vec<Attempt> {
        let names: Vec<&str> = missing.iter().map(|f| f.as_str()).collect();
        let wanted = names.join(", ");
        let mut out = vec![Attempt {
            source: "builder".into(),
            outcome: format!("no {wanted} set in code"),
        }];
        let vars: Vec<&str> = missing
            .iter()
            .map(|f| match f {
                Field::Env => "ENVID_ENV",
                _ => "ENVID_IDC",
            })
            .collect();
        out.push(Attempt {
            source: format!("environment variables {}", vars.join(", ")),
            outcome: if self.b.env_vars {
                "not set".into()
            } else {
                "switched off by the builder".into()
            },
        });
        if let Some(d) = desc {
            out.push(Attempt {
                source: format!("descriptor {}", d.path.display()),
                outcome: format!("has no {wanted}"),
            });
        }
        out.push(Attempt {
            source: "kubernetes downward-API variables".into(),
            outcome: format!("never give {wanted} (only k8s facts and POD_IP)"),
        });
        out.append(&mut self.attempts);
        if let Some(m) = hostname_match {
            out.push(Attempt {
                source: format!("hostname rule {:?} on {:?}", m.rule, m.hostname),
                outcome: format!("matched but gave no {wanted}"),
            });
        }
        // Sort into precedence order: builder, variables, descriptors, k8s, hostname.
        out.sort_by_key(|a| {
            if a.source.starts_with("builder") {
                0
            } else if a.source.starts_with("environment") {
                1
            } else if a.source.starts_with("descriptor") {
                2
            } else if a.source.starts_with("kubernetes") {
                3
            } else {
                4
            }
        });
        out
    }

    fn parsed_var<T>(
        &self,
        name: &str,
        field: Field,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Sourced<T>, Error> {
        match self.var(name) {
            None => Ok(None),
            Some((text, source)) => match parse(&text) {
                Ok(v) => Ok(Some((v, source))),
                Err(reason) => Err(Error::InvalidValue {
                    field,
                    origin: source,
                    value: text,
                    reason,
                }),
            },
        }
    }

    fn k8s_ip(&self) -> Result<Sourced<IpAddr>, Error> {
        match self.b.vars.get("POD_IP") {
            None => Ok(None),
            Some(text) => parse_ip(&text)
                .map(|ip| Some((ip, Source::K8sVar("POD_IP".into()))))
                .map_err(|reason| Error::InvalidValue {
                    field: Field::Ip,
                    origin: Source::K8sVar("POD_IP".into()),
                    value: text,
                    reason,
                }),
        }
    }

    fn k8s(
        &self,
        desc: Option<&Descriptor>,
        dsrc: Option<&Source>,
    ) -> (Option<K8s>, BTreeMap<&'static str, Source>) {
        let mut k = desc.and_then(|d| d.k8s.clone()).unwrap_or_default();
        let mut sources = BTreeMap::new();
        if let Some(src) = dsrc {
            for (name, present) in [
                ("cluster", k.cluster.is_some()),
                ("namespace", k.namespace.is_some()),
                ("pod", k.pod.is_some()),
                ("node", k.node.is_some()),
                ("workload", k.workload.is_some()),
            ] {
                if present {
                    sources.insert(name, src.clone());
                }
            }
        }
        for (var, name, slot) in [
            ("POD_NAME", "pod", &mut k.pod),
            ("POD_NAMESPACE", "namespace", &mut k.namespace),
            ("NODE_NAME", "node", &mut k.node),
        ] {
            if slot.is_none() {
                if let Some(v) = self.b.vars.get(var) {
                    *slot = Some(v);
                    sources.insert(name, Source::K8sVar(var.to_string()));
                }
            }
        }
        ((!k.is_empty()).then_some(k), sources)
    }
}

/// Lower is stronger; used to keep an explicit `env_type` only from a source
/// at least as strong as the one that gave `env`.
fn precedence(s: &Source) -> u8 {
    match s {
        Source::Builder => 0,
        Source::EnvVar(_) => 1,
        Source::Descriptor(_) => 2,
        Source::K8sVar(_) => 3,
        Source::HostnameRule(_) | Source::Alias { .. } => 4,
        Source::Probe(_) => 5,
        Source::Default => 6,
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())
}

static CURRENT: OnceCell<Environment> = OnceCell::new();

/// The process-wide environment, loaded once with the default settings (the
/// process environment, the default descriptor paths, the built-in rules).
///
/// A failed load is not cached: the next call tries again, so a process that
/// starts before its descriptor is written recovers once it is.
#[inline]
pub fn current() -> Result<&'static Environment, Error> {
    // The fast path (one acquire load) inlines into callers; loading stays out of line.
    match CURRENT.get() {
        Some(env) => Ok(env),
        None => load_current(),
    }
}

#[cold]
fn load_current() -> Result<&'static Environment, Error> {
    CURRENT.get_or_try_init(|| Environment::builder().load())
}

/// The process-wide environment if it was already loaded; never loads.
pub fn current_if_loaded() -> Option<&'static Environment> {
    CURRENT.get()
}
