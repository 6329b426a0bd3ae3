//! Errors of loading an environment, with the file, line and column where the
//! input format gives them.

use std::fmt;
use std::path::PathBuf;

use crate::model::Field;
use crate::source::Source;

/// Everything that can go wrong while loading an [`crate::Environment`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The descriptor file could not be read or is invalid.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The hostname rules file could not be read or is invalid.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The Kubernetes downward-API directory could not be read, or a value
    /// it gives is invalid (see [`crate::podinfo`]).
    #[error(transparent)]
    PodInfo(#[from] crate::podinfo::PodInfoError),
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

/// The kind of a descriptor problem; tests and callers match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The file does not exist (only an error where the path was required).
    NotFound,
    /// The file exists but could not be read (permission, I/O error).
    Io,
    /// The path is not a regular file (directory, FIFO, device).
    NotAFile,
    /// Larger than the 64 KiB cap.
    TooLarge,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// The extension names no supported format (`.toml`, `.json`).
    UnknownFormat,
    /// TOML/JSON syntax error.
    Syntax,
    /// `schema` names a version this library does not support.
    UnsupportedSchema,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type (string expected, table expected, …).
    WrongType,
    /// A field has the right type but a bad value (bad IP, bad time, empty string, …).
    InvalidValue,
    /// A key the schema does not know (a warning unless strict).
    UnknownKey,
}

impl ProblemKind {
    /// The kind of a problem of the bounded reader ([`crate::read`]).
    pub(crate) fn of_read(problem: &crate::read::ReadProblem) -> ProblemKind {
        use crate::read::ReadProblem;
        match problem {
            ReadProblem::NotFound => ProblemKind::NotFound,
            ReadProblem::NotAFile(_) => ProblemKind::NotAFile,
            ReadProblem::TooLarge { .. } => ProblemKind::TooLarge,
            ReadProblem::Io { .. } => ProblemKind::Io,
            ReadProblem::Text(_) => ProblemKind::InvalidUtf8,
        }
    }
}

/// One problem found in a descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The dotted field path (`release.deployed_at`), when the problem is about a field.
    pub field: Option<String>,
    /// Where in the file, when the format tells.
    pub location: Option<crate::location::Location>,
    /// A sentence saying what is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{}:{}: ", loc.line, loc.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A descriptor that could not be used, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorError {
    /// The descriptor's path.
    pub path: PathBuf,
    /// Every error, in file order; never empty.
    pub problems: Vec<Problem>,
    /// The warnings found beside the errors (unknown keys, …), so that a
    /// typo is shown even when the file fails for another reason.
    pub warnings: Vec<Problem>,
}

impl DescriptorError {
    /// The first problem's kind (the one a caller usually matches on).
    pub fn kind(&self) -> ProblemKind {
        self.problems[0].kind
    }
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.problems.as_slice() {
            [one] => write!(f, "invalid descriptor {path}:{}", located(one))?,
            many => {
                write!(f, "invalid descriptor {path}: {} problems", many.len())?;
                for p in many {
                    write!(f, "\n  {path}:{}", located(p))?;
                }
            }
        }
        for w in &self.warnings {
            write!(f, "\n  warning: {path}:{}", located(w))?;
        }
        Ok(())
    }
}

fn located(p: &Problem) -> String {
    match &p.location {
        // "file:line:col: field: message", the form editors jump to.
        Some(_) => format!("{p}"),
        None => format!(" {p}"),
    }
}

impl std::error::Error for DescriptorError {}

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
    pub location: Option<crate::location::Location>,
    /// A sentence saying what is wrong.
    pub message: String,
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
    pub warnings: Vec<(PathBuf, Problem)>,
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

/// Moved to [`crate::location::Location`].
#[deprecated(note = "moved: use envid::location::Location")]
pub type Location = crate::location::Location;

/// Moved to [`crate::location::LineIndex`].
#[deprecated(note = "moved: use envid::location::LineIndex")]
pub type LineIndex<'a> = crate::location::LineIndex<'a>;
