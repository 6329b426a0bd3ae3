//! The descriptor's syntax: TOML and JSON parsed into one format-neutral
//! tree that keeps the byte span of every key and value, so that the
//! validator (`validate.rs`) can locate every problem. See the module
//! documentation of [`crate::descriptor`], "Parsing".

use std::borrow::Cow;
use std::ops::Range;

use super::{Format, MAX_DEPTH};

/// The tree of `text` in `format`, or the first syntax error.
pub(super) fn parse(text: &str, format: Format) -> Result<Node<'_>, SyntaxError> {
    match format {
        Format::Toml => toml_tree(text),
        Format::Json => json::parse(text),
    }
}

/// A value with the byte span of its text.
#[derive(Debug)]
pub(super) struct Node<'i> {
    pub(super) val: Val<'i>,
    pub(super) span: Range<usize>,
}

/// A value of either format, reduced to what validation needs.
#[derive(Debug)]
pub(super) enum Val<'i> {
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

/// A key of a table, with its span, and its value.
#[derive(Debug)]
pub(super) struct Entry<'i> {
    pub(super) key: Cow<'i, str>,
    pub(super) key_span: Range<usize>,
    pub(super) node: Node<'i>,
}

/// A syntax error: where, what, and for JSON duplicates the key path.
#[derive(Debug)]
pub(super) struct SyntaxError {
    pub(super) offset: usize,
    pub(super) message: String,
    pub(super) field: Option<String>,
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
}
