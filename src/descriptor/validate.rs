//! The descriptor's validation: the syntax tree to a [`Descriptor`],
//! collecting every problem with its place. The rules are in the module
//! documentation of [`crate::descriptor`].

use std::net::IpAddr;
use std::path::Path;

use super::syntax::{Entry, Node, Val};
use super::{
    Descriptor, DescriptorError, Format, Parsed, Problem, ProblemKind, MAX_STRING_LEN,
    SCHEMA_VERSION,
};
use crate::env_type::EnvType;
use crate::location::LineIndex;
use crate::model::{K8s, Labels, Platform, Release, Secret};

/// Validates the tree of `text` (its spans are offsets in `text`) into a
/// descriptor, or every error found; `path` names the file.
pub(super) fn validate(
    root: Node<'_>,
    text: &str,
    path: &Path,
    format: Format,
    strict: bool,
) -> Result<Parsed, DescriptorError> {
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
