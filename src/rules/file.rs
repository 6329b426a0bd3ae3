//! The rules file: its shape, and [`Rules::load`] and [`Rules::parse`]
//! (the format is in the module documentation of [`crate::rules`]).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::rule::{is_env_name, rule_error, Rule};
use super::{Rules, RulesError, RulesErrorKind, BUILTIN, BUILTIN_RULE_NAME, MAX_RULES_FILE_LEN};
use crate::env_type::EnvType;
use crate::location::Location;
use crate::podinfo::PodInfoMapping;
use crate::read::ReadProblem;

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
}
