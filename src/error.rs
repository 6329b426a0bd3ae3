//! The error of loading an environment, [`LoadError`], which gathers the
//! errors of the sources (each module owns its own:
//! [`crate::descriptor::DescriptorError`], [`crate::rules::RulesError`],
//! [`PodInfoError`]) and the report of a load that could not
//! identify the host ([`Unidentified`]).

use std::fmt;
use std::path::PathBuf;

use crate::descriptor::located;
use crate::model::Field;
use crate::podinfo::PodInfoError;
use crate::source::Source;

/// Everything that can go wrong while loading an [`crate::Environment`]
/// (it was `envid::Error`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The descriptor file could not be read or is invalid.
    #[error(transparent)]
    Descriptor(#[from] crate::descriptor::DescriptorError),
    /// The hostname rules file could not be read or is invalid.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// The Kubernetes downward-API directory could not be read, or a value
    /// it gives is invalid (see [`crate::podinfo`]).
    #[error(transparent)]
    PodInfo(#[from] PodInfoError),
    /// An `ENVID_*` variable (or a builder value) holds a value of the wrong form.
    #[error("invalid value {value:?} for {field} from {origin}: {reason}")]
    InvalidValue {
        /// The field the value was meant for.
        field: Field,
        /// Where it came from (the variable, the builder).
        origin: Source,
        /// The offending text.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// `env` or `idc` is still unknown after every source was tried.
    #[error(transparent)]
    Unidentified(#[from] Box<Unidentified>),
}

/// What one source said when it was asked for a field and gave nothing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    /// The source asked (printed as a person reads it:
    /// `descriptor /etc/envid/environment.toml`).
    pub source: Source,
    /// Why it gave nothing (`file not found`, `no rule matched "web-3"`, …).
    pub outcome: String,
}

/// A fact found while loading, kept so a failed load can still show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fact {
    /// The field.
    pub field: Field,
    /// Its value, as text.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// `env` or `idc` could not be determined: every source tried, why each gave
/// nothing, and the facts that were found anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unidentified {
    /// The required fields still unknown.
    pub missing: Vec<Field>,
    /// Every source tried, in precedence order.
    pub attempts: Vec<Attempt>,
    /// What was found.
    pub found: Vec<Fact>,
    /// The descriptor's warnings (an unknown key may be the missing field,
    /// misspelt), with the descriptor's path.
    pub warnings: Vec<(PathBuf, crate::descriptor::Problem)>,
}

impl fmt::Display for Unidentified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<&str> = self.missing.iter().map(|m| m.as_str()).collect();
        write!(
            f,
            "environment not identified: {} unknown after every source",
            missing.join(" and ")
        )?;
        for a in &self.attempts {
            write!(f, "\n  tried {}: {}", a.source, a.outcome)?;
        }
        for (path, w) in &self.warnings {
            write!(f, "\n  warning: {}:{}", path.display(), located(w))?;
        }
        Ok(())
    }
}

impl std::error::Error for Unidentified {}

// The old paths of items that moved out of this module, kept for one
// release so that code using them gets a warning naming the new path
// rather than an error.

/// Renamed [`LoadError`]: it is the error of loading an environment only.
#[deprecated(note = "renamed: use envid::LoadError (envid::error::LoadError)")]
pub type Error = LoadError;

/// Moved to [`crate::descriptor::DescriptorError`].
#[deprecated(note = "moved: use envid::descriptor::DescriptorError")]
pub type DescriptorError = crate::descriptor::DescriptorError;

/// Moved to [`crate::descriptor::Problem`].
#[deprecated(note = "moved: use envid::descriptor::Problem")]
pub type Problem = crate::descriptor::Problem;

/// Moved to [`crate::descriptor::ProblemKind`].
#[deprecated(note = "moved: use envid::descriptor::ProblemKind")]
pub type ProblemKind = crate::descriptor::ProblemKind;

/// Moved to [`crate::rules::RulesError`].
#[deprecated(note = "moved: use envid::rules::RulesError")]
pub type RulesError = crate::rules::RulesError;

/// Moved to [`crate::rules::RulesErrorKind`].
#[deprecated(note = "moved: use envid::rules::RulesErrorKind")]
pub type RulesErrorKind = crate::rules::RulesErrorKind;

/// Moved to [`crate::location::Location`].
#[deprecated(note = "moved: use envid::location::Location")]
pub type Location = crate::location::Location;

/// Moved to [`crate::location::LineIndex`].
#[deprecated(note = "moved: use envid::location::LineIndex")]
pub type LineIndex<'a> = crate::location::LineIndex<'a>;
