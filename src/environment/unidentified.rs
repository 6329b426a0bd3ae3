//! The report of a load that could not identify the host: every source
//! asked, in precedence order, why each gave nothing, and the facts that
//! were found anyway (there is no silent default; ARCHITECTURE.md,
//! "Invariants").

use super::builder::EnvironmentBuilder;
use super::{evidence_summary, is_vm_evidence, Probes, Sourced};
use crate::descriptor::{self, Descriptor};
use crate::descriptor::{Problem, ProblemKind};
use crate::error::{Attempt, Fact, LoadError, Unidentified};
use crate::model::Field;
use crate::rules::HostnameMatch;
use crate::source::Source;

/// The identifying facts as merged, some missing.
pub(super) struct Facts {
    pub(super) app: Sourced<String>,
    pub(super) env: Sourced<String>,
    pub(super) idc: Sourced<String>,
}

/// `LoadError::Unidentified` for a load that lacks `env` or `idc`. `recorded`
/// are the attempts the load noted on its way (descriptor paths not found,
/// hostname rules that did not match).
pub(super) fn report(
    b: &EnvironmentBuilder,
    recorded: Vec<Attempt>,
    desc: Option<(&Descriptor, &[Problem])>,
    hostname_match: Option<&HostnameMatch>,
    facts: Facts,
    probes: &Probes,
) -> LoadError {
    let mut missing = Vec::new();
    if facts.env.is_none() {
        missing.push(Field::Env);
    }
    if facts.idc.is_none() {
        missing.push(Field::Idc);
    }
    let attempts = attempts(b, recorded, &missing, desc, hostname_match);
    let found = found(facts, probes);
    let warnings = desc
        .map(|(d, w)| w.iter().map(|p| (d.path.clone(), p.clone())).collect())
        .unwrap_or_default();
    LoadError::Unidentified(Box::new(Unidentified {
        missing,
        attempts,
        found,
        warnings,
    }))
}

/// Every source that could have given a missing field, strongest first.
fn attempts(
    b: &EnvironmentBuilder,
    recorded: Vec<Attempt>,
    missing: &[Field],
    desc: Option<(&Descriptor, &[Problem])>,
    hostname_match: Option<&HostnameMatch>,
) -> Vec<Attempt> {
    let names: Vec<&str> = missing.iter().map(|f| f.as_str()).collect();
    let wanted = names.join(", ");
    let mut out = vec![Attempt {
        source: Source::Builder,
        outcome: format!("it set no {wanted}"),
    }];
    for field in missing {
        let var = match field {
            Field::Env => "ENVID_ENV",
            _ => "ENVID_IDC",
        };
        out.push(Attempt {
            source: Source::EnvVar(var.into()),
            outcome: if b.env_vars {
                "not set".into()
            } else {
                "not read: environment variables are switched off".into()
            },
        });
    }
    if let Some((d, warnings)) = desc {
        let unknown: Vec<&str> = warnings
            .iter()
            .filter(|w| w.kind == ProblemKind::UnknownKey)
            .filter_map(|w| w.field.as_deref())
            .collect();
        let hints: Vec<String> = names
            .iter()
            .filter_map(|f| descriptor::did_you_mean(f, &unknown))
            .collect();
        let mut outcome = format!("has no {wanted}");
        if !hints.is_empty() {
            outcome = format!("{outcome} ({})", hints.join("; "));
        }
        out.push(Attempt {
            source: Source::Descriptor(d.path.clone()),
            outcome,
        });
    }
    out.push(Attempt {
        source: Source::K8sVar("POD_*".into()),
        outcome: format!("kubernetes variables never give {wanted} (only k8s facts and POD_IP)"),
    });
    out.extend(recorded);
    if let Some(m) = hostname_match {
        out.push(Attempt {
            source: Source::HostnameRule(m.rule.clone()),
            outcome: format!("matched hostname {:?} but gave no {wanted}", m.hostname),
        });
    }
    // Stable: attempts of one rank keep the order they were made in.
    out.sort_by_key(|a| a.source.precedence());
    out
}

/// The facts a failed load still knows, so the report can show them.
fn found(facts: Facts, probes: &Probes) -> Vec<Fact> {
    let mut found = Vec::new();
    let mut add = |field: Field, fact: Sourced<String>| {
        if let Some((value, source)) = fact {
            found.push(Fact {
                field,
                value,
                source,
            });
        }
    };
    add(Field::App, facts.app);
    add(Field::Env, facts.env);
    add(Field::Idc, facts.idc);
    let (p, ps) = probes.platform();
    add(Field::Platform, Some((p.to_string(), ps)));
    let d = probes.detection();
    if let Some(c) = &d.container {
        let text = match (&c.runtime, &c.id) {
            (Some(r), Some(id)) => format!("{r} {id}"),
            (Some(r), None) => r.to_string(),
            (None, Some(id)) => id.clone(),
            (None, None) => "yes".into(),
        };
        let source = Source::Probe(evidence_summary(d, |l| !is_vm_evidence(l)));
        add(Field::Container, Some((text, source)));
    }
    if let Some(v) = &d.virtualization {
        let source = Source::Probe(evidence_summary(d, is_vm_evidence));
        add(Field::Virtualization, Some((v.clone(), source)));
    }
    if let Some((h, s)) = probes.hostname() {
        add(Field::Hostname, Some((h.clone(), s.clone())));
    }
    if let Some((ip, s)) = probes.ip() {
        add(Field::Ip, Some((ip.to_string(), s.clone())));
    }
    found
}
