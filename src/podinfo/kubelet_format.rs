//! The kubelet's format of the `labels` and `annotations` files: one
//! `key="value"` per line, the value quoted as Go's `%q` does (see the
//! module documentation of [`crate::podinfo`], "The file format").

use std::collections::HashMap;
use std::path::Path;

use super::{read_error, PodInfoError, PodInfoErrorKind, MAX_FILE_SIZE};
use crate::location::Location;
use crate::read::ReadProblem;

/// What a valid line looks like, for error messages.
const VALID_LINE: &str = r#"a valid line is key="value", the value quoted as Go's %q does"#;

/// The text of a file's bytes: UTF-8, a leading byte-order mark dropped.
pub(super) fn utf8<'b>(bytes: &'b [u8], path: &Path) -> Result<&'b str, PodInfoError> {
    crate::read::decode(bytes).map_err(|e| PodInfoError {
        location: Some(e.location()),
        ..PodInfoError::new(
            PodInfoErrorKind::InvalidUtf8,
            path,
            format!("{e}; the kubelet writes UTF-8"),
        )
    })
}

/// Parses the text of a `labels` or `annotations` file into its entries, in
/// file order; `path` is only used in errors. See the module documentation
/// for the format.
pub fn parse(text: &str, path: &Path) -> Result<Vec<(String, String)>, PodInfoError> {
    parse_unmarked(text.strip_prefix('\u{feff}').unwrap_or(text), path)
}

/// [`parse`] on the bytes of a file: UTF-8 checked (a byte-order mark is
/// dropped) and the size capped at [`MAX_FILE_SIZE`].
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, String)>, PodInfoError> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(read_error(
            path,
            ReadProblem::TooLarge { cap: MAX_FILE_SIZE },
        ));
    }
    parse_unmarked(utf8(bytes, path)?, path)
}

/// [`parse`] of a text whose byte-order mark, if any, is already dropped
/// (only one is: a second would be part of the first key, and refused).
fn parse_unmarked(text: &str, path: &Path) -> Result<Vec<(String, String)>, PodInfoError> {
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(read_error(
            path,
            ReadProblem::TooLarge { cap: MAX_FILE_SIZE },
        ));
    }
    parse_located(text)
        .map(|entries| entries.into_iter().map(|e| (e.key, e.value)).collect())
        .map_err(|e| e.into_error(text, path))
}

/// One line: the key, the decoded value, and where the value starts.
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) value_at: Location,
}

/// A parse problem at a byte offset of the text, located at the end.
pub(super) struct ParseError {
    kind: PodInfoErrorKind,
    offset: usize,
    key: Option<String>,
    message: String,
}

impl ParseError {
    pub(super) fn into_error(self, text: &str, path: &Path) -> PodInfoError {
        PodInfoError {
            kind: self.kind,
            path: path.to_path_buf(),
            location: Some(Location::at(text, self.offset)),
            key: self.key,
            message: self.message,
        }
    }
}

pub(super) fn parse_located(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    // key -> line, for naming the first of two duplicates.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut start = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let line_start = start;
        start += raw.len() + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let fail = |kind, at: usize, message: String| ParseError {
            kind,
            offset: line_start + at,
            key: None,
            message,
        };
        // Kubernetes keys are ASCII (a DNS prefix, `/`, a name of letters,
        // digits, `-`, `_` and `.`); this checks no more than that they are
        // printable ASCII, so a key never hides a space or a byte-order mark.
        let Some(eq) = line.find(|c: char| c == '=' || c == '"' || !c.is_ascii_graphic()) else {
            return Err(fail(
                PodInfoErrorKind::Syntax,
                line.len(),
                format!("no `=` after the key; {VALID_LINE}"),
            ));
        };
        let stop = line[eq..].chars().next().unwrap_or('=');
        if stop != '=' {
            return Err(fail(
                PodInfoErrorKind::Syntax,
                eq,
                format!(
                    "{stop:?} in a key (keys are printable ASCII, without quotes); {VALID_LINE}"
                ),
            ));
        }
        if eq == 0 {
            return Err(fail(
                PodInfoErrorKind::Syntax,
                0,
                format!("empty key; {VALID_LINE}"),
            ));
        }
        let key = &line[..eq];
        let open = eq + 1;
        if !line[open..].starts_with('"') {
            return Err(ParseError {
                key: Some(key.to_string()),
                ..fail(
                    PodInfoErrorKind::Syntax,
                    open,
                    format!("the value does not start with a double quote; {VALID_LINE}"),
                )
            });
        }
        let (value, close) =
            unquote(&line[open + 1..]).map_err(|(kind, at, message)| ParseError {
                key: Some(key.to_string()),
                ..fail(kind, open + 1 + at, message)
            })?;
        let after = open + 1 + close + 1;
        if after < line.len() {
            return Err(ParseError {
                key: Some(key.to_string()),
                ..fail(
                    PodInfoErrorKind::Syntax,
                    after,
                    format!("text after the closing quote; {VALID_LINE}"),
                )
            });
        }
        if let Some(first) = seen.insert(key, index + 1) {
            return Err(ParseError {
                key: Some(key.to_string()),
                ..fail(
                    PodInfoErrorKind::DuplicateKey,
                    0,
                    format!(
                        "duplicate key (first on line {first}); the kubelet writes each key once"
                    ),
                )
            });
        }
        entries.push(Entry {
            key: key.to_string(),
            value,
            // Computed from the line: Location::at would rescan the text
            // from its start for every entry.
            value_at: Location {
                line: index + 1,
                column: line[..=open].chars().count() + 1,
            },
        });
    }
    Ok(entries)
}

/// The escapes [`parse`] accepts, for error messages.
const ESCAPES: &str = r#"\a \b \f \n \r \t \v \\ \" \xNN \uNNNN \UNNNNNNNN"#;

/// Decodes the quoted text after an opening quote, up to the closing quote:
/// the value and the offset of the closing quote, or the problem's kind,
/// offset and message.
fn unquote(s: &str) -> Result<(String, usize), (PodInfoErrorKind, usize, String)> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i)),
            '\\' => {
                let bad = |message: String| (PodInfoErrorKind::BadEscape, i, message);
                let Some((_, e)) = chars.next() else {
                    return Err(bad(format!(
                        "a backslash at the end of the line; Go's %q writes only {ESCAPES}"
                    )));
                };
                let digits = match e {
                    'a' => {
                        out.push('\u{7}');
                        continue;
                    }
                    'b' => {
                        out.push('\u{8}');
                        continue;
                    }
                    'f' => {
                        out.push('\u{c}');
                        continue;
                    }
                    'n' => {
                        out.push('\n');
                        continue;
                    }
                    'r' => {
                        out.push('\r');
                        continue;
                    }
                    't' => {
                        out.push('\t');
                        continue;
                    }
                    'v' => {
                        out.push('\u{b}');
                        continue;
                    }
                    '\\' | '"' => {
                        out.push(e);
                        continue;
                    }
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    other => {
                        return Err(bad(format!(
                            "unknown escape \\{}; Go's %q writes only {ESCAPES}",
                            other.escape_debug()
                        )))
                    }
                };
                let start = i + 2;
                let hex = s
                    .get(start..start + digits)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                let Some(hex) = hex else {
                    return Err(bad(format!("\\{e} needs {digits} hex digits")));
                };
                // At most 8 hex digits: fits u32.
                let code = u32::from_str_radix(hex, 16).unwrap_or(u32::MAX);
                if e == 'x' && code > 0x7f {
                    return Err((
                        PodInfoErrorKind::InvalidUtf8,
                        i,
                        format!("\\x{hex} stands for a byte that is not UTF-8 text; the value must be text"),
                    ));
                }
                let Some(ch) = char::from_u32(code) else {
                    return Err(bad(format!(
                        "\\{e}{hex} is not a Unicode character (a surrogate or past U+10FFFF)"
                    )));
                };
                out.push(ch);
                // The digits are ASCII: skip them.
                for _ in 0..digits {
                    chars.next();
                }
            }
            c if c.is_control() => {
                return Err((
                    PodInfoErrorKind::Syntax,
                    i,
                    format!(
                        "raw control character U+{:04X} in a value; Go's %q writes it escaped",
                        c as u32
                    ),
                ))
            }
            c => out.push(c),
        }
    }
    Err((
        PodInfoErrorKind::Syntax,
        s.len(),
        format!("no closing double quote; {VALID_LINE}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;

    fn p(text: &str) -> Result<Vec<(String, String)>, PodInfoError> {
        parse(text, Path::new("/etc/podinfo/annotations"))
    }

    fn value(quoted: &str) -> String {
        let mut entries = p(&format!("k={quoted}")).unwrap();
        assert_eq!(entries.len(), 1);
        entries.remove(0).1
    }

    /// The kind, line and column of the error on `text`.
    fn fails(text: &str) -> (PodInfoErrorKind, usize, usize) {
        let e = p(text).unwrap_err();
        let l = e.location.clone().expect("a parse error has a location");
        (e.kind, l.line, l.column)
    }

    #[test]
    fn kubelet_output_parses() {
        // fieldpath.FormatMap: keys sorted, no newline after the last line.
        let text = "app.kubernetes.io/name=\"flight-order\"\nenvid.io/env=\"beta\"\ntier=\"\"";
        assert_eq!(
            p(text).unwrap(),
            [
                (
                    "app.kubernetes.io/name".to_string(),
                    "flight-order".to_string()
                ),
                ("envid.io/env".into(), "beta".into()),
                ("tier".into(), String::new()),
            ]
        );
        assert_eq!(p("").unwrap(), []);
    }

    #[test]
    fn hand_written_variations_parse() {
        let want = [("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
        for text in [
            "a=\"1\"\nb=\"2\"\n",
            "a=\"1\"\r\nb=\"2\"\r\n",
            "\n\na=\"1\"\n\nb=\"2\"\n\n",
            "\u{feff}a=\"1\"\nb=\"2\"",
        ] {
            assert_eq!(p(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn every_escape_go_writes_is_decoded() {
        let cases = [
            (r#""\a""#, "\u{7}"),
            (r#""\b""#, "\u{8}"),
            (r#""\f""#, "\u{c}"),
            (r#""\n""#, "\n"),
            (r#""\r""#, "\r"),
            (r#""\t""#, "\t"),
            (r#""\v""#, "\u{b}"),
            (r#""\\""#, "\\"),
            (r#""\"""#, "\""),
            (r#""\x00""#, "\0"),
            (r#""\x1b""#, "\u{1b}"),
            (r#""\x7f""#, "\u{7f}"),
            (r#""\x7F""#, "\u{7f}"),
            (r#""\u00a0""#, "\u{a0}"),
            (r#""\u200B""#, "\u{200b}"),
            (r#""\ufeff""#, "\u{feff}"),
            (r#""\U000e0001""#, "\u{e0001}"),
            (r#""\U0010FFFF""#, "\u{10ffff}"),
            // Printable text is written as it is, multi-byte included.
            (r#""é 日本 😀 =\"x\"""#, "é 日本 😀 =\"x\""),
            (
                r#""{\"a\":1}\n\tb\\c\x01\u0085\U0001d11e""#,
                "{\"a\":1}\n\tb\\c\u{1}\u{85}\u{1d11e}",
            ),
        ];
        for (quoted, want) in cases {
            assert_eq!(value(quoted), want, "{quoted}");
        }
    }

    #[test]
    fn escapes_go_never_writes_are_refused_where_they_are() {
        use PodInfoErrorKind::*;
        let cases = [
            (r#"k="\101""#, BadEscape, 4),
            (r#"k="\0""#, BadEscape, 4),
            (r#"k="ab\'""#, BadEscape, 6),
            (r#"k="\?""#, BadEscape, 4),
            (r#"k="\e""#, BadEscape, 4),
            (r#"k="\ ""#, BadEscape, 4),
            (r#"k="\x4""#, BadEscape, 4),
            (r#"k="\xZZ""#, BadEscape, 4),
            (r#"k="\u12""#, BadEscape, 4),
            (r#"k="\u+123""#, BadEscape, 4),
            (r#"k="\ud800""#, BadEscape, 4),
            (r#"k="\uDFFF""#, BadEscape, 4),
            (r#"k="\U00110000""#, BadEscape, 4),
            (r#"k="\UFFFFFFFF""#, BadEscape, 4),
            (r#"k="\U0000d800""#, BadEscape, 4),
            ("k=\"x\\", BadEscape, 5),
            (r#"k="é\é""#, BadEscape, 5),
            (r#"k="\x80""#, InvalidUtf8, 4),
            (r#"k="ok\xff""#, InvalidUtf8, 6),
        ];
        for (text, kind, column) in cases {
            assert_eq!(fails(text), (kind, 1, column), "{text}");
        }
        let e = p(r#"k="\q""#).unwrap_err();
        assert!(e.message.contains(ESCAPES), "{e}");
        assert_eq!(e.key.as_deref(), Some("k"));
    }

    #[test]
    fn bad_lines_are_refused_where_they_are() {
        use PodInfoErrorKind::*;
        let cases = [
            ("a=\"1\"\nnoequals", Syntax, 2, 9),
            ("=\"x\"", Syntax, 1, 1),
            ("a b=\"x\"", Syntax, 1, 2),
            ("a\"b=\"x\"", Syntax, 1, 2),
            (" a=\"x\"", Syntax, 1, 1),
            ("a\t=\"x\"", Syntax, 1, 2),
            ("a=x", Syntax, 1, 3),
            ("a='x'", Syntax, 1, 3),
            ("a= \"x\"", Syntax, 1, 3),
            ("a=", Syntax, 1, 3),
            ("a=\"x", Syntax, 1, 5),
            ("a=\"x\\\"", Syntax, 1, 7),
            ("a=\"x\" ", Syntax, 1, 6),
            ("a=\"x\"\"", Syntax, 1, 6),
            ("a=\"x\" # note", Syntax, 1, 6),
            ("a=\"x\tb\"", Syntax, 1, 5),
            ("a=\"x\rb\"", Syntax, 1, 5),
            ("a=\"é\u{85}\"", Syntax, 1, 5),
            ("a=\"1\"\nb=\"2\"\na=\"3\"", DuplicateKey, 3, 1),
            ("a=\"é\"\nkey=\"日本\" x", Syntax, 2, 9),
            ("é=\"1\"", Syntax, 1, 1),
            ("a\u{feff}=\"1\"", Syntax, 1, 2),
            ("\u{feff}\u{feff}a=\"1\"", Syntax, 1, 1),
        ];
        for (text, kind, line, column) in cases {
            assert_eq!(fails(text), (kind, line, column), "{text:?}");
        }
    }

    #[test]
    fn errors_say_file_line_column_and_what_a_line_looks_like() {
        let e = p("a=\"1\"\nb=2").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "/etc/podinfo/annotations:2:3: b: the value does not start with a double quote; {VALID_LINE}"
            )
        );
        let e = p("a=\"1\"\na=\"2\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/podinfo/annotations:2:1: a: duplicate key (first on line 1); the kubelet writes each key once"
        );
    }

    #[test]
    fn bytes_are_utf8_checked_and_capped() {
        let path = Path::new("/etc/podinfo/labels");
        let e = parse_bytes(b"a=\"1\"\nb=\"\xff\"", path).unwrap_err();
        assert_eq!(e.kind, PodInfoErrorKind::InvalidUtf8);
        assert_eq!(e.location, Some(Location { line: 2, column: 4 }));
        // The byte-order mark does not count as a column.
        let e = parse_bytes(b"\xEF\xBB\xBFa=\"\xc3\"", path).unwrap_err();
        assert_eq!(e.location, Some(Location { line: 1, column: 4 }));

        let line = "k0000000=\"0123456789012345678901234567890123456789\"\n";
        let big: String = (0..(MAX_FILE_SIZE as usize / line.len() + 1))
            .map(|i| line.replace("0000000", &format!("{i:07}")))
            .collect();
        assert!(big.len() as u64 > MAX_FILE_SIZE);
        for e in [
            parse_bytes(big.as_bytes(), path).unwrap_err(),
            parse(&big, path).unwrap_err(),
        ] {
            assert_eq!(e.kind, PodInfoErrorKind::TooLarge);
        }
        // Just under the cap parses, in one pass over the lines.
        let fits = &big[..big[..MAX_FILE_SIZE as usize].rfind('\n').unwrap() + 1];
        assert_eq!(
            parse_bytes(fits.as_bytes(), path).unwrap().len(),
            fits.lines().count()
        );
    }
}
