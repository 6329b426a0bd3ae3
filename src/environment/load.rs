//! One load: find the descriptor, merge every source field by field in
//! precedence order, fall back to the hostname rules, derive `env_type`, and
//! either build the [`Environment`] or report why it is unidentified.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use once_cell::sync::OnceCell;

use super::builder::EnvironmentBuilder;
use super::unidentified;
use super::{
    Environment, Probes, Sourced, DEFAULT_DESCRIPTOR_PATHS, DESCRIPTOR_PROPERTY, DESCRIPTOR_VAR,
};
use crate::apollo::{self, ServerProperties};
use crate::descriptor::ProblemKind;
use crate::descriptor::{self, Descriptor};
use crate::env_type::EnvType;
use crate::error::{Attempt, LoadError};
use crate::model::{Field, K8s, Labels, Platform, Release, Secret};
use crate::podinfo::{self, PodInfo, PodInfoError, PodInfoErrorKind, PodInfoFile, PodInfoMapping};
use crate::rules::{HostnameMatch, Rules};
use crate::source::Source;

// Here rather than in builder.rs, so that the builder (the settings) does
// not depend on the loader, which reads them.
impl EnvironmentBuilder {
    /// Loads a fresh environment.
    pub fn load(self) -> Result<Environment, LoadError> {
        Loader::new(self).load()
    }
}

fn first<T>(candidates: impl IntoIterator<Item = Sourced<T>>) -> Sourced<T> {
    candidates.into_iter().flatten().next()
}

/// The facts every source gave, before `env_type` is derived and before the
/// required ones are checked.
pub(super) struct Merged {
    pub(super) app: Sourced<String>,
    pub(super) env: Sourced<String>,
    pub(super) sub_env: Sourced<String>,
    pub(super) idc: Sourced<String>,
    pub(super) token: Sourced<Secret>,
    pub(super) release: Sourced<Release>,
    pub(super) k8s: Option<K8s>,
    pub(super) k8s_sources: BTreeMap<&'static str, Source>,
    pub(super) labels: Labels,
    pub(super) labels_source: Option<Source>,
}

/// One load: the builder's settings plus the attempts recorded on the way.
pub(super) struct Loader {
    b: EnvironmentBuilder,
    attempts: Vec<Attempt>,
}

impl Loader {
    pub(super) fn new(b: EnvironmentBuilder) -> Loader {
        Loader {
            b,
            attempts: Vec::new(),
        }
    }

    pub(super) fn load(mut self) -> Result<Environment, LoadError> {
        let rules = match (&self.b.rules, &self.b.rules_file) {
            (Some(r), _) => r.clone(),
            (None, Some(path)) => Rules::load(path)?,
            (None, None) => Rules::builtin(),
        };
        let (desc, warnings) = match self.descriptor()? {
            Some(p) => (Some(p.descriptor), p.warnings),
            None => (None, Vec::new()),
        };
        // Apollo's file stands in for a descriptor, never beside one.
        let apollo = match desc {
            Some(_) => None,
            None => self.apollo()?,
        };
        let pod = self.podinfo()?;
        let pod = pod.as_ref().map(|info| (info, rules.podinfo()));
        let mut merged = self.merge(desc.as_ref(), apollo.as_ref(), pod)?;
        let probes = self.probes(desc.as_ref())?;
        let hostname_match = self.hostname_fallback(&rules, &probes, &mut merged);
        let env_type = merged
            .env
            .as_ref()
            .map(|(name, from)| self.env_type(&rules, desc.as_ref(), name, from));

        match (merged.env, merged.idc, env_type) {
            (Some(env), Some(idc), Some(env_type)) => Ok(Environment {
                app: merged.app,
                env,
                env_type,
                sub_env: merged.sub_env,
                idc,
                token: merged.token,
                release: merged.release,
                k8s: merged.k8s,
                k8s_sources: merged.k8s_sources,
                labels: merged.labels,
                labels_source: merged.labels_source,
                warnings,
                descriptor_path: desc.map(|d| d.path),
                probes,
            }),
            (env, idc, _) => {
                if let Some((info, mapping)) = pod {
                    self.attempts.push(podinfo_attempt(
                        info,
                        mapping,
                        env.is_none(),
                        idc.is_none(),
                    ));
                }
                let facts = unidentified::Facts {
                    app: merged.app,
                    env,
                    idc,
                };
                Err(unidentified::report(
                    &self.b,
                    std::mem::take(&mut self.attempts),
                    desc.as_ref().map(|d| (d, &warnings[..])),
                    hostname_match.as_ref(),
                    facts,
                    &probes,
                ))
            }
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

    fn property(&self, name: &str) -> Sourced<String> {
        self.b
            .properties
            .get(name)
            .map(|v| (v, Source::SystemProperty(name.to_string())))
    }

    fn builder<T: Clone>(v: &Option<T>) -> Sourced<T> {
        v.clone().map(|v| (v, Source::Builder))
    }

    /// Finds and reads the descriptor by the location policy.
    fn descriptor(&mut self) -> Result<Option<descriptor::Parsed>, LoadError> {
        let named = first([self.property(DESCRIPTOR_PROPERTY), self.var(DESCRIPTOR_VAR)]);
        let (paths, required): (Vec<PathBuf>, bool) = match (&self.b.descriptors, named) {
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
                source: Source::Builder,
                outcome: "the descriptor path list is empty".into(),
            });
        }
        for path in paths {
            match descriptor::read(&path, self.b.strict) {
                Ok(parsed) => return Ok(Some(parsed)),
                Err(e) if e.kind() == ProblemKind::NotFound && !required => {
                    self.attempts.push(Attempt {
                        source: Source::Descriptor(path),
                        outcome: "file not found".into(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The downward-API volume: the builder's directory, else the one
    /// `ENVID_PODINFO` names (both must exist), else `/etc/podinfo` below
    /// the root when it exists.
    fn podinfo(&mut self) -> Result<Option<PodInfo>, LoadError> {
        let named = match &self.b.podinfo_dir {
            Some(p) => Some((p.clone(), "set by the program".to_string())),
            None => self
                .var(podinfo::DIR_VAR)
                .map(|(p, _)| (PathBuf::from(p), format!("named by {}", podinfo::DIR_VAR))),
        };
        let (dir, named_by) = match named {
            Some((d, by)) => (d, Some(by)),
            None => (
                self.b
                    .root
                    .join(podinfo::DEFAULT_DIR.trim_start_matches('/')),
                None,
            ),
        };
        match (PodInfo::read(&dir)?, named_by) {
            (Some(info), _) => Ok(Some(info)),
            (None, Some(by)) => Err(PodInfoError {
                kind: PodInfoErrorKind::Io,
                path: dir,
                location: None,
                key: None,
                message: format!("no such directory ({by})"),
            }
            .into()),
            (None, None) => {
                self.attempts.push(Attempt {
                    source: Source::PodInfo {
                        file: dir,
                        key: String::new(),
                    },
                    outcome: "directory not found (no downward-API volume)".into(),
                });
                Ok(None)
            }
        }
    }

    /// Apollo's `server.properties`, at the path the JVM property or the
    /// variable names, else at its default place below the root.
    fn apollo(&mut self) -> Result<Option<ServerProperties>, LoadError> {
        let named = match self.property(apollo::PATH_PROPERTY) {
            Some((p, _)) => Some(p),
            None => self.b.vars.get(apollo::PATH_VAR),
        };
        let path = match named {
            Some(p) => PathBuf::from(p),
            None => self
                .b
                .root
                .join(apollo::DEFAULT_PATH.trim_start_matches('/')),
        };
        let props = apollo::read(&path)?;
        if props.is_none() {
            self.attempts.push(Attempt {
                source: Source::Apollo(path),
                outcome: "file not found".into(),
            });
        }
        Ok(props)
    }

    /// Every field that code, JVM properties, variables, the descriptor (or
    /// Apollo's file), the downward-API volume and the Kubernetes variables
    /// give, each from the highest source that has it.
    fn merge(
        &self,
        desc: Option<&Descriptor>,
        apollo: Option<&ServerProperties>,
        pod: Option<(&PodInfo, &PodInfoMapping)>,
    ) -> Result<Merged, LoadError> {
        // Only asked when every higher source left the field out: a bad
        // value the pod carries for a field it does not give is no error.
        let or_pod =
            |higher: Sourced<String>, field: Field| -> Result<Sourced<String>, LoadError> {
                if higher.is_some() {
                    return Ok(higher);
                }
                let Some((info, mapping)) = pod else {
                    return Ok(None);
                };
                Ok(mapping.resolve(info, field)?.map(|(v, o)| {
                    (
                        v,
                        Source::PodInfo {
                            file: o.file,
                            key: o.key,
                        },
                    )
                }))
            };
        let dsrc = desc.map(|d| Source::Descriptor(d.path.clone()));
        let from_apollo = |v: &Option<String>| -> Sourced<String> {
            let a = apollo?;
            v.clone().map(|v| (v, Source::Apollo(a.path.clone())))
        };
        let from_desc = |get: &dyn Fn(&Descriptor) -> Option<String>| -> Sourced<String> {
            let d = desc?;
            get(d).map(|v| (v, dsrc.clone().expect("descriptor source")))
        };
        let token = first([
            Self::builder(&self.b.token),
            desc.and_then(|d| d.token.clone())
                .map(|t| (t, dsrc.clone().expect("descriptor source"))),
        ]);
        let release = desc
            .and_then(|d| d.release.clone())
            .map(|r| (r, dsrc.clone().expect("descriptor source")));
        let (k8s, k8s_sources) = self.k8s(desc, dsrc.as_ref(), pod.map(|(info, _)| info));
        let desc_labels = desc.map(|d| d.labels.clone()).unwrap_or_default();
        let mut labels = match pod {
            Some((info, mapping)) => mapping.offered_labels(info)?,
            None => Labels::new(),
        };
        let labels_source = if !self.b.labels.is_empty() {
            Some(Source::Builder)
        } else if !desc_labels.is_empty() {
            dsrc.clone()
        } else if let (false, Some((info, _))) = (labels.is_empty(), pod) {
            Some(Source::PodInfo {
                file: info.path(PodInfoFile::Labels),
                key: String::new(),
            })
        } else {
            None
        };
        labels.extend(desc_labels);
        labels.extend(self.b.labels.clone());
        Ok(Merged {
            app: or_pod(
                first([
                    Self::builder(&self.b.app),
                    self.property("envid.app"),
                    self.var("ENVID_APP"),
                    from_desc(&|d| d.app.clone()),
                ]),
                Field::App,
            )?,
            env: or_pod(
                first([
                    Self::builder(&self.b.env),
                    self.property("envid.env"),
                    self.var("ENVID_ENV"),
                    from_desc(&|d| d.env.clone()),
                    apollo.and_then(|a| from_apollo(&a.env)),
                ]),
                Field::Env,
            )?,
            sub_env: or_pod(
                first([
                    Self::builder(&self.b.sub_env),
                    self.property("envid.sub_env"),
                    self.var("ENVID_SUB_ENV"),
                    from_desc(&|d| d.sub_env.clone()),
                ]),
                Field::SubEnv,
            )?,
            idc: or_pod(
                first([
                    Self::builder(&self.b.idc),
                    self.property("envid.idc"),
                    self.var("ENVID_IDC"),
                    from_desc(&|d| d.idc.clone()),
                    apollo.and_then(|a| from_apollo(&a.idc)),
                ]),
                Field::Idc,
            )?,
            token,
            release,
            k8s,
            k8s_sources,
            labels,
            labels_source,
        })
    }

    /// The facts probes may give, with what higher sources already said
    /// about them; the probes themselves run on first access.
    fn probes(&self, desc: Option<&Descriptor>) -> Result<Probes, LoadError> {
        let dsrc = || Source::Descriptor(desc.expect("descriptor").path.clone());
        let platform = first([
            Self::builder(&self.b.platform),
            parsed(self.var("ENVID_PLATFORM"), Field::Platform, |s| {
                s.parse::<Platform>().map_err(|e| e.to_string())
            })?,
            desc.and_then(|d| d.platform).map(|p| (p, dsrc())),
        ]);
        let ip = first([
            Self::builder(&self.b.ip),
            parsed(self.property("envid.ip"), Field::Ip, parse_ip)?,
            parsed(self.var("ENVID_IP"), Field::Ip, parse_ip)?,
            desc.and_then(|d| d.ip).map(|ip| (ip, dsrc())),
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
        Ok(probes)
    }

    /// Fills `app`, `env` and `idc` from the hostname rules when a higher
    /// source left one of them out; records why the rules gave nothing.
    fn hostname_fallback(
        &mut self,
        rules: &Rules,
        probes: &Probes,
        merged: &mut Merged,
    ) -> Option<HostnameMatch> {
        // Only when a field they give is still missing: on a container with
        // a full descriptor the hostname is random anyway.
        if merged.app.is_some() && merged.env.is_some() && merged.idc.is_some() {
            return None;
        }
        let Some((h, _)) = probes.hostname() else {
            self.attempts.push(Attempt {
                source: Source::Probe("hostname".into()),
                outcome: "the hostname could not be read, so no hostname rule was tried".into(),
            });
            return None;
        };
        let trace = rules.trace(h);
        let Some(m) = trace.matched else {
            if rules.rules().is_empty() {
                self.attempts.push(Attempt {
                    source: Source::HostnameRule("(none)".into()),
                    outcome: "the rules file leaves no hostname rule".into(),
                });
            }
            if let Some(why) = trace.refused {
                self.attempts.push(Attempt {
                    source: Source::HostnameRule("(none)".into()),
                    outcome: format!("no rule tried on hostname {h:?}: {why}"),
                });
            }
            for a in trace.attempts {
                self.attempts.push(Attempt {
                    source: Source::HostnameRule(a.rule),
                    outcome: format!("no match for hostname {h:?}: {}", a.reason),
                });
            }
            return None;
        };
        let src = Source::HostnameRule(m.rule.clone());
        if merged.app.is_none() {
            merged.app = m.app.clone().map(|a| (a, src.clone()));
        }
        if merged.env.is_none() {
            merged.env = Some((m.env.clone(), src.clone()));
        }
        if merged.idc.is_none() {
            merged.idc = m.idc.clone().map(|i| (i, src.clone()));
        }
        Some(m)
    }

    /// `env_type`: an explicit one only from a source at least as strong as
    /// the one that gave `env` (a descriptor's class must not stick to an
    /// `env` overridden by `ENVID_ENV`), else derived through the alias table.
    fn env_type(
        &self,
        rules: &Rules,
        desc: Option<&Descriptor>,
        env: &str,
        env_source: &Source,
    ) -> (EnvType, Source) {
        let explicit = first([
            Self::builder(&self.b.env_type),
            desc.and_then(|d| {
                d.env_type
                    .clone()
                    .map(|t| (t, Source::Descriptor(d.path.clone())))
            }),
        ]);
        match explicit {
            Some((t, s)) if s.precedence() <= env_source.precedence() => (t, s),
            _ => (
                rules.env_type_of(env),
                Source::Alias {
                    from: Box::new(env_source.clone()),
                },
            ),
        }
    }

    fn k8s_ip(&self) -> Result<Sourced<IpAddr>, LoadError> {
        match self.b.vars.get("POD_IP") {
            None => Ok(None),
            Some(text) => parse_ip(&text)
                .map(|ip| Some((ip, Source::K8sVar("POD_IP".into()))))
                .map_err(|reason| LoadError::InvalidValue {
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
        pod: Option<&PodInfo>,
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
        if let Some(uid) = pod.and_then(|p| p.uid.clone().map(|u| (u, p.uid_path()))) {
            if k.pod_uid.is_none() {
                k.pod_uid = Some(uid.0);
                sources.insert(
                    "pod_uid",
                    Source::PodInfo {
                        file: uid.1,
                        key: String::new(),
                    },
                );
            }
        }
        for (var, name, slot) in [
            ("POD_UID", "pod_uid", &mut k.pod_uid),
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

/// The report's line for a downward-API volume that was read but gave no
/// `env` or `idc`: the keys looked for.
fn podinfo_attempt(
    info: &PodInfo,
    mapping: &PodInfoMapping,
    env_missing: bool,
    idc_missing: bool,
) -> Attempt {
    let mut parts = Vec::new();
    for (field, missing) in [(Field::Env, env_missing), (Field::Idc, idc_missing)] {
        if !missing {
            continue;
        }
        let keys: Vec<String> = mapping.keys(field).iter().map(|k| k.to_string()).collect();
        parts.push(if keys.is_empty() {
            format!("no {field} (the mapping has no key for it)")
        } else {
            format!("no {field} (no annotation or label {})", keys.join(", "))
        });
    }
    Attempt {
        source: Source::PodInfo {
            file: info.dir.clone(),
            key: String::new(),
        },
        outcome: format!("has {}", parts.join(", ")),
    }
}

/// A text value parsed into its type; a value that does not parse is an
/// error naming the field, the source and the value.
fn parsed<T>(
    text: Sourced<String>,
    field: Field,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Sourced<T>, LoadError> {
    match text {
        None => Ok(None),
        Some((text, source)) => match parse(&text) {
            Ok(v) => Ok(Some((v, source))),
            Err(reason) => Err(LoadError::InvalidValue {
                field,
                origin: source,
                value: text,
                reason,
            }),
        },
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())
}
