//! [`EnvType`], the class of an environment name, and the alias table that
//! derives it from the name.
//!
//! Environment names are mapped to their class case-insensitively:
//!
//! | class | built-in names |
//! | --- | --- |
//! | [`EnvType::Prod`] | `prod`, `pro`, `production`, `prd`, `online`, `tools` |
//! | [`EnvType::Beta`] | `beta`, `betanoah`, `staging`, `stage`, `pre`, `preprod`, `uat` |
//! | [`EnvType::Dev`] | `dev`, `development` |
//! | [`EnvType::Test`] | `test`, `testing`, `qa`, `fat`, `sit`, `fws`, `lpt` |
//! | [`EnvType::Local`] | `local` |
//!
//! Apollo's env names are all there, case-insensitively: `PRO` (prod),
//! `UAT` (beta), `FAT`, `FWS` and `LPT` (test), `DEV`, `LOCAL`, and `TOOLS`,
//! which Apollo places in the production area, as prod.
//!
//! Any other name is `EnvType::Other(name in lower case)`. A rules file can add
//! names or re-map the built-in ones, except the five class names themselves.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use once_cell::sync::Lazy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The class of an environment name, derived from the name through the alias
/// table of [`crate::rules::Rules`] unless given explicitly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnvType {
    /// Production.
    Prod,
    /// Beta / staging.
    Beta,
    /// Development.
    Dev,
    /// Test / QA.
    Test,
    /// A developer's own machine.
    Local,
    /// A name the alias table does not know, kept as written (lower case).
    Other(String),
}

impl EnvType {
    /// The canonical lower-case name (`prod`, `beta`, …, or the `Other` text).
    pub fn as_str(&self) -> &str {
        match self {
            EnvType::Prod => "prod",
            EnvType::Beta => "beta",
            EnvType::Dev => "dev",
            EnvType::Test => "test",
            EnvType::Local => "local",
            EnvType::Other(s) => s,
        }
    }

    /// Parses one of the five canonical class names (case-insensitive);
    /// anything else becomes `Other` with the lower-cased text.
    pub fn from_class_name(s: &str) -> EnvType {
        match s.to_ascii_lowercase().as_str() {
            "prod" => EnvType::Prod,
            "beta" => EnvType::Beta,
            "dev" => EnvType::Dev,
            "test" => EnvType::Test,
            "local" => EnvType::Local,
            other => EnvType::Other(other.to_string()),
        }
    }
}

impl fmt::Display for EnvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EnvType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EnvType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(EnvType::from_class_name(&s))
    }
}

/// The built-in alias table: each environment name and its class.
pub const BUILTIN_ALIASES: &[(&str, EnvType)] = &[
    ("prod", EnvType::Prod),
    ("pro", EnvType::Prod),
    ("production", EnvType::Prod),
    ("prd", EnvType::Prod),
    ("online", EnvType::Prod),
    ("tools", EnvType::Prod),
    ("beta", EnvType::Beta),
    ("betanoah", EnvType::Beta),
    ("staging", EnvType::Beta),
    ("stage", EnvType::Beta),
    ("pre", EnvType::Beta),
    ("preprod", EnvType::Beta),
    ("uat", EnvType::Beta),
    ("dev", EnvType::Dev),
    ("development", EnvType::Dev),
    ("test", EnvType::Test),
    ("testing", EnvType::Test),
    ("qa", EnvType::Test),
    ("fat", EnvType::Test),
    ("sit", EnvType::Test),
    ("fws", EnvType::Test),
    ("lpt", EnvType::Test),
    ("local", EnvType::Local),
];

/// The five class names; a rules file may not re-map them.
pub const CLASS_NAMES: [&str; 5] = ["prod", "beta", "dev", "test", "local"];

static BUILTIN_TABLE: Lazy<BTreeMap<String, EnvType>> = Lazy::new(|| {
    BUILTIN_ALIASES
        .iter()
        .map(|(name, class)| (name.to_string(), class.clone()))
        .collect()
});

impl EnvType {
    /// The class of an environment name through the built-in alias table
    /// (case-insensitive; surrounding blanks ignored; an unknown name is
    /// `Other` in lower case). A rules file's aliases apply through
    /// [`crate::rules::Rules::env_type_of`] instead.
    pub fn of_env(env: &str) -> EnvType {
        EnvType::of_env_in(&BUILTIN_TABLE, env.trim())
    }

    /// The built-in alias table as a map from lower-case name to class.
    pub fn builtin_aliases() -> &'static BTreeMap<String, EnvType> {
        &BUILTIN_TABLE
    }

    /// The class of `env` through `aliases` (names in lower case).
    pub(crate) fn of_env_in(aliases: &BTreeMap<String, EnvType>, env: &str) -> EnvType {
        let env: Cow<'_, str> = if env.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(env.to_ascii_lowercase())
        } else {
            Cow::Borrowed(env)
        };
        match aliases.get(env.as_ref()) {
            Some(class) => class.clone(),
            None => EnvType::Other(env.to_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_aliases_are_case_insensitive_and_unknown_names_stay() {
        assert_eq!(EnvType::of_env("PROD"), EnvType::Prod);
        assert_eq!(EnvType::of_env(" uat "), EnvType::Beta);
        assert_eq!(EnvType::of_env("Perf"), EnvType::Other("perf".into()));
        for name in CLASS_NAMES {
            assert_eq!(EnvType::of_env(name).as_str(), name);
        }
    }
}
