//! The apps file's parser (the format is in the parent module's docs):
//! every problem located, nothing half-read. A typo in a file that decides
//! who may register must never widen a scope, so unknown keys, empty lists,
//! a token's scope outside its app's, and a plain token are all refused.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use envid::location::LineIndex;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Apps, AppsError, AppsProblem, Credential, Digest32, Role, Scope};
use crate::validation::string_problem;

type Span = Option<Range<usize>>;

/// The problems found so far, located in the text.
struct Problems<'a> {
    lines: LineIndex<'a>,
    list: Vec<AppsProblem>,
}

impl Problems<'_> {
    fn add(&mut self, span: Span, message: String) {
        self.list.push(AppsProblem {
            location: span.map(|s| self.lines.at(s.start)),
            message,
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.at(span.start).line
    }
}

/// One credential as written, before it is tied to its entry.
struct Written {
    digest: Digest32,
    label: String,
    envs: Option<Vec<String>>,
    idcs: Option<Vec<String>>,
    sub_envs: Option<Vec<String>>,
    not_after: Option<u64>,
    span: Range<usize>,
}

/// Parses the text of an apps file; `path` only names the file in errors.
/// Every problem is reported with its line and column.
pub fn parse_apps(text: &str, path: &Path) -> Result<Apps, AppsError> {
    let mut p = Problems {
        lines: LineIndex::new(text),
        list: Vec::new(),
    };
    let fail = |p: Problems<'_>| {
        let mut problems = p.list;
        problems.sort_by_key(|p| p.location.as_ref().map(|l| (l.line, l.column)));
        Err(AppsError {
            path: path.to_path_buf(),
            problems,
        })
    };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let msg = e.message().trim().to_string();
            p.add(e.span(), format!("invalid TOML: {msg}"));
            return fail(p);
        }
    };

    let mut apps = Apps::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut owners: HashMap<Digest32, String> = HashMap::new();
    let mut entries = 0usize;
    for (key, value) in doc.get_ref() {
        let kind = key.get_ref().as_ref();
        if kind != "app" && kind != "operator" {
            p.add(
                Some(key.span()),
                format!("unknown top-level key {kind:?} (expected [[app]] and [[operator]])"),
            );
            continue;
        }
        let DeValue::Array(items) = value.get_ref() else {
            p.add(
                Some(value.span()),
                format!("`{kind}` must be an array of tables ([[{kind}]])"),
            );
            continue;
        };
        for item in items.iter() {
            entries += 1;
            entry(kind, item, &mut p, &mut names, &mut owners, &mut apps);
        }
    }
    if entries == 0 && p.list.is_empty() {
        // An empty file (a truncated write, a wrong ConfigMap) would refuse
        // every token: refused like an empty registry, never applied.
        p.add(
            None,
            "no [[app]] or [[operator]]: every token would be refused (to close registration, \
             start the service without --apps)"
                .into(),
        );
    }
    if p.list.is_empty() {
        Ok(apps)
    } else {
        fail(p)
    }
}

/// One `[[app]]` or `[[operator]]` entry: checked, and its credentials
/// added to `apps` when it has no problem.
fn entry(
    kind: &str,
    item: &Spanned<DeValue<'_>>,
    p: &mut Problems<'_>,
    names: &mut HashMap<String, usize>,
    owners: &mut HashMap<Digest32, String>,
    apps: &mut Apps,
) {
    let Some(table) = item.get_ref().as_table() else {
        p.add(
            Some(item.span()),
            format!("each [[{kind}]] must be a table"),
        );
        return;
    };
    let before = p.list.len();
    let app = kind == "app";
    let mut name: Option<String> = None;
    let mut scope = Scope {
        envs: Vec::new(),
        idcs: None,
        sub_envs: None,
    };
    let mut has_envs = false;
    let mut written: Vec<Written> = Vec::new();
    for (k, v) in table {
        let field = k.get_ref().as_ref();
        match (app, field) {
            (_, "name") => name = one_string(v, "name", p),
            (true, "envs") => {
                has_envs = true;
                scope.envs = strings(v, "envs", p).unwrap_or_default();
            }
            (true, "idcs") => scope.idcs = strings(v, "idcs", p),
            (true, "sub_envs") => scope.sub_envs = strings(v, "sub_envs", p),
            (_, "token_sha256") => {
                let Some(list) = strings(v, "token_sha256", p) else {
                    continue;
                };
                let DeValue::Array(items) = v.get_ref() else {
                    unreachable!("checked by strings()")
                };
                for (i, (hex, item)) in list.iter().zip(items.iter()).enumerate() {
                    if let Some(digest) = hex32(hex, item.span(), "token_sha256", p) {
                        written.push(Written {
                            digest,
                            label: format!("token_sha256[{i}]"),
                            envs: None,
                            idcs: None,
                            sub_envs: None,
                            not_after: None,
                            span: item.span(),
                        });
                    }
                }
            }
            (_, "token") => match v.get_ref() {
                DeValue::Array(items) if items.iter().all(|t| t.get_ref().as_table().is_some()) => {
                    for (i, t) in items.iter().enumerate() {
                        if let Some(w) = credential(kind, t, i, p) {
                            written.push(w);
                        }
                    }
                }
                _ => p.add(
                    Some(k.span()),
                    format!(
                        "`token`: tokens are never stored here; give their SHA-256 in \
                         `token_sha256`, or in `sha256` of a [[{kind}.token]] table"
                    ),
                ),
            },
            (_, "tokens") => p.add(
                Some(k.span()),
                "`tokens`: tokens are never stored here; give their SHA-256 in `token_sha256`"
                    .into(),
            ),
            _ => {
                let known = if app {
                    "name, envs, idcs, sub_envs, token_sha256, [[app.token]]"
                } else {
                    "name, token_sha256, [[operator.token]]"
                };
                p.add(
                    Some(k.span()),
                    format!("unknown key {field:?} in [[{kind}]] (known: {known})"),
                );
            }
        }
    }
    let Some(name) = name else {
        if !table.keys().any(|k| k.get_ref() == "name") {
            p.add(Some(item.span()), format!("[[{kind}]] without `name`"));
        }
        return;
    };
    if app && !has_envs {
        p.add(
            Some(item.span()),
            format!("[[app]] {name:?} without `envs` (the envs its tokens may claim)"),
        );
    }
    if written.is_empty()
        && !table
            .keys()
            .any(|k| k.get_ref() == "token_sha256" || k.get_ref() == "token")
    {
        p.add(
            Some(item.span()),
            format!(
                "[[{kind}]] {name:?} without a credential (`token_sha256` or [[{kind}.token]])"
            ),
        );
    }
    let line = p.line(&item.span());
    if let Some(first) = names.get(&name) {
        p.add(
            Some(item.span()),
            format!(
                "{name:?} is defined twice (first at line {first}); give one app several \
                 credentials, each with its own scope, as [[{kind}.token]] tables of one entry"
            ),
        );
    } else {
        names.insert(name.clone(), line);
    }
    let mut labels: HashSet<&str> = HashSet::new();
    for w in &written {
        if !labels.insert(&w.label) {
            p.add(
                Some(w.span.clone()),
                format!("{name:?} has two credentials labelled {:?}", w.label),
            );
        }
        if let Some(other) = owners.get(&w.digest) {
            p.add(
                Some(w.span.clone()),
                format!("a token hash of {name:?} is also one of {other:?}; one token must name one app"),
            );
        } else {
            owners.insert(w.digest, name.clone());
        }
        // A credential narrows its app's scope, never widens it: what the
        // entry says is the most any of its tokens may claim.
        for (field, own, app_list) in [
            ("envs", &w.envs, Some(&scope.envs)),
            ("idcs", &w.idcs, scope.idcs.as_ref()),
            ("sub_envs", &w.sub_envs, scope.sub_envs.as_ref()),
        ] {
            if let (Some(own), Some(allowed)) = (own, app_list) {
                for v in own.iter().filter(|v| !allowed.contains(v)) {
                    p.add(
                        Some(w.span.clone()),
                        format!(
                            "credential {:?} of {name:?} claims {field} {v:?}, which its app does not \
                             allow ({})",
                            w.label,
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if p.list.len() > before {
        return;
    }
    for w in written {
        let role = if app {
            Role::App(Scope {
                envs: w.envs.unwrap_or_else(|| scope.envs.clone()),
                idcs: w.idcs.or_else(|| scope.idcs.clone()),
                sub_envs: w.sub_envs.or_else(|| scope.sub_envs.clone()),
            })
        } else {
            Role::Operator
        };
        apps.push(
            w.digest,
            Credential {
                name: name.clone(),
                label: w.label,
                role,
                not_after: w.not_after,
            },
        );
    }
}

/// One `[[app.token]]` (or `[[operator.token]]`) table.
fn credential(
    kind: &str,
    item: &Spanned<DeValue<'_>>,
    index: usize,
    p: &mut Problems<'_>,
) -> Option<Written> {
    let table = item.get_ref().as_table()?;
    let before = p.list.len();
    let mut w = Written {
        digest: [0; 32],
        label: format!("token[{index}]"),
        envs: None,
        idcs: None,
        sub_envs: None,
        not_after: None,
        span: item.span(),
    };
    let mut digest = None;
    for (k, v) in table {
        let field = k.get_ref().as_ref();
        match (kind == "app", field) {
            (_, "sha256") => {
                digest = one_string(v, "sha256", p).and_then(|h| hex32(&h, v.span(), "sha256", p))
            }
            (_, "label") => {
                if let Some(l) = one_string(v, "label", p) {
                    w.label = l;
                }
            }
            (_, "not_after") => w.not_after = not_after(v, p),
            (true, "envs") => w.envs = Some(strings(v, "envs", p).unwrap_or_default()),
            (true, "idcs") => w.idcs = strings(v, "idcs", p),
            (true, "sub_envs") => w.sub_envs = strings(v, "sub_envs", p),
            (_, "token" | "token_sha256") => p.add(
                Some(k.span()),
                format!("`{field}` in [[{kind}.token]]: give the token's SHA-256 as `sha256`"),
            ),
            _ => {
                let known = if kind == "app" {
                    "sha256, label, envs, idcs, sub_envs, not_after"
                } else {
                    "sha256, label, not_after"
                };
                p.add(
                    Some(k.span()),
                    format!("unknown key {field:?} in [[{kind}.token]] (known: {known})"),
                );
            }
        }
    }
    if digest.is_none() && !table.keys().any(|k| k.get_ref() == "sha256") {
        p.add(
            Some(item.span()),
            format!("[[{kind}.token]] without `sha256`"),
        );
    }
    w.digest = digest?;
    (p.list.len() == before).then_some(w)
}

/// A checked string.
fn one_string(v: &Spanned<DeValue<'_>>, field: &str, p: &mut Problems<'_>) -> Option<String> {
    match v.get_ref().as_str() {
        Some(s) => match string_problem(s) {
            Some(m) => {
                p.add(Some(v.span()), format!("`{field}` {s:?} {m}"));
                None
            }
            None => Some(s.to_string()),
        },
        None => {
            p.add(Some(v.span()), format!("`{field}` must be a string"));
            None
        }
    }
}

/// A non-empty list of checked strings.
fn strings(v: &Spanned<DeValue<'_>>, field: &str, p: &mut Problems<'_>) -> Option<Vec<String>> {
    let DeValue::Array(items) = v.get_ref() else {
        p.add(
            Some(v.span()),
            format!("`{field}` must be a list of strings"),
        );
        return None;
    };
    let before = p.list.len();
    let out: Vec<String> = items
        .iter()
        .filter_map(|item| match item.get_ref().as_str() {
            Some(_) => one_string(item, field, p),
            None => {
                p.add(Some(item.span()), format!("`{field}` must hold strings"));
                None
            }
        })
        .collect();
    if p.list.len() > before {
        return None;
    }
    if out.is_empty() {
        p.add(Some(v.span()), format!("`{field}` must not be empty"));
        return None;
    }
    Some(out)
}

/// A SHA-256 in hex.
fn hex32(hex: &str, span: Range<usize>, field: &str, p: &mut Problems<'_>) -> Option<Digest32> {
    let parsed = (hex.len() == 64).then(|| {
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let d = |c: u8| (c as char).to_digit(16);
            out[i] = (d(pair[0])? * 16 + d(pair[1])?) as u8;
        }
        Some(out)
    });
    if let Some(Some(d)) = parsed {
        return Some(d);
    }
    p.add(
        Some(span),
        format!(
            "`{field}`: not a SHA-256 in hex (64 hex digits; `printf %s \"$TOKEN\" | sha256sum`)"
        ),
    );
    None
}

/// `not_after`: a TOML offset date-time (`2026-01-31T00:00:00Z`), as Unix
/// seconds. A local date or time is refused: whose midnight would it be?
fn not_after(v: &Spanned<DeValue<'_>>, p: &mut Problems<'_>) -> Option<u64> {
    let unix = v.get_ref().as_datetime().and_then(|dt| {
        let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
        let minutes = match offset {
            toml::value::Offset::Z => 0,
            toml::value::Offset::Custom { minutes } => i64::from(minutes),
        };
        let days = days_from_civil(
            i64::from(date.year),
            i64::from(date.month),
            i64::from(date.day),
        );
        let secs = days * 86_400
            + i64::from(time.hour) * 3600
            + i64::from(time.minute) * 60
            + i64::from(time.second.unwrap_or(0))
            - minutes * 60;
        u64::try_from(secs).ok()
    });
    if unix.is_none() {
        p.add(
            Some(v.span()),
            "`not_after` must be a date and time with its offset, e.g. 2026-01-31T00:00:00Z".into(),
        );
    }
    unix
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Every SHA-256 written anywhere in `text` (64 hex digits between
/// non-hex characters), parsed or not: what a broken file still says about
/// which credentials it keeps (see `AppsReloader`).
pub(super) fn digests_in(text: &str) -> HashSet<Digest32> {
    let mut out = HashSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i - start == 64 {
            let mut d = [0u8; 32];
            for (j, pair) in bytes[start..i].chunks(2).enumerate() {
                let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                d[j] = h(pair[0]) * 16 + h(pair[1]);
            }
            out.insert(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 1, 31), 20_484);
    }

    #[test]
    fn digests_are_found_anywhere() {
        let a = "ab".repeat(32);
        let text = format!("x = [\"{a}\"\nbroken {}", "c".repeat(65));
        let found = digests_in(&text);
        assert_eq!(found.len(), 1);
        assert!(found.contains(&[0xab; 32]));
    }
}
