//! Hostname rules: the KVM fallback (ARCHITECTURE.md, "Where am I").
//! Reading the hostname itself is a probe ([`crate::detect::hostname`]).
//!
//! On a legacy KVM virtual machine without an environment descriptor, the
//! hostname itself says where the VM is. A [`Rules`] value holds an ordered
//! list of [`Rule`]s (regular expressions with named groups) and the alias
//! table that maps environment names to an [`EnvType`]; [`Rules::explain`]
//! returns what the first matching rule read from a hostname.
//!
//! # The built-in convention
//!
//! The built-in rule, named `kvm-default` ([`BUILTIN_RULE_NAME`]), reads
//!
//! ```text
//! l-<app><n>.<biz>[.<env>].<idc>[.<domain>]      no env segment → prod
//! ```
//!
//! | hostname | app | biz | env | idc |
//! | --- | --- | --- | --- | --- |
//! | `l-flightqma9.f.beta.cn0.example.com` | `flightqma` | `f` | `beta` | `cn0` |
//! | `l-qmq1.h.cn5` | `qmq` | `h` | `prod` (defaulted) | `cn5` |
//! | `l-qmq1.h.cn5.example.com` | `qmq` | `h` | `prod` (defaulted) | `cn5` |
//! | `l-k8sproxy12.ops.dev.cn3` | `k8sproxy` | `ops` | `dev` | `cn3` |
//! | `l-web-03.f.cn1` | `web` | `f` | `prod` (defaulted) | `cn1` |
//!
//! * `<app><n>`: the first label after `l-`. `<n>` is the instance number,
//!   the digits at the end of the label, with one `-` before them (`web-03`);
//!   it may be absent (`l-gateway.f.cn0` reads app `gateway`). `<app>` is the
//!   rest; it may hold digits and dashes inside (`k8sproxy`, `flight-qma`) but
//!   must end in a letter, so a label of digits only (`l-123`) does not match.
//! * `<biz>`: one label of letters, digits and dashes, not of the form `cn<digits>`.
//! * `<env>`: one optional label starting with a letter, not of the form
//!   `cn<digits>`; so `l-qmq1.h.cn5.example.com` reads idc `cn5`, never env `cn5`.
//! * `<idc>`: `cn` followed by digits (`cn0` … `cn12` …).
//! * `<domain>`: any number of further labels.
//!
//! An environment name *after* the idc is ambiguous: `l-a1.h.cn0.beta` could be
//! a beta VM with its segments swapped, or a production VM in domain `beta`.
//! The built-in rule refuses to guess: when the hostname has no env segment and
//! the first label after the idc is a name of the alias table (`beta`, `prod`,
//! `dev`, `staging`, …, including a rules file's aliases), it does not match,
//! and loading the environment reports that no rule matched. A label the alias
//! table does not know is taken as the domain (`l-a1.h.cn0.perf` reads prod in
//! `cn0`); with an env segment the domain may start with any label
//! (`l-a1.h.beta.cn0.prod.example.com` reads beta).
//!
//! # Normalisation and matching
//!
//! Before matching, ASCII letters are lower-cased (only when there are upper-case
//! ones; the common case does not allocate) and one trailing dot is removed
//! (`L-QMQ1.H.CN5.` reads as `l-qmq1.h.cn5`). Non-ASCII characters are left as
//! they are; hostnames are ASCII (IDNs appear as `xn--` punycode), and the
//! built-in rule matches ASCII only (it is compiled with `(?-u)`). User rules
//! are Unicode-aware unless they say `(?-u)` too; note that case-insensitive
//! Unicode matching lets `[a-z]` match `\u{212A}` (Kelvin sign) and `ſ`. Names
//! longer than 253 bytes (the DNS limit) never match. Every pattern must match
//! the *whole* name: patterns are anchored (`^(?:pattern)$`) whether or not
//! they say so, and they are compiled case-insensitively.
//!
//! Rules are tried in order and the first match wins. A match counts only when
//! the `idc` group took part with a non-empty value, and when the `env` group
//! took part with a non-empty value or the rule has a `default_env`; otherwise
//! the next rule is tried. The `app` and `biz` groups are reported as matched
//! (only the built-in rule strips an instance number, through its pattern).
//!
//! # The alias table
//!
//! Environment names are mapped to their class through the alias table of
//! [`EnvType`] (see [`EnvType::of_env`]). A rules file can add names or re-map
//! the built-in ones, except the five class names themselves.
//!
//! # The rules file
//!
//! Operator-written TOML (load it with [`Rules::load`]):
//!
//! ```toml
//! # Drop the built-in rule and use only the rules below (default: false,
//! # the file's rules are tried first, then the built-in rule).
//! replace_builtin = false
//!
//! [[rule]]
//! name = "web"                      # required, unique, non-empty
//! pattern = '^web-(?P<app>[a-z]+)-\d+\.(?P<env>[a-z]+)\.(?P<idc>cn\d+)$'
//! default_env = "prod"              # optional: env when the env group did not match
//!
//! [aliases]                         # optional: env name = class
//! perf = "test"                     # prod, beta, dev, test or local
//!
//! [podinfo]                         # optional: the downward-API mapping
//! env = ["envid.io/env", "label:environment"]
//! labels = true                     # offer the pod's other labels
//! ```
//!
//! * `[podinfo]` overrides [`PodInfoMapping::default`] field by field (see
//!   [`crate::podinfo`] for the keys and their `annotation:`/`label:`
//!   prefixes); a field left out keeps its default keys.
//!
//! * A pattern must have a named group `idc` and may have `env`, `app` and
//!   `biz`; any other *named* group is refused (it is most likely a typo such
//!   as `evn`); unnamed groups are fine. A pattern with no `env` group needs a
//!   `default_env`.
//! * `replace_builtin` replaces the built-in *rules* only; the built-in aliases
//!   stay, amended by the file's `[aliases]`. A file may leave no rule at all
//!   (`replace_builtin = true` and no `[[rule]]`): that switches the hostname
//!   fallback off.
//! * Because this is configuration written by people, unknown keys are errors
//!   (unlike the descriptor, which accepts them for forward compatibility): a
//!   misspelt `defualt_env` must not silently do nothing.
//! * Errors are [`RulesError`]s naming the file, the line and column, and the
//!   rule: [`RulesErrorKind::Io`] (unreadable file), [`RulesErrorKind::Syntax`]
//!   (not TOML, not UTF-8, wrong shape, unknown key),
//!   [`RulesErrorKind::InvalidRegex`], [`RulesErrorKind::InvalidRule`] (no
//!   `idc` group, unknown group, empty or duplicate name, bad default env,
//!   neither `env` group nor default env), [`RulesErrorKind::InvalidAlias`]
//!   (unknown class, bad or empty name, re-mapping a class name).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use once_cell::sync::Lazy;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::env_type::EnvType;
use crate::location::Location;
use crate::podinfo::PodInfoMapping;
use crate::read::ReadProblem;

/// The name of the built-in rule.
pub const BUILTIN_RULE_NAME: &str = "kvm-default";

/// The built-in rule's pattern (see the module documentation).
pub const BUILTIN_PATTERN: &str = concat!(
    // ASCII only: case-insensitive Unicode matching would let `[a-z]` match
    // the Kelvin sign and the long s.
    r"(?-u)",
    // app: ends in a letter; then one optional dash and the instance number
    r"^l-(?P<app>(?:[a-z0-9][a-z0-9-]*)?[a-z])-?[0-9]*",
    // biz: a label that is not cn<digits>
    r"\.(?P<biz>[abd-z0-9][a-z0-9-]*|c(?:[a-mo-z0-9-][a-z0-9-]*)?|cn(?:[0-9]*[a-z-][a-z0-9-]*)?)",
    // env: an optional label starting with a letter that is not cn<digits>
    r"(?:\.(?P<env>[abd-z][a-z0-9-]*|c(?:[a-mo-z0-9-][a-z0-9-]*)?|cn(?:[0-9]*[a-z-][a-z0-9-]*)?))?",
    r"\.(?P<idc>cn[0-9]+)",
    r"(?:\.[a-z0-9-]+)*$",
);

/// The built-in rule's default environment.
pub const BUILTIN_DEFAULT_ENV: &str = "prod";

/// Hostnames longer than this (in bytes, without the trailing dot) never match.
pub const MAX_HOSTNAME_LEN: usize = 253;

/// Rules files larger than this are refused (a rules file is a few KiB).
pub const MAX_RULES_FILE_LEN: u64 = 1024 * 1024;

const GROUPS: [&str; 4] = ["env", "idc", "app", "biz"];

static BUILTIN: Lazy<Rules> = Lazy::new(|| {
    let mut rule = Rule::new(
        BUILTIN_RULE_NAME,
        BUILTIN_PATTERN,
        Some(BUILTIN_DEFAULT_ENV),
    )
    .expect("the built-in rule compiles");
    rule.refuse_env_after_idc = true;
    let aliases = EnvType::builtin_aliases().clone();
    Rules {
        rules: Arc::new(vec![rule]),
        aliases: Arc::new(aliases),
        replaces_builtin: false,
        podinfo: Arc::new(PodInfoMapping::default()),
    }
});

/// The kind of a hostname-rules problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RulesErrorKind {
    /// The rules file could not be read.
    Io,
    /// The rules file is not valid TOML or has the wrong shape.
    Syntax,
    /// A rule's pattern is not a valid regular expression.
    InvalidRegex,
    /// A rule's pattern lacks a required named group (`idc`), or its default env is empty.
    InvalidRule,
    /// An alias names an unknown class or is empty.
    InvalidAlias,
}

/// A hostname rules file or rule that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}{message}",
    path.as_ref().map(|p| format!("{}:", p.display())).unwrap_or_default(),
    location.as_ref().map(|l| format!("{}:{}: ", l.line, l.column)).unwrap_or_else(|| if path.is_some() { " ".into() } else { String::new() }),
    rule.as_ref().map(|r| format!("rule {r:?}: ")).unwrap_or_default())]
pub struct RulesError {
    /// What kind of problem.
    pub kind: RulesErrorKind,
    /// The rules file, when there is one.
    pub path: Option<PathBuf>,
    /// The rule's name, when the problem is in one rule.
    pub rule: Option<String>,
    /// Where in the file, when the format tells.
    pub location: Option<Location>,
    /// A sentence saying what is wrong.
    pub message: String,
}

/// One hostname rule: a name, an anchored, case-insensitive regular expression
/// with named groups `idc` (required), `env`, `app`, `biz`, and an optional
/// default environment for hostnames whose `env` group did not match.
#[derive(Clone)]
pub struct Rule {
    name: String,
    pattern: String,
    default_env: Option<String>,
    regex: Regex,
    env_group: Option<usize>,
    idc_group: usize,
    app_group: Option<usize>,
    biz_group: Option<usize>,
    /// The built-in rule's guard against `l-a1.h.cn0.beta` (see module docs).
    refuse_env_after_idc: bool,
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

fn rule_error(kind: RulesErrorKind, rule: Option<&str>, message: String) -> RulesError {
    RulesError {
        kind,
        path: None,
        rule: rule.map(str::to_string),
        location: None,
        message,
    }
}

fn is_env_name(s: &str) -> bool {
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
    fn apply(
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
    fn reason(&self, host: &str, miss: &Miss) -> String {
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
enum Miss {
    Pattern,
    NoIdc,
    NoEnv,
    EnvAfterIdc { idc: String, label: String },
}

impl Miss {
    fn outcome(&self) -> RuleOutcome {
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

/// What one rule made of a hostname (see [`Rules::trace`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The rule read the hostname.
    Matched,
    /// The pattern does not match.
    NoMatch,
    /// The pattern matches, but its `idc` group took no part.
    NoIdc,
    /// The pattern matches, but its `env` group took no part and the rule
    /// has no default environment.
    NoEnv,
    /// The built-in rule refuses an environment name right after the idc
    /// (`l-a1.h.cn0.beta`) on purpose (see the module documentation).
    EnvAfterIdc,
}

/// One rule tried on a hostname.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleAttempt {
    /// The rule's name.
    pub rule: String,
    /// What it made of the hostname.
    pub outcome: RuleOutcome,
    /// A sentence for people: what matched, or why not and what the rule
    /// expects.
    pub reason: String,
}

/// Every rule tried on a hostname, in order, up to the first that matched
/// (see [`Rules::trace`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostnameTrace {
    /// The hostname as matched (lower case, trailing dot removed).
    pub hostname: String,
    /// What the first matching rule read, if one did.
    pub matched: Option<HostnameMatch>,
    /// The rules tried, in order; the last is the match, if any.
    pub attempts: Vec<RuleAttempt>,
    /// Why no rule was tried at all (an empty or over-long hostname).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Lower-cases ASCII letters (allocating only when there are upper-case ones)
/// and removes one trailing dot: the form hostnames are matched in.
pub fn normalize(hostname: &str) -> Cow<'_, str> {
    let trimmed = hostname.strip_suffix('.').unwrap_or(hostname);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Hostname rules plus the alias table mapping environment names to [`EnvType`].
///
/// Cheap to clone (the rules and the table are shared).
#[derive(Clone, Debug)]
pub struct Rules {
    rules: Arc<Vec<Rule>>,
    aliases: Arc<BTreeMap<String, EnvType>>,
    replaces_builtin: bool,
    podinfo: Arc<PodInfoMapping>,
}

/// What a rule read from a hostname.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostnameMatch {
    /// The rule's name.
    pub rule: String,
    /// The hostname as matched (lower case, trailing dot removed).
    pub hostname: String,
    /// The environment name.
    pub env: String,
    /// True when `env` is the rule's default (the hostname had no env segment).
    pub env_defaulted: bool,
    /// The class of `env` through the alias table.
    pub env_type: EnvType,
    /// The data center (always set by a match: a rule matches only when its
    /// `idc` group does).
    pub idc: Option<String>,
    /// The application (name without its instance number).
    pub app: Option<String>,
    /// The business line.
    pub biz: Option<String>,
}

// The shape of a rules file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    replace_builtin: bool,
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    aliases: BTreeMap<String, toml::Spanned<String>>,
    #[serde(default)]
    podinfo: Option<PodInfoMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: toml::Spanned<String>,
    pattern: toml::Spanned<String>,
    #[serde(default)]
    default_env: Option<toml::Spanned<String>>,
}

impl Rules {
    /// The built-in rule and alias table. Compiled once; this is a cheap clone.
    pub fn builtin() -> Rules {
        BUILTIN.clone()
    }

    /// The built-in rules and aliases, amended or replaced by the rules file
    /// at `path` (format in the module documentation), read by the bounded
    /// reader ([`crate::read`]) with a cap of [`MAX_RULES_FILE_LEN`].
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = crate::read::text(path, MAX_RULES_FILE_LEN).map_err(|e| RulesError {
            kind: match e.problem {
                ReadProblem::Text(_) => RulesErrorKind::Syntax,
                _ => RulesErrorKind::Io,
            },
            path: Some(path.to_path_buf()),
            rule: None,
            location: e.location(),
            message: e.problem.to_string(),
        })?;
        Rules::parse(&text, Some(path))
    }

    /// The built-in rules and aliases, amended or replaced by the rules file
    /// `text`; `path` is only used in errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Rules, RulesError> {
        let path: Option<PathBuf> = path.map(Path::to_path_buf);
        let at = |mut e: RulesError, span: Option<Range<usize>>| {
            e.path.clone_from(&path);
            e.location = span.map(|s| Location::at(text, s.start));
            e
        };
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            at(
                rule_error(RulesErrorKind::Syntax, None, e.message().trim().to_string()),
                e.span(),
            )
        })?;

        let builtin = &*BUILTIN;
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rule.len() + 1);
        for spec in &file.rule {
            let name = spec.name.get_ref();
            let rule = Rule::new(
                name,
                spec.pattern.get_ref(),
                spec.default_env.as_ref().map(|d| d.get_ref().as_str()),
            )
            .map_err(|e| {
                let span = match e.kind {
                    _ if name.trim().is_empty() => spec.name.span(),
                    RulesErrorKind::InvalidRule if e.message.starts_with("default_env") => spec
                        .default_env
                        .as_ref()
                        .map_or(spec.pattern.span(), |d| d.span()),
                    _ => spec.pattern.span(),
                };
                at(e, Some(span))
            })?;
            let taken = rules.iter().any(|r| r.name == rule.name)
                || (!file.replace_builtin && builtin.rules.iter().any(|r| r.name == rule.name));
            if taken {
                let hint = if rule.name == BUILTIN_RULE_NAME {
                    " (it is the built-in rule's name; set replace_builtin = true to redefine it)"
                } else {
                    ""
                };
                return Err(at(
                    rule_error(
                        RulesErrorKind::InvalidRule,
                        Some(name),
                        format!("duplicate rule name{hint}"),
                    ),
                    Some(spec.name.span()),
                ));
            }
            rules.push(rule);
        }
        if !file.replace_builtin {
            rules.extend(builtin.rules.iter().cloned());
        }

        let mut aliases = (*builtin.aliases).clone();
        for (name, class) in &file.aliases {
            let alias_error = |message: String| {
                at(
                    rule_error(RulesErrorKind::InvalidAlias, None, message),
                    Some(class.span()),
                )
            };
            let key = name.trim().to_ascii_lowercase();
            if !is_env_name(&key) {
                return Err(alias_error(format!(
                    "alias {name:?} is not an environment name \
                     (letters, digits, '-' and '_', not empty)"
                )));
            }
            let value = class.get_ref().trim().to_ascii_lowercase();
            if !crate::env_type::CLASS_NAMES.contains(&value.as_str()) {
                return Err(alias_error(format!(
                    "alias {name:?} names unknown class {:?} (the classes are prod, beta, dev, test, local)",
                    class.get_ref()
                )));
            }
            if crate::env_type::CLASS_NAMES.contains(&key.as_str()) && key != value {
                return Err(alias_error(format!(
                    "{key:?} is a class name and cannot be re-mapped to {value:?}"
                )));
            }
            aliases.insert(key, EnvType::from_class_name(&value));
        }

        Ok(Rules {
            rules: Arc::new(rules),
            aliases: Arc::new(aliases),
            replaces_builtin: file.replace_builtin,
            podinfo: Arc::new(file.podinfo.unwrap_or_default()),
        })
    }

    /// The first rule matching `hostname`, and what it read (see the module
    /// documentation for normalisation and matching).
    pub fn explain(&self, hostname: &str) -> Option<HostnameMatch> {
        let host = normalize(hostname);
        if host.len() > MAX_HOSTNAME_LEN || host.is_empty() {
            return None;
        }
        self.rules
            .iter()
            .find_map(|rule| rule.apply(&host, &self.aliases).ok())
    }

    /// Every rule tried on `hostname`, in order, and what each made of it:
    /// the match [`Rules::explain`] returns, or for each rule why it did not
    /// read the hostname and what it expects.
    pub fn trace(&self, hostname: &str) -> HostnameTrace {
        let host = normalize(hostname);
        let mut trace = HostnameTrace {
            hostname: host.to_string(),
            matched: None,
            attempts: Vec::new(),
            refused: None,
        };
        if host.is_empty() {
            trace.refused = Some("the hostname is empty".into());
            return trace;
        }
        if host.len() > MAX_HOSTNAME_LEN {
            trace.refused = Some(format!(
                "the hostname is {} bytes long, over the DNS limit of {MAX_HOSTNAME_LEN}",
                host.len()
            ));
            return trace;
        }
        for rule in self.rules.iter() {
            match rule.apply(&host, &self.aliases) {
                Ok(m) => {
                    trace.attempts.push(RuleAttempt {
                        rule: rule.name.clone(),
                        outcome: RuleOutcome::Matched,
                        reason: format!(
                            "matches: env {}, idc {}",
                            m.env,
                            m.idc.as_deref().unwrap_or("-")
                        ),
                    });
                    trace.matched = Some(m);
                    break;
                }
                Err(miss) => trace.attempts.push(RuleAttempt {
                    rule: rule.name.clone(),
                    outcome: miss.outcome(),
                    reason: rule.reason(&host, &miss),
                }),
            }
        }
        trace
    }

    /// The class of an environment name through the alias table
    /// (case-insensitive; unknown names are `Other` in lower case).
    pub fn env_type_of(&self, env: &str) -> EnvType {
        EnvType::of_env_in(&self.aliases, env.trim())
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The alias table: lower-case environment name → class.
    pub fn aliases(&self) -> &BTreeMap<String, EnvType> {
        &self.aliases
    }

    /// True when these rules came from a file with `replace_builtin = true`.
    pub fn replaces_builtin(&self) -> bool {
        self.replaces_builtin
    }

    /// Which downward-API keys give which field: the rules file's
    /// `[podinfo]` table, or [`PodInfoMapping::default`].
    pub fn podinfo(&self) -> &PodInfoMapping {
        &self.podinfo
    }

    /// These rules with another downward-API mapping.
    pub fn with_podinfo(mut self, mapping: PodInfoMapping) -> Rules {
        self.podinfo = Arc::new(mapping);
        self
    }
}

impl Default for Rules {
    /// The built-in rules ([`Rules::builtin`]).
    fn default() -> Rules {
        Rules::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples() {
        let r = Rules::builtin();
        let m = r.explain("l-flightqma9.f.beta.cn0.example.com").unwrap();
        assert_eq!(
            (
                m.app.as_deref(),
                m.biz.as_deref(),
                m.env.as_str(),
                m.idc.as_deref()
            ),
            (Some("flightqma"), Some("f"), "beta", Some("cn0"))
        );
        let m = r.explain("l-qmq1.h.cn5").unwrap();
        assert_eq!((m.env.as_str(), m.env_defaulted), ("prod", true));
        assert_eq!(m.env_type, EnvType::Prod);
    }

    #[test]
    fn location_counts_chars() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(Location::at(t, 0), Location { line: 1, column: 1 });
        let off = t.find('=').unwrap();
        assert_eq!(Location::at(t, off), Location { line: 1, column: 3 });
        let off = t.rfind('=').unwrap();
        assert_eq!(Location::at(t, off), Location { line: 2, column: 4 });
    }
}
