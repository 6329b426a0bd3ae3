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

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::env_type::EnvType;
use crate::location::{LineIndex, Location};
use crate::model::{K8s, Labels, Platform, Release, Secret};
use crate::read::{ReadProblem, TextError};

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
    let root = match format {
        Format::Toml => toml_tree(text),
        Format::Json => json::parse(text),
    };
    let root = match root {
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
    let mut v = Validator {
        format,
        strict,
        errors: Vec::new(),
        warnings: Vec::new(),
        unknown_keys: Vec::new(),
    };
    let descriptor = v.descriptor(root, path);
    v.finish(text, path, descriptor)
}

fn too_large() -> String {
    format!("larger than {MAX_SIZE} bytes; a descriptor is a few hundred bytes")
}

// ---------------------------------------------------------------------------
// The format-neutral tree both parsers produce.

/// A value with the byte span of its text.
#[derive(Debug)]
struct Node<'i> {
    val: Val<'i>,
    span: Range<usize>,
}

#[derive(Debug)]
enum Val<'i> {
    Str(Cow<'i, str>),
    /// An integer; `None` when it does not fit `i64` (`negative` tells which way).
    Int {
        value: Option<i64>,
        negative: bool,
    },
    Float,
    Bool,
    /// A TOML date/time (JSON has none).
    Datetime(toml::value::Datetime),
    /// An array; its contents are never needed, only checked for syntax.
    Array,
    Table(Vec<Entry<'i>>),
    /// JSON `null`.
    Null,
}

#[derive(Debug)]
struct Entry<'i> {
    key: Cow<'i, str>,
    key_span: Range<usize>,
    node: Node<'i>,
}

/// A syntax error: where, what, and for JSON duplicates the key path.
#[derive(Debug)]
struct SyntaxError {
    offset: usize,
    message: String,
    field: Option<String>,
}

fn toml_tree(text: &str) -> Result<Node<'_>, SyntaxError> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim_end().to_string();
        // The TOML parser's message does not say which key; its span does.
        if message == "duplicate key" {
            if let Some(key) = text.get(span.clone()) {
                message = format!("duplicate key `{key}`");
            }
        }
        SyntaxError {
            offset: span.start,
            message,
            field: None,
        }
    })?;
    let span = doc.span();
    Ok(Node {
        val: toml_table(doc.into_inner()),
        span,
    })
}

fn toml_table(table: toml::de::DeTable<'_>) -> Val<'_> {
    Val::Table(
        table
            .into_iter()
            .map(|(key, value)| {
                let key_span = key.span();
                let span = value.span();
                Entry {
                    key: key.into_inner(),
                    key_span,
                    node: Node {
                        val: toml_value(value.into_inner()),
                        span,
                    },
                }
            })
            .collect(),
    )
}

fn toml_value(value: toml::de::DeValue<'_>) -> Val<'_> {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => Val::Str(s),
        DeValue::Integer(i) => {
            let value = i64::from_str_radix(i.as_str(), i.radix()).ok();
            Val::Int {
                value,
                negative: value.map_or(i.as_str().starts_with('-'), |v| v < 0),
            }
        }
        DeValue::Float(_) => Val::Float,
        DeValue::Boolean(_) => Val::Bool,
        DeValue::Datetime(d) => Val::Datetime(d),
        DeValue::Array(_) => Val::Array,
        DeValue::Table(t) => toml_table(t),
    }
}

// ---------------------------------------------------------------------------
// Validation: the tree to a Descriptor, collecting every problem.

/// What is wrong with a string's content, if anything. Surrounding
/// whitespace (including a trailing newline) is not checked: it is trimmed
/// away. The message never quotes the value (it may be the token). Shared
/// with the downward-API reader (`crate::podinfo`), whose values obey the
/// same rules.
pub(crate) fn text_problem(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        Some("must not be empty".to_string())
    } else if s.len() > MAX_STRING_LEN {
        Some(format!(
            "too long ({} bytes; at most {MAX_STRING_LEN})",
            s.len()
        ))
    } else {
        s.chars().find(|c| c.is_control()).map(|c| {
            format!(
                "contains a control character (U+{:04X}); not allowed",
                c as u32
            )
        })
    }
}

/// "did you mean `env`? (unknown key `evn`)" when one of `unknown_keys` is
/// one edit (insertion, deletion, substitution or swap) away from `field`.
pub fn did_you_mean<S: AsRef<str>>(field: &str, unknown_keys: &[S]) -> Option<String> {
    unknown_keys
        .iter()
        .map(AsRef::as_ref)
        .find(|k| strsim::damerau_levenshtein(k, field) == 1)
        .map(|k| format!("did you mean `{field}`? the file has the unknown key `{k}`"))
}

/// A problem and the byte offset it is about, located at the end.
struct Pending {
    offset: Option<usize>,
    problem: Problem,
}

struct Validator {
    format: Format,
    strict: bool,
    errors: Vec<Pending>,
    warnings: Vec<Pending>,
    unknown_keys: Vec<String>,
}

impl Validator {
    fn push(
        &mut self,
        warning: bool,
        kind: ProblemKind,
        field: Option<String>,
        offset: Option<usize>,
        message: String,
    ) {
        let p = Pending {
            offset,
            problem: Problem {
                kind,
                field,
                location: None,
                message,
            },
        };
        if warning {
            self.warnings.push(p);
        } else {
            self.errors.push(p);
        }
    }

    fn error(&mut self, kind: ProblemKind, field: &str, offset: usize, message: String) {
        self.push(false, kind, Some(field.into()), Some(offset), message);
    }

    fn type_name(&self, val: &Val<'_>) -> &'static str {
        match (val, self.format) {
            (Val::Str(_), _) => "a string",
            (Val::Int { .. }, _) => "an integer",
            (Val::Float, Format::Toml) => "a float",
            (Val::Float, Format::Json) => "a non-integer number",
            (Val::Bool, _) => "a boolean",
            (Val::Datetime(_), _) => "a date-time",
            (Val::Array, _) => "an array",
            (Val::Table(_), Format::Toml) => "a table",
            (Val::Table(_), Format::Json) => "an object",
            (Val::Null, _) => "null",
        }
    }

    fn table_name(&self) -> &'static str {
        match self.format {
            Format::Toml => "a table",
            Format::Json => "an object",
        }
    }

    fn wrong_type(&mut self, field: &str, expected: &str, node: &Node<'_>) {
        let found = self.type_name(&node.val);
        self.error(
            ProblemKind::WrongType,
            field,
            node.span.start,
            format!("expected {expected}, found {found}"),
        );
    }

    fn unknown_key(&mut self, field: String, offset: usize) {
        self.unknown_keys.push(field.clone());
        let message = if self.strict {
            format!("unknown key `{field}` (refused in strict mode)")
        } else {
            format!("unknown key `{field}` (ignored)")
        };
        self.push(
            !self.strict,
            ProblemKind::UnknownKey,
            Some(field),
            Some(offset),
            message,
        );
    }

    /// Checks a string's content; the message never quotes the value (it
    /// may be the token).
    fn check_text(&mut self, field: &str, offset: usize, s: &str) -> bool {
        match text_problem(s) {
            Some(message) => {
                self.error(ProblemKind::InvalidValue, field, offset, message);
                false
            }
            None => true,
        }
    }

    /// A string field; `None` when absent (JSON null) or invalid (reported).
    fn string(&mut self, field: &str, node: Node<'_>) -> Option<String> {
        match node.val {
            Val::Str(s) => {
                if !self.check_text(field, node.span.start, &s) {
                    return None;
                }
                let trimmed = s.trim();
                Some(if trimmed.len() == s.len() {
                    s.into_owned()
                } else {
                    trimmed.to_owned()
                })
            }
            Val::Null => None,
            _ => {
                self.wrong_type(field, "a string", &node);
                None
            }
        }
    }

    /// A table field's entries; `None` when absent (JSON null) or not a table.
    fn table<'i>(&mut self, field: &str, node: Node<'i>) -> Option<Vec<Entry<'i>>> {
        match node.val {
            Val::Table(entries) => Some(entries),
            Val::Null => None,
            _ => {
                let expected = self.table_name();
                self.wrong_type(field, expected, &node);
                None
            }
        }
    }

    /// Checks `schema`; `Err` when it is newer than this library (stop).
    fn schema(&mut self, node: Option<Node<'_>>) -> Result<u32, Pending> {
        const FIELD: &str = "schema";
        let Some(node) = node else {
            self.push(
                false,
                ProblemKind::MissingField,
                Some(FIELD.into()),
                None,
                format!(
                    "required field `schema` is missing (the descriptor format version; \
                     this envid reads {SCHEMA_VERSION})"
                ),
            );
            return Ok(0);
        };
        let at = node.span.start;
        let newer = |n: &dyn std::fmt::Display| Pending {
            offset: Some(at),
            problem: Problem {
                kind: ProblemKind::UnsupportedSchema,
                field: Some(FIELD.into()),
                location: None,
                message: format!(
                    "schema {n} is newer than this envid supports ({SCHEMA_VERSION}); upgrade envid"
                ),
            },
        };
        match node.val {
            Val::Int { value: Some(n), .. } if n > i64::from(SCHEMA_VERSION) => Err(newer(&n)),
            Val::Int {
                value: None,
                negative: false,
            } => Err(newer(&"(a number beyond 64 bits)")),
            Val::Int { value: Some(n), .. } if n >= 1 => Ok(n as u32),
            Val::Int { value, .. } => {
                let shown = value.map_or("a huge negative number".to_string(), |n| n.to_string());
                self.error(
                    ProblemKind::InvalidValue,
                    FIELD,
                    at,
                    format!("schema must be a positive integer, found {shown}"),
                );
                Ok(0)
            }
            _ => {
                self.wrong_type(FIELD, "an integer", &node);
                Ok(0)
            }
        }
    }

    fn descriptor(&mut self, root: Node<'_>, path: &Path) -> Option<Descriptor> {
        let mut entries = match root.val {
            Val::Table(entries) => entries,
            _ => {
                let found = self.type_name(&root.val);
                let expected = self.table_name();
                self.push(
                    false,
                    ProblemKind::WrongType,
                    None,
                    Some(root.span.start),
                    format!("the descriptor must be {expected}, found {found}"),
                );
                return None;
            }
        };
        let schema_node = entries
            .iter()
            .position(|e| e.key == "schema")
            .map(|i| entries.remove(i).node);
        let schema = match self.schema(schema_node) {
            Ok(schema) => schema,
            Err(newer) => {
                // Stop: a newer schema may mean other things by the same keys.
                self.errors.clear();
                self.errors.push(newer);
                return None;
            }
        };
        let mut d = Descriptor {
            path: path.to_path_buf(),
            schema,
            app: None,
            env: None,
            env_type: None,
            sub_env: None,
            idc: None,
            platform: None,
            ip: None,
            token: None,
            release: None,
            k8s: None,
            labels: Labels::new(),
        };
        // Present (even if invalid or null): no "missing" warning then.
        let (mut has_app, mut has_env, mut has_idc) = (false, false, false);
        for Entry {
            key,
            key_span,
            node,
        } in entries
        {
            let at = node.span.start;
            match key.as_ref() {
                "app" => {
                    has_app = true;
                    d.app = self.string("app", node);
                }
                "env" => {
                    has_env = true;
                    d.env = self.string("env", node);
                }
                "idc" => {
                    has_idc = true;
                    d.idc = self.string("idc", node);
                }
                "sub_env" => d.sub_env = self.string("sub_env", node),
                "env_type" => {
                    d.env_type = self
                        .string("env_type", node)
                        .map(|s| EnvType::from_class_name(&s))
                }
                "platform" => {
                    if let Some(s) = self.string("platform", node) {
                        match s.parse::<Platform>() {
                            Ok(p) => d.platform = Some(p),
                            Err(e) => {
                                self.error(ProblemKind::InvalidValue, "platform", at, e.to_string())
                            }
                        }
                    }
                }
                "ip" => {
                    if let Some(s) = self.string("ip", node) {
                        match s.parse::<IpAddr>() {
                            Ok(ip) => d.ip = Some(ip),
                            Err(_) => self.error(
                                ProblemKind::InvalidValue,
                                "ip",
                                at,
                                format!(
                                    "{s:?} is not an IP address: expected IPv4 like \"10.1.2.3\" or IPv6 like \"2001:db8::1\""
                                ),
                            ),
                        }
                    }
                }
                "token" => d.token = self.string("token", node).map(Secret::new),
                "release" => d.release = self.release(node),
                "k8s" => d.k8s = self.k8s(node),
                "labels" => {
                    if let Some(entries) = self.table("labels", node) {
                        d.labels = self.labels(entries);
                    }
                }
                other => self.unknown_key(other.to_string(), key_span.start),
            }
        }
        for (present, field) in [(has_app, "app"), (has_env, "env"), (has_idc, "idc")] {
            if !present {
                self.push(
                    !self.strict,
                    ProblemKind::MissingField,
                    Some(field.into()),
                    None,
                    match did_you_mean(field, &self.unknown_keys) {
                        Some(hint) => format!("`{field}` is missing ({hint})"),
                        None => {
                            format!("`{field}` is missing; the release system always writes it")
                        }
                    },
                );
            }
        }
        Some(d)
    }

    fn release(&mut self, node: Node<'_>) -> Option<Release> {
        let entries = self.table("release", node)?;
        let mut r = Release::default();
        for Entry {
            key,
            key_span,
            node,
        } in entries
        {
            match key.as_ref() {
                "id" => r.id = self.string("release.id", node),
                "version" => r.version = self.string("release.version", node),
                "batch" => r.batch = self.batch(node),
                "deployed_at" => r.deployed_at = self.deployed_at(node),
                other => self.unknown_key(format!("release.{other}"), key_span.start),
            }
        }
        (r != Release::default()).then_some(r)
    }

    fn batch(&mut self, node: Node<'_>) -> Option<u32> {
        const FIELD: &str = "release.batch";
        let at = node.span.start;
        match node.val {
            Val::Int { value, negative } => {
                let message = if negative {
                    "must not be negative".to_string()
                } else {
                    match value.map(u32::try_from) {
                        Some(Ok(n)) => return Some(n),
                        _ => format!("too large (at most {})", u32::MAX),
                    }
                };
                self.error(ProblemKind::InvalidValue, FIELD, at, message);
                None
            }
            Val::Null => None,
            _ => {
                self.wrong_type(FIELD, "a non-negative integer", &node);
                None
            }
        }
    }

    fn deployed_at(&mut self, node: Node<'_>) -> Option<String> {
        const FIELD: &str = "release.deployed_at";
        let at = node.span.start;
        let text = match node.val {
            Val::Datetime(d) => {
                if d.date.is_none() || d.time.is_none() || d.offset.is_none() {
                    self.error(
                        ProblemKind::InvalidValue,
                        FIELD,
                        at,
                        format!("{d} is not an RFC 3339 date-time: it needs a date, a time and a UTC offset"),
                    );
                    return None;
                }
                d.to_string()
            }
            _ => self.string(FIELD, node)?,
        };
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        match time::OffsetDateTime::parse(&text, rfc3339) {
            Ok(_) => Some(text),
            Err(_) => {
                self.error(
                    ProblemKind::InvalidValue,
                    FIELD,
                    at,
                    format!(
                        "{text:?} is not an RFC 3339 date-time: expected YYYY-MM-DDTHH:MM:SS \
                         with an optional fraction and a UTC offset (Z or +08:00), \
                         like \"2026-11-22T10:00:00Z\""
                    ),
                );
                None
            }
        }
    }

    fn k8s(&mut self, node: Node<'_>) -> Option<K8s> {
        let entries = self.table("k8s", node)?;
        let mut k = K8s::default();
        for Entry {
            key,
            key_span,
            node,
        } in entries
        {
            match key.as_ref() {
                "cluster" => k.cluster = self.string("k8s.cluster", node),
                "namespace" => k.namespace = self.string("k8s.namespace", node),
                "pod" => k.pod = self.string("k8s.pod", node),
                "node" => k.node = self.string("k8s.node", node),
                "workload" => k.workload = self.string("k8s.workload", node),
                other => self.unknown_key(format!("k8s.{other}"), key_span.start),
            }
        }
        (!k.is_empty()).then_some(k)
    }

    fn labels(&mut self, entries: Vec<Entry<'_>>) -> Labels {
        let mut labels = Labels::new();
        for Entry {
            key,
            key_span,
            node,
        } in entries
        {
            // Happy path without building the field name `labels.<key>`.
            if text_problem(&key).is_none() {
                if let Val::Str(value) = &node.val {
                    if text_problem(value).is_none() {
                        labels.insert(key.into_owned(), value.trim().to_owned());
                        continue;
                    }
                }
            }
            let field = format!("labels.{key}");
            if !self.check_text(&field, key_span.start, &key) {
                continue;
            }
            match node.val {
                Val::Str(_) => {
                    self.string(&field, node);
                }
                _ => self.wrong_type(&field, "a string", &node),
            }
        }
        labels
    }

    fn finish(
        self,
        text: &str,
        path: &Path,
        descriptor: Option<Descriptor>,
    ) -> Result<Parsed, DescriptorError> {
        let locate = |mut pending: Vec<Pending>| -> Vec<Problem> {
            // File order; problems without a place (missing fields) last.
            pending.sort_by_key(|p| p.offset.unwrap_or(usize::MAX));
            let lines = LineIndex::new(text);
            pending
                .into_iter()
                .map(|p| Problem {
                    location: p.offset.map(|o| lines.at(o)),
                    ..p.problem
                })
                .collect()
        };
        match descriptor {
            Some(descriptor) if self.errors.is_empty() => Ok(Parsed {
                descriptor,
                warnings: locate(self.warnings),
            }),
            _ => Err(DescriptorError {
                path: path.to_path_buf(),
                problems: locate(self.errors),
                warnings: locate(self.warnings),
            }),
        }
    }
}

// ---------------------------------------------------------------------------

mod json {
    //! JSON through `jsonc-parser` in strict mode (no comments, trailing
    //! commas or other JSON5 extensions): unlike `serde_json` it keeps the
    //! byte range of every value and every duplicate key, which is what
    //! located problems need.

    use std::borrow::Cow;
    use std::collections::HashSet;

    use jsonc_parser::ast::{ObjectPropName, Value};
    use jsonc_parser::{parse_to_ast, CollectOptions, CommentCollectionStrategy, ParseOptions};

    use super::{Entry, Node, SyntaxError, Val, MAX_DEPTH};

    pub(super) fn parse(text: &str) -> Result<Node<'_>, SyntaxError> {
        // The parser recurses per nesting level: refuse deep input before it
        // can exhaust the stack of a small thread.
        prescan(text)?;
        let strict = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let collect = CollectOptions {
            comments: CommentCollectionStrategy::Off,
            tokens: false,
        };
        let parsed = parse_to_ast(text, &collect, &strict).map_err(|e| SyntaxError {
            offset: e.range().start,
            message: e.kind().to_string(),
            field: None,
        })?;
        match parsed.value {
            Some(v) => convert(v, &mut Vec::new()),
            None => Err(SyntaxError {
                offset: 0,
                message: "empty document (expected a JSON object)".into(),
                field: None,
            }),
        }
    }

    /// Nesting depth of `{`/`[` outside strings, refused past [`MAX_DEPTH`];
    /// also refuses raw control characters in strings, which JSON forbids
    /// and `jsonc-parser` lets through.
    fn prescan(text: &str) -> Result<(), SyntaxError> {
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        for (i, b) in text.bytes().enumerate() {
            if in_str {
                match b {
                    0..=0x1f => {
                        return Err(SyntaxError {
                            offset: i,
                            message: format!("control character U+{b:04X} in a string (escape it)"),
                            field: None,
                        })
                    }
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(SyntaxError {
                            offset: i,
                            message: format!("nested deeper than {MAX_DEPTH} levels"),
                            field: None,
                        });
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    /// Objects with more keys than this check duplicates with a hash set.
    const LINEAR_DUP_CHECK: usize = 16;

    /// `path` holds the keys above `v`, only to name a duplicate key's field.
    fn convert<'i>(v: Value<'i>, path: &mut Vec<Cow<'i, str>>) -> Result<Node<'i>, SyntaxError> {
        let (val, range) = match v {
            Value::StringLit(s) => (Val::Str(s.value), s.range),
            Value::NumberLit(n) => (number(n.value), n.range),
            Value::BooleanLit(b) => (Val::Bool, b.range),
            Value::NullKeyword(n) => (Val::Null, n.range),
            Value::Array(a) => (Val::Array, a.range),
            Value::Object(o) => {
                let mut entries: Vec<Entry<'i>> = Vec::with_capacity(o.properties.len());
                let mut seen: Option<HashSet<Cow<'i, str>>> = None;
                for prop in o.properties {
                    let ObjectPropName::String(key) = prop.name else {
                        unreachable!("strict parse options allow only string keys")
                    };
                    let duplicate = if entries.len() < LINEAR_DUP_CHECK {
                        entries.iter().any(|e| e.key == key.value)
                    } else {
                        let seen = seen
                            .get_or_insert_with(|| entries.iter().map(|e| e.key.clone()).collect());
                        !seen.insert(key.value.clone())
                    };
                    if duplicate {
                        let mut field: Vec<&str> = path.iter().map(|p| p.as_ref()).collect();
                        field.push(&key.value);
                        return Err(SyntaxError {
                            offset: key.range.start,
                            message: format!("duplicate key {:?}", key.value),
                            field: Some(field.join(".")),
                        });
                    }
                    path.push(key.value.clone());
                    let node = convert(prop.value, path)?;
                    path.pop();
                    entries.push(Entry {
                        key: key.value,
                        key_span: key.range.start..key.range.end,
                        node,
                    });
                }
                (Val::Table(entries), o.range)
            }
        };
        Ok(Node {
            val,
            span: range.start..range.end,
        })
    }

    /// JSON numbers: integers when written without fraction or exponent.
    fn number(text: &str) -> Val<'static> {
        if text.contains(['.', 'e', 'E']) {
            return Val::Float;
        }
        let value = text.parse::<i64>().ok();
        Val::Int {
            value,
            // `-0` is zero, not negative.
            negative: text.starts_with('-') && value != Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, format: Format) -> Result<Parsed, DescriptorError> {
        parse(text.as_bytes(), Path::new("t"), format, false)
    }

    #[test]
    fn json_parser_agrees_with_serde_json() {
        let cases = [
            r#"{}"#,
            r#"{"a":1}"#,
            r#" { "a" : [1, 2.5, -3e10, true, false, null, "x"] } "#,
            r#"{"a":"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t"}"#,
            r#"{"a":"\ud83d"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x"} x"#,
            r#"{"a":"\x"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
            r#"{"a":"\u12"}"#,
            "",
            "   ",
            r#"{"a":{"b":{"c":[[[]]]}}}"#,
            r#"{"a":-0.0e+5}"#,
            r#"{"a":"é"}"#,
            r#"{"a":1}{"#,
            r#"{"a":"\ud83dx"}"#,
            r#"{"a":"\ud83d\u0041"}"#,
            r#"{"a":"\uDBFF\uDFFF"}"#,
            // (serde_json also refuses floats beyond f64, e.g. `1E400`; RFC 8259
            // allows them and so does this parser: no field takes a float.)
            r#"{"a":99999999999999999999999, "b": -1E300}"#,
            r#"{"a":"x\"}"#,
            "{\"a\":\"\u{7f}\u{85}\"}",
            r#"{"a":[1 2]}"#,
            r#"{"a":"é"} "#,
            "{\"a\":1}\u{feff}",
        ];
        for case in cases {
            let ours = json::parse(case).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(case).is_ok();
            assert_eq!(ours, theirs, "disagreement on {case:?}");
        }
    }

    #[test]
    fn json_strings_unescape_like_serde_json() {
        let case = r#"{"a":"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\tz"}"#;
        let node = json::parse(case).unwrap();
        let Val::Table(entries) = node.val else {
            panic!()
        };
        let Val::Str(s) = &entries[0].node.val else {
            panic!()
        };
        let theirs: serde_json::Value = serde_json::from_str(case).unwrap();
        assert_eq!(s.as_ref(), theirs["a"].as_str().unwrap());
    }

    #[test]
    fn json_duplicate_in_big_object_is_found() {
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{i}\":1,"));
        }
        text.push_str("\"k42\":2}");
        let e = json::parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("k42"));
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
