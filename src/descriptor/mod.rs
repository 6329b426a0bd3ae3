//! The environment descriptor file (README, "The descriptor file"; ARCHITECTURE.md, "Where am I").
//!
//! The release system writes a small file onto every host at deploy time;
//! this module reads it into a [`Descriptor`]. TOML is the primary format,
//! JSON with the same schema is accepted; [`read`] chooses by the file
//! extension (`.toml`, `.json`, ASCII case-insensitive).
//!
//! ```toml
//! schema = 1                 # required
//! app = "flight_order"       # warned about when missing (see below)
//! env = "beta"               # warned about when missing
//! env_type = "beta"          # optional: prod, beta, dev, test, local, else Other
//! sub_env = "noahauto-2"     # optional
//! idc = "cn0"                # warned about when missing
//! platform = "container"     # optional: container, kvm, physical, unknown
//! ip = "10.1.2.3"            # optional
//! token = "…"                # optional secret, never printed
//!
//! [release]                  # optional: id, version, batch, deployed_at
//! [k8s]                      # optional: cluster, namespace, pod, node, workload
//! [labels]                   # optional: string → string
//! ```
//!
//! # Rules and the choices behind them
//!
//! * **Only `schema` is required.** It must be an integer; a version newer
//!   than [`SCHEMA_VERSION`] is [`ProblemKind::UnsupportedSchema`] ("schema 2
//!   is newer than this envid supports (1); upgrade envid") and stops
//!   validation there, since a newer schema may mean other things by the
//!   same keys. Zero or negative is [`ProblemKind::InvalidValue`].
//! * **`app`, `env` and `idc` are expected.** The release system always
//!   writes them, so their absence is a [`ProblemKind::MissingField`]
//!   *warning* (in [`Parsed::warnings`]), an error in strict mode. They are
//!   not errors by default because other sources (hostname rules, `ENVID_*`
//!   variables) may still supply them.
//! * **Unknown keys** (top level, inside `[release]` and `[k8s]`) are
//!   accepted for forward compatibility and reported as
//!   [`ProblemKind::UnknownKey`] warnings; in strict mode they are errors.
//!   `[labels]` is free-form, so it has no unknown keys.
//! * **Strings** must be non-empty after trimming, at most
//!   [`MAX_STRING_LEN`] bytes, and free of control characters (NUL, tabs,
//!   newlines, DEL, C1) after trimming. Surrounding whitespace (including a
//!   trailing newline, the classic `echo $TOKEN` mistake) is trimmed from
//!   the stored value.
//!   Label keys follow the same rules but are stored as written.
//! * **Types**: a value of the wrong type is [`ProblemKind::WrongType`]
//!   naming the expected type; a value of the right type that is not
//!   acceptable (bad IP, bad time, negative batch, unknown platform, empty
//!   string) is [`ProblemKind::InvalidValue`]. `release.batch` is a
//!   non-negative integer that fits `u32`. `release.deployed_at` is an RFC
//!   3339 date-time string (validated with the `time` crate, kept as
//!   written); in TOML a native offset date-time
//!   (`deployed_at = 2026-11-22T10:00:00Z`) is accepted too and kept in its
//!   RFC 3339 spelling, while a local date-time without offset is refused.
//! * **Empty tables** (`[k8s]` with no keys) give `None`, as if absent.
//! * **JSON `null`** means "absent" for every optional field (serializers
//!   write `Option::None` that way); `"schema": null` is a wrong type, and a
//!   `null` label value is a wrong type (labels are string → string).
//! * **Duplicate keys** are a syntax error in TOML (the TOML parser refuses
//!   them). JSON allows them in theory, and `serde_json::Value` silently
//!   keeps the last one; here a duplicate JSON key is a
//!   [`ProblemKind::Syntax`] error at the second occurrence (with the
//!   field path), consistent with TOML: which value the release system
//!   meant is unknowable.
//! * **All problems are collected** and returned in file order (problems
//!   without a location, like a missing field, come last), so
//!   `envid check` can list every one. A syntax error, invalid UTF-8, a size
//!   or I/O problem, and an unsupported schema stop early with that one
//!   problem. On failure [`DescriptorError::problems`] holds only the
//!   errors and [`DescriptorError::warnings`] the warnings found beside
//!   them, so a typo'd key is shown even when the file fails.
//! * **Did you mean**: when `app`, `env` or `idc` is missing and an unknown
//!   key is one edit away from it (`evn`), the missing-field problem says
//!   "did you mean `env`?" ([`did_you_mean`]).
//! * **Locations**: 1-based line and column (in characters) of the
//!   offending value, of the key for unknown keys and duplicates, and of the
//!   first bad byte for invalid UTF-8. Missing fields have no location. A
//!   UTF-8 byte-order mark is stripped before parsing and does not count as
//!   a column.
//!
//! # Reading safely
//!
//! [`read`] reads through [`crate::read::bytes`] with a cap of [`MAX_SIZE`]:
//! anything but a regular file (directory, FIFO, device, socket) is
//! [`ProblemKind::NotAFile`] without being opened, the open is non-blocking
//! (so a FIFO swapped in after the check cannot block it) and checked again
//! on the open descriptor, and a file larger than [`MAX_SIZE`] is
//! [`ProblemKind::TooLarge`], however fast it grows. [`parse`] applies the
//! text checks of [`crate::read::decode`].
//!
//! # Parsing
//!
//! TOML is parsed with `toml::de::DeTable::parse`, which keeps the byte span
//! of every key and value. JSON is parsed by `jsonc-parser` with every
//! extension off (strict RFC 8259, checked against `serde_json` by a test),
//! because `serde_json` gives positions only for syntax errors and silently
//! keeps the last of two duplicate keys; the AST keeps the span of every key
//! and value, so duplicates are refused with their location. JSON nested
//! deeper than [`MAX_DEPTH`] is refused before parsing (the parser recurses);
//! the TOML parser has its own limit (80).
//! Both formats feed the same validator, so they share every rule above.
//!
//! TOML parsing costs about 9 µs for the ~500-byte full example in a release
//! build, of which `DeTable::parse` is about 6–7 µs; JSON about 3 µs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::env_type::EnvType;
use crate::location::Location;
use crate::model::{K8s, Labels, Platform, Release, Secret};
use crate::read::{ReadProblem, TextError};

mod syntax;
mod validate;

pub use validate::did_you_mean;
pub(crate) use validate::text_problem;

/// Descriptors larger than this are refused unread.
pub const MAX_SIZE: u64 = 64 * 1024;

/// The highest `schema` major version this library reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest accepted string value (and label key), in bytes.
pub const MAX_STRING_LEN: usize = 4096;

/// The deepest accepted nesting of JSON arrays and objects (the TOML parser
/// applies a similar limit of its own).
pub const MAX_DEPTH: usize = 64;

/// The file format, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

impl Format {
    /// The format named by the path's extension (`.toml`, `.json`, ASCII
    /// case-insensitive), or `None` for any other extension or none.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("toml") {
            Some(Format::Toml)
        } else if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// The format's lower-case name (`toml`, `json`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Json => "json",
        }
    }
}

/// A parsed, validated descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Where it was read from.
    pub path: PathBuf,
    /// The schema version.
    pub schema: u32,
    /// `app`
    pub app: Option<String>,
    /// `env`
    pub env: Option<String>,
    /// `env_type`, when the file gives it explicitly.
    pub env_type: Option<EnvType>,
    /// `sub_env`
    pub sub_env: Option<String>,
    /// `idc`
    pub idc: Option<String>,
    /// `platform`
    pub platform: Option<Platform>,
    /// `ip`
    pub ip: Option<IpAddr>,
    /// `token`
    pub token: Option<Secret>,
    /// `[release]`
    pub release: Option<Release>,
    /// `[k8s]`
    pub k8s: Option<K8s>,
    /// `[labels]`
    pub labels: Labels,
}

/// A descriptor and the warnings (unknown keys, …) found while reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// Problems that did not stop parsing (unknown keys outside strict mode).
    pub warnings: Vec<Problem>,
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
    pub(crate) fn of_read(problem: &ReadProblem) -> ProblemKind {
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
    pub location: Option<Location>,
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

/// A problem as `file:line:col: field: message` follows the path: with a
/// location, right after its colon; without, after a space.
pub(crate) fn located(p: &Problem) -> String {
    match &p.location {
        // "file:line:col: field: message", the form editors jump to.
        Some(_) => format!("{p}"),
        None => format!(" {p}"),
    }
}

impl std::error::Error for DescriptorError {}

/// Reads and parses the descriptor at `path` (bounded read, format by extension).
///
/// Errors: [`ProblemKind::UnknownFormat`] for an extension other than
/// `.toml`/`.json` (checked before any I/O), [`ProblemKind::NotFound`],
/// [`ProblemKind::NotAFile`], [`ProblemKind::TooLarge`], [`ProblemKind::Io`],
/// then everything [`parse`] reports.
pub fn read(path: &Path, strict: bool) -> Result<Parsed, DescriptorError> {
    let fail = |kind, message: String| DescriptorError {
        warnings: Vec::new(),
        path: path.to_path_buf(),
        problems: vec![Problem {
            kind,
            field: None,
            location: None,
            message,
        }],
    };
    let Some(format) = Format::from_path(path) else {
        return Err(fail(
            ProblemKind::UnknownFormat,
            "unknown descriptor format: the file name must end in .toml or .json".into(),
        ));
    };
    let bytes = crate::read::bytes(path, MAX_SIZE).map_err(|e| {
        let message = match e.problem {
            ReadProblem::TooLarge { .. } => too_large(),
            ref problem => problem.to_string(),
        };
        fail(ProblemKind::of_read(&e.problem), message)
    })?;
    parse(&bytes, path, format, strict)
}

/// Parses descriptor bytes; `path` is only used in messages.
pub fn parse(
    bytes: &[u8],
    path: &Path,
    format: Format,
    strict: bool,
) -> Result<Parsed, DescriptorError> {
    let fail = |kind, field: Option<String>, location, message: String| DescriptorError {
        warnings: Vec::new(),
        path: path.to_path_buf(),
        problems: vec![Problem {
            kind,
            field,
            location,
            message,
        }],
    };
    if bytes.len() as u64 > MAX_SIZE {
        return Err(fail(ProblemKind::TooLarge, None, None, too_large()));
    }
    let text = crate::read::decode(bytes).map_err(|e| {
        let message = match e {
            // An editor's "Unicode" save: say so rather than blame a byte.
            TextError::Utf16 { .. } => format!("{e}; the descriptor must be UTF-8"),
            TextError::InvalidUtf8 { .. } => e.to_string(),
        };
        fail(ProblemKind::InvalidUtf8, None, Some(e.location()), message)
    })?;
    let root = match syntax::parse(text, format) {
        Ok(root) => root,
        Err(e) => {
            return Err(fail(
                ProblemKind::Syntax,
                e.field,
                Some(Location::at(text, e.offset)),
                e.message,
            ))
        }
    };
    validate::validate(root, text, path, format, strict)
}

fn too_large() -> String {
    format!("larger than {MAX_SIZE} bytes; a descriptor is a few hundred bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, format: Format) -> Result<Parsed, DescriptorError> {
        parse(text.as_bytes(), Path::new("t"), format, false)
    }

    #[test]
    fn minimal_toml_and_json() {
        let d = p("schema = 1\napp='a'\nenv='b'\nidc='c'\n", Format::Toml).unwrap();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let j = p(
            r#"{"schema":1,"app":"a","env":"b","idc":"c"}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(d, j);
    }

    #[test]
    fn toml_native_datetime_is_accepted() {
        let d = p(
            "schema = 1\napp='a'\nenv='b'\nidc='c'\n[release]\ndeployed_at = 2026-11-22T10:00:00Z\n",
            Format::Toml,
        )
        .unwrap();
        assert_eq!(
            d.descriptor.release.unwrap().deployed_at.as_deref(),
            Some("2026-11-22T10:00:00Z")
        );
        let e = p(
            "schema = 1\n[release]\ndeployed_at = 2026-11-22T10:00:00\n",
            Format::Toml,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ProblemKind::InvalidValue);
    }

    #[test]
    fn minus_zero_batch_is_zero() {
        let t = p("schema = 1\n[release]\nbatch = -0\n", Format::Toml).unwrap();
        let j = p(r#"{"schema": 1, "release": {"batch": -0}}"#, Format::Json).unwrap();
        assert_eq!(t.descriptor.release.unwrap().batch, Some(0));
        assert_eq!(j.descriptor.release.unwrap().batch, Some(0));
    }

    #[test]
    fn huge_integers_are_classified_by_sign() {
        let e = p(
            r#"{"schema": 1, "release": {"batch": -99999999999999999999}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(e.problems[0].message.contains("negative"), "{e}");
        let e = p(
            r#"{"schema": 1, "release": {"batch": 99999999999999999999}}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(e.problems[0].message.contains("too large"), "{e}");
    }

    #[test]
    fn location_counts_characters() {
        assert_eq!(Location::at("ab\ncé d", 8), Location { line: 2, column: 5 });
        assert_eq!(Location::at("", 0), Location { line: 1, column: 1 });
    }
}
