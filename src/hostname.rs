//! Hostname rules: the KVM fallback (DESIGN.md, "Hostname rules").
//! STUB: filled in by the hostname work; the signatures are the contract.

use std::path::Path;

use serde::Serialize;

use crate::error::RulesError;
use crate::model::EnvType;

/// Hostname rules plus the alias table mapping environment names to [`EnvType`].
#[derive(Clone, Debug)]
pub struct Rules {}

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
    /// The data center.
    pub idc: Option<String>,
    /// The application (name without its instance number).
    pub app: Option<String>,
    /// The business line.
    pub biz: Option<String>,
}

impl Rules {
    /// The built-in rule and alias table.
    pub fn builtin() -> Rules {
        Rules {}
    }

    /// The built-in rules and aliases, amended or replaced by a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let _ = path;
        unimplemented!()
    }

    /// The first rule matching `hostname`, and what it read.
    pub fn explain(&self, hostname: &str) -> Option<HostnameMatch> {
        let _ = hostname;
        None
    }

    /// The class of an environment name through the alias table.
    pub fn env_type_of(&self, env: &str) -> EnvType {
        EnvType::from_class_name(env)
    }
}
