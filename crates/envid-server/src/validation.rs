//! The one validation every record passes, whoever writes it (the registry
//! file and registration bodies alike): every string trimmed, non-empty, free
//! of control and bidirectional-override characters and at most
//! [`MAX_FIELD_BYTES`] long; the whole record at most [`MAX_RECORD_BYTES`];
//! no key the record format does not know, at any depth (named by its path,
//! e.g. `release.verison`). And [`parse_json_strict`], the JSON reader that
//! refuses duplicate keys (serde_json alone keeps the last one, so a body
//! could show one value to a reviewer and store another).

use std::fmt;

use envid::protocol::HostRecord;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Longest string a record field (or label key/value) may hold, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest record, as compact JSON, in bytes.
pub const MAX_RECORD_BYTES: usize = 4096;

/// Characters that reorder the text shown around them (the "Trojan Source"
/// set): a name holding one can read as another in a terminal or a review.
const BIDI: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
];

/// One problem of a record: the field's path (`labels.team`, `release.verison`)
/// and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path of the field (empty for the record as a whole).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

/// Why a string is refused, or `None` when it is fine.
pub fn string_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.trim() != s {
        return Some("has leading or trailing white space".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(format!("contains a control character (U+{:04X})", c as u32));
    }
    if let Some(c) = s.chars().find(|c| BIDI.contains(c)) {
        return Some(format!(
            "contains a bidirectional formatting character (U+{:04X})",
            c as u32
        ));
    }
    if s.len() > MAX_FIELD_BYTES {
        return Some(format!(
            "is {} bytes long; at most {MAX_FIELD_BYTES} are allowed",
            s.len()
        ));
    }
    None
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `record`, parsed from `input` (the record's fields as written, as
/// JSON): every problem, in field order; empty when the record is fine.
/// Keys of `input` the parsed record does not carry are unknown keys (the
/// nested types ignore them silently otherwise); `null` values are absent
/// ones. `skip` names top-level keys the caller checks itself.
pub fn check_record(input: &Value, record: &HostRecord, skip: &[&str]) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let canonical = serde_json::to_value(record).expect("a record always encodes");
    unknown_keys(input, &canonical, "", skip, &mut problems);
    strings(&canonical, "", &mut problems);
    let size = serde_json::to_vec(record).map_or(0, |v| v.len());
    if size > MAX_RECORD_BYTES {
        problems.push(FieldProblem {
            path: String::new(),
            message: format!(
                "the record is {size} bytes as JSON; at most {MAX_RECORD_BYTES} are allowed"
            ),
        });
    }
    problems
}

fn unknown_keys(
    input: &Value,
    canonical: &Value,
    path: &str,
    skip: &[&str],
    out: &mut Vec<FieldProblem>,
) {
    let (Value::Object(given), Value::Object(known)) = (input, canonical) else {
        return;
    };
    for (k, v) in given {
        if path.is_empty() && skip.contains(&k.as_str()) {
            continue;
        }
        let p = join(path, k);
        match known.get(k) {
            Some(c) => unknown_keys(v, c, &p, &[], out),
            None if v.is_null() => {}
            None => out.push(FieldProblem {
                path: p,
                message: "unknown key".into(),
            }),
        }
    }
}

fn strings(v: &Value, path: &str, out: &mut Vec<FieldProblem>) {
    match v {
        Value::String(s) => {
            if let Some(m) = string_problem(s) {
                out.push(FieldProblem {
                    path: path.to_string(),
                    message: m,
                });
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let p = join(path, k);
                if let Some(m) = string_problem(k) {
                    out.push(FieldProblem {
                        path: p.clone(),
                        message: format!("the key {m}"),
                    });
                }
                strings(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses JSON like `serde_json::from_slice::<Value>`, but refuses a key
/// given twice in one object (naming its path and position).
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { path: "" }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct Strict<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(Strict { path: &path })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = join(self.path, &key);
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{path}`")));
            }
            let value = map.next_value_seed(Strict { path: &path })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = parse_json_strict(br#"{"env":"a","labels":{"x":"1","x":"2"}}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `labels.x`"), "{e}");
        let e = parse_json_strict(br#"{"env":"a","env":"b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `env`"), "{e}");
        assert_eq!(
            parse_json_strict(br#"{"a":[1,{"b":null}],"c":true}"#).unwrap(),
            serde_json::json!({"a":[1,{"b":null}],"c":true})
        );
        assert!(parse_json_strict(b"{} x").is_err());
    }

    #[test]
    fn strings_are_checked() {
        for (s, bad) in [
            ("prod", false),
            ("", true),
            (" prod", true),
            ("pr\0od", true),
            ("pr\nod", true),
            ("pr\u{1b}[31mod", true),
            ("pr\u{202E}od", true),
            ("pr\u{2066}od", true),
            ("pr\u{200F}od", true),
            ("pr\u{061C}od", true),
            (&"a".repeat(256), false),
            (&"a".repeat(257), true),
        ] {
            assert_eq!(string_problem(s).is_some(), bad, "{s:?}");
        }
    }

    #[test]
    fn nested_unknown_keys_are_named() {
        let input = serde_json::json!({"env":"prod","idc":"cn5","release":{"verison":"1"}});
        let record: HostRecord = serde_json::from_value(input.clone()).unwrap();
        let p = check_record(&input, &record, &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "release.verison");
    }
}
