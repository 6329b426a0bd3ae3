//! One hostname rule ([`Rule`]): its pattern compiled and checked, and
//! what it reads from a hostname or why it does not (see the module
//! documentation of [`crate::rules`]).

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};

use super::{HostnameMatch, RuleOutcome, RulesError, RulesErrorKind, GROUPS};
use crate::env_type::EnvType;

/// One hostname rule: a name, an anchored, case-insensitive regular expression
/// with named groups `idc` (required), `env`, `app`, `biz`, and an optional
/// default environment for hostnames whose `env` group did not match.
#[derive(Clone)]
pub struct Rule {
    pub(super) name: String,
    pattern: String,
    default_env: Option<String>,
    regex: Regex,
    env_group: Option<usize>,
    idc_group: usize,
    app_group: Option<usize>,
    biz_group: Option<usize>,
    /// The built-in rule's guard against `l-a1.h.cn0.beta` (see module docs).
    pub(super) refuse_env_after_idc: bool,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("default_env", &self.default_env)
            .finish()
    }
}

pub(super) fn rule_error(kind: RulesErrorKind, rule: Option<&str>, message: String) -> RulesError {
    RulesError {
        kind,
        path: None,
        rule: rule.map(str::to_string),
        location: None,
        message,
    }
}

pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Rule {
    /// Compiles a rule. The pattern is anchored and compiled case-insensitively;
    /// it must have a named group `idc`, may have `env`, `app` and `biz`, and no
    /// other named group. `default_env` (lower-cased) is the environment of
    /// hostnames whose `env` group did not match; a pattern without an `env`
    /// group needs one.
    ///
    /// The error has no path or location (the caller knows them); its `rule` is
    /// `name`.
    pub fn new(name: &str, pattern: &str, default_env: Option<&str>) -> Result<Rule, RulesError> {
        if name.trim().is_empty() {
            return Err(rule_error(
                RulesErrorKind::InvalidRule,
                None,
                "a rule's name must not be empty".into(),
            ));
        }
        let rule = Some(name);
        // Check the pattern as written, so the error points into the user's text.
        if let Err(e) = Regex::new(pattern) {
            return Err(rule_error(
                RulesErrorKind::InvalidRegex,
                rule,
                format!("invalid pattern: {e}"),
            ));
        }
        let regex = RegexBuilder::new(&format!("^(?:{pattern})$"))
            .case_insensitive(true)
            .build()
            .map_err(|e| {
                rule_error(
                    RulesErrorKind::InvalidRegex,
                    rule,
                    format!("invalid pattern: {e}"),
                )
            })?;
        let mut groups: [Option<usize>; 4] = [None; 4];
        for (i, group) in regex.capture_names().enumerate() {
            let Some(group) = group else { continue };
            match GROUPS.iter().position(|g| *g == group) {
                Some(k) => groups[k] = Some(i),
                None => {
                    return Err(rule_error(
                        RulesErrorKind::InvalidRule,
                        rule,
                        format!(
                            "unknown named group {group:?} in the pattern \
                             (the groups are env, idc, app, biz)"
                        ),
                    ))
                }
            }
        }
        let [env_group, idc_group, app_group, biz_group] = groups;
        let Some(idc_group) = idc_group else {
            return Err(rule_error(
                RulesErrorKind::InvalidRule,
                rule,
                "the pattern has no named group `idc` (write (?P<idc>...))".into(),
            ));
        };
        let default_env = match default_env {
            None => None,
            Some(d) => {
                let d = d.trim().to_ascii_lowercase();
                if !is_env_name(&d) {
                    return Err(rule_error(
                        RulesErrorKind::InvalidRule,
                        rule,
                        format!(
                            "default_env {d:?} is not an environment name \
                             (letters, digits, '-' and '_', not empty)"
                        ),
                    ));
                }
                Some(d)
            }
        };
        if env_group.is_none() && default_env.is_none() {
            return Err(rule_error(
                RulesErrorKind::InvalidRule,
                rule,
                "the pattern has no named group `env` and the rule has no default_env".into(),
            ));
        }
        Ok(Rule {
            name: name.to_string(),
            pattern: pattern.to_string(),
            default_env,
            regex,
            env_group,
            idc_group,
            app_group,
            biz_group,
            refuse_env_after_idc: false,
        })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pattern as written (before anchoring).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The default environment, lower case.
    pub fn default_env(&self) -> Option<&str> {
        self.default_env.as_deref()
    }

    /// Matches an already normalised hostname, or says why not.
    pub(super) fn apply(
        &self,
        host: &str,
        aliases: &BTreeMap<String, EnvType>,
    ) -> Result<HostnameMatch, Miss> {
        let caps = self.regex.captures(host).ok_or(Miss::Pattern)?;
        let nonempty = |g: Option<usize>| {
            g.and_then(|g| caps.get(g))
                .filter(|m| !m.is_empty())
                .map(|m| m.as_str())
        };
        let idc = caps
            .get(self.idc_group)
            .filter(|m| !m.is_empty())
            .ok_or(Miss::NoIdc)?;
        let (env, env_defaulted) = match nonempty(self.env_group) {
            Some(env) => (env.to_ascii_lowercase(), false),
            None => (self.default_env.clone().ok_or(Miss::NoEnv)?, true),
        };
        if env_defaulted && self.refuse_env_after_idc {
            // `l-a1.h.cn0.beta`: an environment name right after the idc.
            if let Some(rest) = host[idc.end()..].strip_prefix('.') {
                let label = rest.split('.').next().unwrap_or("");
                if aliases.contains_key(label) {
                    return Err(Miss::EnvAfterIdc {
                        idc: idc.as_str().to_string(),
                        label: label.to_string(),
                    });
                }
            }
        }
        let env_type = EnvType::of_env_in(aliases, &env);
        Ok(HostnameMatch {
            rule: self.name.clone(),
            hostname: host.to_string(),
            env,
            env_defaulted,
            env_type,
            idc: Some(idc.as_str().to_string()),
            app: nonempty(self.app_group).map(str::to_string),
            biz: nonempty(self.biz_group).map(str::to_string),
        })
    }

    /// Why this rule does not read `host` (normalised), as a sentence that
    /// names the convention the rule expects.
    pub(super) fn reason(&self, host: &str, miss: &Miss) -> String {
        match miss {
            Miss::Pattern if self.refuse_env_after_idc => {
                let hint = builtin_hint(host);
                format!("does not follow the convention {BUILTIN_CONVENTION}: {hint}")
            }
            Miss::Pattern => format!("does not match the pattern {:?}", self.pattern),
            Miss::NoIdc => format!(
                "the pattern {:?} matches, but its idc group took no part",
                self.pattern
            ),
            Miss::NoEnv => format!(
                "the pattern {:?} matches, but its env group took no part and the rule has no default_env",
                self.pattern
            ),
            Miss::EnvAfterIdc { idc, label } => format!(
                "refused on purpose: {label:?} right after the idc {idc:?} is an environment \
                 name, so this is either a {label} host with its segments swapped or a prod \
                 host in domain {label}; envid does not guess (write the env before the idc: \
                 l-<app>.<biz>.{label}.{idc})"
            ),
        }
    }
}

/// How a rule failed to read a hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Miss {
    Pattern,
    NoIdc,
    NoEnv,
    EnvAfterIdc { idc: String, label: String },
}

impl Miss {
    pub(super) fn outcome(&self) -> RuleOutcome {
        match self {
            Miss::Pattern => RuleOutcome::NoMatch,
            Miss::NoIdc => RuleOutcome::NoIdc,
            Miss::NoEnv => RuleOutcome::NoEnv,
            Miss::EnvAfterIdc { .. } => RuleOutcome::EnvAfterIdc,
        }
    }
}

/// The built-in convention, as messages show it.
pub const BUILTIN_CONVENTION: &str =
    "l-<app><n>.<biz>[.<env>].<idc>[.<domain>] with idc cn<digits> (l-flightqma9.f.beta.cn0)";

/// Which part of the built-in convention a (normalised) hostname misses.
fn builtin_hint(host: &str) -> String {
    let Some(rest) = host.strip_prefix("l-") else {
        return "it does not start with \"l-\"".into();
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let is_idc =
        |l: &str| l.len() > 2 && l.starts_with("cn") && l[2..].bytes().all(|b| b.is_ascii_digit());
    match labels.iter().position(|l| is_idc(l)) {
        None => "it has no idc label (cn followed by digits, like cn0)".into(),
        Some(i) if i < 2 => "it needs <app><n> and <biz> labels before the idc".into(),
        Some(i) if i > 3 => {
            "only <biz> and one optional <env> label may stand between <app><n> and the idc".into()
        }
        Some(_) => format!(
            "the app label {:?} must end in a letter (then an optional instance number), \
             and the other labels are letters, digits and dashes",
            labels[0]
        ),
    }
}
