//! [`EnvironmentBuilder`]: the settings of one load (explicit values,
//! descriptor paths, probe root, rules, strictness, variables).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::env_type::EnvType;
use crate::model::{Labels, Platform, Secret};
use crate::rules::Rules;
use crate::vars::Vars;

/// Builds an [`Environment`](super::Environment): custom descriptor paths, probe root, rules,
/// explicit values (highest precedence), strict mode, and whether `ENVID_*`
/// variables are read.
#[derive(Clone, Debug)]
pub struct EnvironmentBuilder {
    pub(super) app: Option<String>,
    pub(super) env: Option<String>,
    pub(super) env_type: Option<EnvType>,
    pub(super) sub_env: Option<String>,
    pub(super) idc: Option<String>,
    pub(super) platform: Option<Platform>,
    pub(super) ip: Option<IpAddr>,
    pub(super) hostname: Option<String>,
    pub(super) token: Option<Secret>,
    pub(super) labels: Labels,
    pub(super) descriptors: Option<Vec<PathBuf>>,
    pub(super) descriptor_required: bool,
    pub(super) podinfo_dir: Option<PathBuf>,
    pub(super) root: PathBuf,
    pub(super) rules: Option<Rules>,
    pub(super) rules_file: Option<PathBuf>,
    pub(super) strict: bool,
    pub(super) env_vars: bool,
    pub(super) vars: Vars,
    pub(super) properties: Vars,
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
            podinfo_dir: None,
            root: PathBuf::from("/"),
            rules: None,
            rules_file: None,
            strict: false,
            env_vars: true,
            vars: Vars::Process,
            properties: Vars::Map(Default::default()),
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
    /// Reads the Kubernetes downward-API volume from this directory (see
    /// [`crate::podinfo`]) instead of `ENVID_PODINFO` or `/etc/podinfo`
    /// below the root; a directory named here or by `ENVID_PODINFO` must
    /// exist.
    pub fn podinfo_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.podinfo_dir = Some(path.into());
        self
    }
    /// Probes files below `root` instead of `/` (fake hosts in tests). The
    /// default descriptor paths and `/etc/podinfo` are looked up below it as well; the
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
    /// JVM system properties: `envid.app`, `envid.env`, `envid.sub_env`,
    /// `envid.idc`, `envid.ip` and `envid.descriptor` rank above the
    /// `ENVID_*` variables and below values set in code, with the source
    /// `system property envid.env`; `apollo.path.server.properties` names
    /// Apollo's file. The Java binding passes `System.getProperties()`; other
    /// callers rarely need this. Blank values count as unset.
    pub fn system_properties<I, K, V>(mut self, pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.properties = Vars::from_pairs(pairs);
        self
    }
}
