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
use std::path::PathBuf;
use std::sync::Arc;

use once_cell::sync::Lazy;
use serde::Serialize;

use crate::env_type::EnvType;
use crate::location::Location;
use crate::podinfo::PodInfoMapping;

mod file;
mod rule;

pub use rule::{Rule, BUILTIN_CONVENTION};

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

impl Rules {
    /// The built-in rule and alias table. Compiled once; this is a cheap clone.
    pub fn builtin() -> Rules {
        BUILTIN.clone()
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
