//! The Kubernetes downward-API volume: a pod's own labels, annotations and
//! UID, as the kubelet mounts them.
//!
//! A pod spec can mount its metadata as files:
//!
//! ```yaml
//! volumes:
//!   - name: podinfo
//!     downwardAPI:
//!       items:
//!         - { path: labels,      fieldRef: { fieldPath: metadata.labels } }
//!         - { path: annotations, fieldRef: { fieldPath: metadata.annotations } }
//!         - { path: uid,         fieldRef: { fieldPath: metadata.uid } }
//! containers:
//!   - volumeMounts: [{ name: podinfo, mountPath: /etc/podinfo }]
//! ```
//!
//! [`PodInfo::read`] reads such a directory ([`DEFAULT_DIR`], or the one
//! named by [`DIR_VAR`]) and [`PodInfoMapping`] takes `env`, `idc`,
//! `sub_env` and `app` from it. No release-system file is needed: the pod
//! carries its environment in its own metadata.
//!
//! # The file format
//!
//! The kubelet writes one `key="value"` per line, keys sorted, no newline
//! after the last line (Kubernetes' `fieldpath.FormatMap`: Go's
//! `fmt.Sprintf("%v=%q\n", key, value)`). The key is written raw: the API
//! server allows only ASCII letters, digits, `-`, `_`, `.` and one `/` in
//! it, and [`parse`] takes any printable ASCII but `=` and `"`. The value is
//! quoted by Go's `strconv.Quote`. [`parse`] accepts exactly the
//! escapes `strconv.Quote` can write:
//!
//! | escape | means |
//! | --- | --- |
//! | `\a` `\b` `\f` `\n` `\r` `\t` `\v` | U+0007, U+0008, U+000C, U+000A, U+000D, U+0009, U+000B |
//! | `\\` `\"` | backslash, double quote |
//! | `\xNN` | the character U+00NN, for NN up to `7f` (Go writes control characters this way) |
//! | `\uNNNN` | a character of the basic plane (not a surrogate) |
//! | `\UNNNNNNNN` | any character up to U+10FFFF (not a surrogate) |
//!
//! Hex digits may be upper or lower case (Go writes lower). Everything else
//! after a backslash is [`PodInfoErrorKind::BadEscape`] with its line and
//! column: octal `\101`, `\'`, `\?`, `\e`, short hex digits, surrogates.
//! `\x80` to `\xff` are what Go writes for bytes that are not UTF-8; such a
//! value cannot be text, and is [`PodInfoErrorKind::InvalidUtf8`] at the
//! escape. A raw control character inside the quotes (Go never writes one)
//! is a [`PodInfoErrorKind::Syntax`] error.
//!
//! Beyond the kubelet's exact output, a trailing newline, empty lines, CRLF
//! line ends and a UTF-8 byte-order mark (which does not count as a column)
//! are accepted, so a hand-written plain directory reads too. A line that
//! is not `key="value"` is [`PodInfoErrorKind::Syntax`], a key written twice
//! is [`PodInfoErrorKind::DuplicateKey`] (which value was meant is
//! unknowable). The first problem stops the parse; its error names the file,
//! the line and column, and what a valid line looks like.
//!
//! # Reading safely and consistently
//!
//! Each file is read by the bounded reader ([`crate::read`]), like the
//! descriptor: a non-regular file (a FIFO, `/dev/zero`, a directory) is
//! [`PodInfoErrorKind::NotAFile`] without being opened, the open is
//! non-blocking and checked again on the open descriptor, and at most
//! [`MAX_FILE_SIZE`] bytes are read.
//!
//! The kubelet updates the volume with its `AtomicWriter`: it writes a new
//! timestamped directory (`..2026_11_30_10_00_00.123456789`), points a
//! `..data_tmp` symlink at it, renames that over `..data`, and then deletes
//! the old directory; the user-visible files are symlinks `labels ->
//! ..data/labels`. Reading `labels` and then `annotations` through those
//! symlinks could see two generations. So [`PodInfo::read`] resolves
//! `..data` once and reads every file from the timestamped directory it
//! names. If a file is missing there and `..data` meanwhile names another
//! directory, the kubelet swapped generations during the read: everything
//! is read again from the new one, at most [`MAX_ATTEMPTS`] times in all,
//! then [`PodInfoErrorKind::Unstable`]. A generation is never mixed with
//! another. A plain directory without `..data` (files placed by hand, or by
//! another tool) is read directly.
//!
//! A missing directory is `Ok(None)`: the source is simply absent. A missing
//! file is an empty one (a volume may project only annotations).
//!
//! # The mapping
//!
//! [`PodInfoMapping::default`] reads
//!
//! | field | keys, first found wins |
//! | --- | --- |
//! | `env` | `envid.io/env` |
//! | `idc` | `envid.io/idc` |
//! | `sub_env` | `envid.io/sub-env` |
//! | `app` | `envid.io/app`, then `app.kubernetes.io/name` |
//!
//! Each key is looked up among the annotations first, then the labels;
//! a key written `annotation:KEY` or `label:KEY` looks in that file only
//! (Kubernetes keys cannot contain `:`). Other labels become
//! [`crate::Environment`] labels only when the mapping says `labels = true`;
//! labels with an empty value (Kubernetes allows them, envid's labels do not)
//! are then left out. The mapping is overridable in the rules file, as a
//! `[podinfo]` table; a field left out keeps its default keys and an empty
//! list turns the field off:
//!
//! ```toml
//! [podinfo]
//! env = ["envid.io/env", "label:environment"]
//! app = ["label:app"]
//! sub_env = []
//! labels = true
//! ```
//!
//! A value taken for a field (or offered as a label) obeys the descriptor's
//! rules for strings: trimmed, then non-empty, at most
//! [`crate::descriptor::MAX_STRING_LEN`] bytes, no control characters
//! (so an escaped `\n` parses, but cannot become an `env`). A bad value is
//! [`PodInfoErrorKind::InvalidValue`] at its line and column. The
//! provenance of a value ([`PodInfoOrigin`]) names the user-visible file
//! (`/etc/podinfo/annotations`) and the key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::descriptor::text_problem;
use crate::location::Location;
use crate::model::{Field, Labels};
use crate::read::ReadProblem;

/// The directory read when neither `ENVID_PODINFO` nor the builder names one.
pub const DEFAULT_DIR: &str = "/etc/podinfo";

/// The variable naming the downward-API directory.
pub const DIR_VAR: &str = "ENVID_PODINFO";

/// The symlink through which the kubelet's `AtomicWriter` names the current
/// generation.
pub const DATA_LINK: &str = "..data";

/// The file of the pod's UID (`fieldPath: metadata.uid`).
pub const UID_FILE: &str = "uid";

/// Files larger than this are refused unread: four times the API server's
/// 256 KiB limit on all of a pod's annotations, the most Go's quoting can
/// grow text by (a control byte becomes `\xNN`).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads of the directory before a generation swap on every one of them
/// gives [`PodInfoErrorKind::Unstable`].
pub const MAX_ATTEMPTS: usize = 3;

/// What a valid line looks like, for error messages.
const VALID_LINE: &str = r#"a valid line is key="value", the value quoted as Go's %q does"#;

/// The two `key="value"` files of the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodInfoFile {
    /// `labels` (`fieldPath: metadata.labels`).
    Labels,
    /// `annotations` (`fieldPath: metadata.annotations`).
    Annotations,
}

impl PodInfoFile {
    /// The file name in the directory (`labels`, `annotations`).
    pub fn file_name(&self) -> &'static str {
        match self {
            PodInfoFile::Labels => "labels",
            PodInfoFile::Annotations => "annotations",
        }
    }

    /// One entry of the file, as a person says it (`label`, `annotation`).
    pub fn singular(&self) -> &'static str {
        match self {
            PodInfoFile::Labels => "label",
            PodInfoFile::Annotations => "annotation",
        }
    }
}

impl fmt::Display for PodInfoFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// The kind of a downward-API problem; tests and callers match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PodInfoErrorKind {
    /// The path exists but is not a directory.
    NotADirectory,
    /// `..data` is not a symlink to a timestamped directory beside it.
    Layout,
    /// A file could not be read (permission, I/O error).
    Io,
    /// A file is not a regular file (FIFO, device, directory).
    NotAFile,
    /// A file is larger than [`MAX_FILE_SIZE`].
    TooLarge,
    /// A file is not UTF-8, or a `\xNN` escape stands for a non-UTF-8 byte.
    InvalidUtf8,
    /// A line is not `key="value"`.
    Syntax,
    /// A backslash escape Go's `%q` never writes.
    BadEscape,
    /// A key appears twice in one file.
    DuplicateKey,
    /// A value taken for a field is empty, too long or holds a control character.
    InvalidValue,
    /// The kubelet swapped generations during every one of [`MAX_ATTEMPTS`] reads.
    Unstable,
}

/// A downward-API directory or file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}{}{message}",
    path.display(),
    location.as_ref().map(|l| format!("{}:{}: ", l.line, l.column)).unwrap_or_else(|| " ".into()),
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct PodInfoError {
    /// What kind of problem.
    pub kind: PodInfoErrorKind,
    /// The user-visible file (`/etc/podinfo/labels`) or the directory.
    pub path: PathBuf,
    /// Where in the file, for problems of its content.
    pub location: Option<Location>,
    /// The key the problem is about, when there is one.
    pub key: Option<String>,
    /// A sentence saying what is wrong.
    pub message: String,
}

impl PodInfoError {
    fn new(kind: PodInfoErrorKind, path: &Path, message: impl Into<String>) -> Self {
        PodInfoError {
            kind,
            path: path.to_path_buf(),
            location: None,
            key: None,
            message: message.into(),
        }
    }
}

/// Where a value came from: the user-visible file and the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PodInfoOrigin {
    /// The file as the pod sees it (`/etc/podinfo/annotations`), not the
    /// timestamped directory behind it.
    pub file: PathBuf,
    /// The label or annotation key (`envid.io/env`).
    pub key: String,
}

impl fmt::Display for PodInfoOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.file.display(), self.key)
    }
}

/// One consistent reading of a downward-API directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// The directory as given (`/etc/podinfo`).
    pub dir: PathBuf,
    /// The kubelet's timestamped directory every file was read from
    /// (`..2026_11_30_10_00_00.123456789`), or `None` for a plain directory.
    pub generation: Option<String>,
    /// The pod's labels (empty when the file is absent).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (empty when the file is absent).
    pub annotations: BTreeMap<String, String>,
    /// The pod's UID, trimmed, from the `uid` file.
    pub uid: Option<String>,
    /// Where each value starts, for locating a value a mapping refuses.
    locations: BTreeMap<(PodInfoFile, String), Location>,
}

impl PodInfo {
    /// Reads the downward-API directory `dir` (see the module documentation
    /// for the layout and the consistency rule). `Ok(None)` when `dir` does
    /// not exist.
    pub fn read(dir: &Path) -> Result<Option<PodInfo>, PodInfoError> {
        read_observed(dir, &mut |_, _| {})
    }

    /// The labels or the annotations.
    pub fn entries(&self, file: PodInfoFile) -> &BTreeMap<String, String> {
        match file {
            PodInfoFile::Labels => &self.labels,
            PodInfoFile::Annotations => &self.annotations,
        }
    }

    /// The user-visible path of `file` (`/etc/podinfo/labels`), the one
    /// provenance and errors name.
    pub fn path(&self, file: PodInfoFile) -> PathBuf {
        self.dir.join(file.file_name())
    }

    /// Where the value of `key` starts in `file` (the character after the
    /// opening quote).
    pub fn location(&self, file: PodInfoFile, key: &str) -> Option<Location> {
        self.locations.get(&(file, key.to_string())).cloned()
    }

    /// The user-visible path of the `uid` file.
    pub fn uid_path(&self) -> PathBuf {
        self.dir.join(UID_FILE)
    }
}

/// A point of [`read_observed`] a test can act at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `..data` was resolved (or found absent); nothing read yet.
    Resolved,
    /// This file of the generation was just read (or found missing).
    Read(&'static str),
}

/// [`PodInfo::read`] calling `observe(attempt, stage)` at each stage: the
/// seam through which tests swap generations at an exact point of a read.
pub(crate) fn read_observed(
    dir: &Path,
    observe: &mut dyn FnMut(usize, Stage),
) -> Result<Option<PodInfo>, PodInfoError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::NotADirectory,
                dir,
                "not a directory; the downward-API volume is a directory with files labels, annotations and uid",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Io,
                dir,
                format!("cannot read: {e}"),
            ))
        }
    }
    for attempt in 0..MAX_ATTEMPTS {
        let generation = resolve_generation(dir)?;
        let from = match &generation {
            Some(name) => dir.join(name),
            None => dir.to_path_buf(),
        };
        observe(attempt, Stage::Resolved);
        let mut missing = false;
        let mut read = |name: &'static str| -> Result<Option<Vec<u8>>, PodInfoError> {
            let got = crate::read::bytes(&from.join(name), MAX_FILE_SIZE);
            observe(attempt, Stage::Read(name));
            match got {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.is_not_found() => {
                    missing = true;
                    Ok(None)
                }
                Err(e) => Err(read_error(&dir.join(name), e.problem)),
            }
        };
        let labels = read(PodInfoFile::Labels.file_name())?;
        let annotations = read(PodInfoFile::Annotations.file_name())?;
        let uid = read(UID_FILE)?;
        if missing {
            if let Some(name) = &generation {
                // A file missing from a generation is either not projected
                // or gone with its directory after a swap; only the second
                // moves `..data`.
                if resolve_generation(dir)?.as_ref() != Some(name) {
                    continue;
                }
                if !from.is_dir() {
                    return Err(PodInfoError::new(
                        PodInfoErrorKind::Layout,
                        &dir.join(DATA_LINK),
                        format!("points to {name:?}, which does not exist"),
                    ));
                }
            }
        }
        return assemble(dir, generation, labels, annotations, uid).map(Some);
    }
    Err(PodInfoError::new(
        PodInfoErrorKind::Unstable,
        dir,
        format!("the kubelet replaced {DATA_LINK} during each of {MAX_ATTEMPTS} reads; try again"),
    ))
}

/// The timestamped directory `..data` names, or `None` without `..data`.
fn resolve_generation(dir: &Path) -> Result<Option<String>, PodInfoError> {
    let link = dir.join(DATA_LINK);
    let target = match std::fs::read_link(&link) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Layout,
                &link,
                "not a symlink; the kubelet makes ..data a symlink to a timestamped directory beside it",
            ))
        }
        Err(e) => {
            return Err(PodInfoError::new(
                PodInfoErrorKind::Io,
                &link,
                format!("cannot read the link: {e}"),
            ))
        }
    };
    // The kubelet writes a bare name; anything else could lead the reads
    // out of the volume.
    let mut parts = target.components();
    match (parts.next(), parts.next(), target.to_str()) {
        (Some(Component::Normal(_)), None, Some(name)) => Ok(Some(name.to_string())),
        _ => Err(PodInfoError::new(
            PodInfoErrorKind::Layout,
            &link,
            format!(
                "points to {}; the kubelet points ..data to a timestamped directory beside it (..2026_11_30_10_00_00.123456789)",
                target.display()
            ),
        )),
    }
}

/// The error of a file of the volume the bounded reader refused; `path` is
/// the user-visible one.
fn read_error(path: &Path, problem: ReadProblem) -> PodInfoError {
    let (kind, message) = match problem {
        ReadProblem::NotAFile(_) => (PodInfoErrorKind::NotAFile, problem.to_string()),
        ReadProblem::TooLarge { .. } => (
            PodInfoErrorKind::TooLarge,
            format!(
                "larger than {MAX_FILE_SIZE} bytes; the API server holds at most 256 KiB of a pod's annotations"
            ),
        ),
        _ => (PodInfoErrorKind::Io, problem.to_string()),
    };
    PodInfoError::new(kind, path, message)
}

fn assemble(
    dir: &Path,
    generation: Option<String>,
    labels: Option<Vec<u8>>,
    annotations: Option<Vec<u8>>,
    uid: Option<Vec<u8>>,
) -> Result<PodInfo, PodInfoError> {
    let mut info = PodInfo {
        dir: dir.to_path_buf(),
        generation,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        uid: None,
        locations: BTreeMap::new(),
    };
    for (file, bytes) in [
        (PodInfoFile::Labels, labels),
        (PodInfoFile::Annotations, annotations),
    ] {
        let Some(bytes) = bytes else { continue };
        let path = info.path(file);
        let text = utf8(&bytes, &path)?;
        let entries = parse_located(text).map_err(|e| e.into_error(text, &path))?;
        let map = match file {
            PodInfoFile::Labels => &mut info.labels,
            PodInfoFile::Annotations => &mut info.annotations,
        };
        for e in entries {
            info.locations.insert((file, e.key.clone()), e.value_at);
            map.insert(e.key, e.value);
        }
    }
    if let Some(bytes) = uid {
        let path = info.uid_path();
        let text = utf8(&bytes, &path)?;
        // An empty uid file is no uid, like an empty POD_UID.
        if !text.trim().is_empty() {
            if let Some(problem) = text_problem(text) {
                return Err(PodInfoError {
                    location: Some(Location { line: 1, column: 1 }),
                    ..PodInfoError::new(PodInfoErrorKind::InvalidValue, &path, problem)
                });
            }
            info.uid = Some(text.trim().to_string());
        }
    }
    Ok(info)
}

/// The text of a file's bytes: UTF-8, a leading byte-order mark dropped.
fn utf8<'b>(bytes: &'b [u8], path: &Path) -> Result<&'b str, PodInfoError> {
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

struct Entry {
    key: String,
    value: String,
    value_at: Location,
}

/// A parse problem at a byte offset of the text, located at the end.
struct ParseError {
    kind: PodInfoErrorKind,
    offset: usize,
    key: Option<String>,
    message: String,
}

impl ParseError {
    fn into_error(self, text: &str, path: &Path) -> PodInfoError {
        PodInfoError {
            kind: self.kind,
            path: path.to_path_buf(),
            location: Some(Location::at(text, self.offset)),
            key: self.key,
            message: self.message,
        }
    }
}

fn parse_located(text: &str) -> Result<Vec<Entry>, ParseError> {
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

/// A key of a [`PodInfoMapping`]: `KEY` (annotations first, then labels),
/// `annotation:KEY` or `label:KEY` (that file only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodInfoKey {
    /// The label or annotation key.
    pub key: String,
    /// The one file to look in, or `None` for annotations then labels.
    pub file: Option<PodInfoFile>,
}

impl PodInfoKey {
    /// A key looked up among the annotations, then the labels.
    pub fn any(key: impl Into<String>) -> PodInfoKey {
        PodInfoKey {
            key: key.into(),
            file: None,
        }
    }

    /// The files this key is looked up in, in order.
    pub fn files(&self) -> &'static [PodInfoFile] {
        match self.file {
            None => &[PodInfoFile::Annotations, PodInfoFile::Labels],
            Some(PodInfoFile::Annotations) => &[PodInfoFile::Annotations],
            Some(PodInfoFile::Labels) => &[PodInfoFile::Labels],
        }
    }
}

impl std::str::FromStr for PodInfoKey {
    type Err = String;

    /// Parses `KEY`, `annotation:KEY` or `label:KEY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, key) = match s.split_once(':') {
            Some(("annotation", key)) => (Some(PodInfoFile::Annotations), key),
            Some(("label", key)) => (Some(PodInfoFile::Labels), key),
            Some((prefix, _)) => {
                return Err(format!(
                    "{s:?}: unknown prefix {prefix:?} (expected annotation:KEY, label:KEY or KEY)"
                ))
            }
            None => (None, s),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '=' && c != '"')
        {
            return Err(format!(
                "{s:?}: a key is printable ASCII without `=` or quotes, like envid.io/env"
            ));
        }
        Ok(PodInfoKey {
            key: key.to_string(),
            file,
        })
    }
}

impl fmt::Display for PodInfoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file {
            None => f.write_str(&self.key),
            Some(file) => write!(f, "{}:{}", file.singular(), self.key),
        }
    }
}

impl<'de> Deserialize<'de> for PodInfoKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for PodInfoKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which keys of a [`PodInfo`] give which field: the `[podinfo]` table of
/// the rules file. [`Default`] is the documented mapping (see the module
/// documentation); a field left out of the table keeps its default keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodInfoMapping {
    /// Keys for `env`, first found wins.
    pub env: Vec<PodInfoKey>,
    /// Keys for `idc`.
    pub idc: Vec<PodInfoKey>,
    /// Keys for `sub_env`.
    pub sub_env: Vec<PodInfoKey>,
    /// Keys for `app`.
    pub app: Vec<PodInfoKey>,
    /// Offer the pod's other labels as [`crate::Environment`] labels.
    pub labels: bool,
}

impl Default for PodInfoMapping {
    fn default() -> Self {
        PodInfoMapping {
            env: vec![PodInfoKey::any("envid.io/env")],
            idc: vec![PodInfoKey::any("envid.io/idc")],
            sub_env: vec![PodInfoKey::any("envid.io/sub-env")],
            app: vec![
                PodInfoKey::any("envid.io/app"),
                PodInfoKey::any("app.kubernetes.io/name"),
            ],
            labels: false,
        }
    }
}

impl PodInfoMapping {
    /// The keys for `field`: `env`, `idc`, `sub_env` and `app` have some;
    /// every other field has none.
    pub fn keys(&self, field: Field) -> &[PodInfoKey] {
        match field {
            Field::Env => &self.env,
            Field::Idc => &self.idc,
            Field::SubEnv => &self.sub_env,
            Field::App => &self.app,
            _ => &[],
        }
    }

    /// The value of `field` in `info` and where it came from: the first of
    /// [`PodInfoMapping::keys`] found, each among the annotations, then the
    /// labels. `Ok(None)` when no key is there (and for every field the
    /// mapping has no keys for). A found value is trimmed; one that is
    /// empty, too long or holds a control character is an
    /// [`PodInfoErrorKind::InvalidValue`] error, not skipped: the pod says
    /// something, and it is wrong.
    pub fn resolve(
        &self,
        info: &PodInfo,
        field: Field,
    ) -> Result<Option<(String, PodInfoOrigin)>, PodInfoError> {
        for key in self.keys(field) {
            for &file in key.files() {
                if let Some(value) = info.entries(file).get(&key.key) {
                    return checked(info, file, &key.key, value).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The labels offered as [`crate::Environment`] labels: none unless
    /// [`PodInfoMapping::labels`] is set; then every label whose key the
    /// mapping does not name, except those with an empty value. Their
    /// provenance is `info.path(PodInfoFile::Labels)`.
    pub fn offered_labels(&self, info: &PodInfo) -> Result<Labels, PodInfoError> {
        let mut out = Labels::new();
        if !self.labels {
            return Ok(out);
        }
        let named = |k: &str| {
            [&self.env, &self.idc, &self.sub_env, &self.app]
                .into_iter()
                .flatten()
                .any(|m| m.key == k && m.file != Some(PodInfoFile::Annotations))
        };
        for (key, value) in &info.labels {
            if named(key) || value.trim().is_empty() {
                continue;
            }
            if let Some(problem) = text_problem(key) {
                return Err(PodInfoError {
                    location: info.location(PodInfoFile::Labels, key),
                    key: Some(key.clone()),
                    ..PodInfoError::new(
                        PodInfoErrorKind::InvalidValue,
                        &info.path(PodInfoFile::Labels),
                        format!("key {problem}"),
                    )
                });
            }
            let (value, _) = checked(info, PodInfoFile::Labels, key, value)?;
            out.insert(key.clone(), value);
        }
        Ok(out)
    }
}

/// `value` trimmed and checked like a descriptor string.
fn checked(
    info: &PodInfo,
    file: PodInfoFile,
    key: &str,
    value: &str,
) -> Result<(String, PodInfoOrigin), PodInfoError> {
    let path = info.path(file);
    if let Some(problem) = text_problem(value) {
        return Err(PodInfoError {
            location: info.location(file, key),
            key: Some(key.to_string()),
            ..PodInfoError::new(PodInfoErrorKind::InvalidValue, &path, problem)
        });
    }
    Ok((
        value.trim().to_string(),
        PodInfoOrigin {
            file: path,
            key: key.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn info(labels: &str, annotations: &str) -> PodInfo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("labels"), labels).unwrap();
        std::fs::write(dir.path().join("annotations"), annotations).unwrap();
        std::fs::write(
            dir.path().join("uid"),
            "6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90\n",
        )
        .unwrap();
        PodInfo::read(dir.path()).unwrap().unwrap()
    }

    #[test]
    fn default_mapping_prefers_annotations_then_falls_back_for_app() {
        let i = info(
            "app.kubernetes.io/name=\"flight-order\"\nenvid.io/env=\"label-env\"\nenvid.io/idc=\"cn0\"\nteam=\"f\"",
            "envid.io/env=\" beta \"\nenvid.io/sub-env=\"noahauto-2\"",
        );
        assert_eq!(
            i.uid.as_deref(),
            Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
        );
        let m = PodInfoMapping::default();
        let get = |f| m.resolve(&i, f).unwrap().map(|(v, o)| (v, o.file, o.key));
        let ann = i.dir.join("annotations");
        let lab = i.dir.join("labels");
        assert_eq!(
            get(Field::Env),
            Some(("beta".into(), ann.clone(), "envid.io/env".into()))
        );
        assert_eq!(
            get(Field::Idc),
            Some(("cn0".into(), lab.clone(), "envid.io/idc".into()))
        );
        assert_eq!(
            get(Field::SubEnv),
            Some(("noahauto-2".into(), ann, "envid.io/sub-env".into()))
        );
        assert_eq!(
            get(Field::App),
            Some(("flight-order".into(), lab, "app.kubernetes.io/name".into()))
        );
        assert_eq!(get(Field::Platform), None);
        // Labels only when asked for, and then not those the mapping names.
        assert!(m.offered_labels(&i).unwrap().is_empty());
        let all = PodInfoMapping { labels: true, ..m };
        assert_eq!(
            all.offered_labels(&i).unwrap(),
            Labels::from([("team".to_string(), "f".to_string())])
        );
    }

    #[test]
    fn a_bad_mapped_value_is_refused_at_its_place() {
        let i = info(
            "envid.io/idc=\"cn0\"",
            "a=\"1\"\nenvid.io/env=\"  \"\nenvid.io/app=\"x\\ny\"",
        );
        let m = PodInfoMapping::default();
        let e = m.resolve(&i, Field::Env).unwrap_err();
        assert_eq!(e.kind, PodInfoErrorKind::InvalidValue);
        assert_eq!(
            e.location,
            Some(Location {
                line: 2,
                column: 15
            })
        );
        assert!(
            e.to_string()
                .ends_with("annotations:2:15: envid.io/env: must not be empty"),
            "{e}"
        );
        let e = m.resolve(&i, Field::App).unwrap_err();
        assert!(e.message.contains("U+000A"), "{e}");
        assert_eq!(m.resolve(&i, Field::Idc).unwrap().unwrap().0, "cn0");
    }

    #[test]
    fn mapping_reads_from_the_rules_file_table() {
        #[derive(Deserialize)]
        struct Rules {
            podinfo: PodInfoMapping,
        }
        let r: Rules = toml::from_str(
            "[podinfo]\nenv = ['label:environment', 'annotation:envid.io/env']\nsub_env = []\nlabels = true\n",
        )
        .unwrap();
        let m = r.podinfo;
        assert_eq!(
            m.env,
            [
                PodInfoKey {
                    key: "environment".into(),
                    file: Some(PodInfoFile::Labels)
                },
                PodInfoKey {
                    key: "envid.io/env".into(),
                    file: Some(PodInfoFile::Annotations)
                },
            ]
        );
        assert!(m.sub_env.is_empty());
        assert_eq!(m.idc, PodInfoMapping::default().idc);
        assert!(m.labels);

        let i = info(
            "environment=\"prod\"\nenvid.io/env=\"label\"",
            "environment=\"ann\"",
        );
        assert_eq!(m.resolve(&i, Field::Env).unwrap().unwrap().0, "prod");
        // `label:environment` is taken, so not offered; `envid.io/env` is
        // named for annotations only, so the label is.
        assert_eq!(
            m.offered_labels(&i).unwrap(),
            Labels::from([("envid.io/env".to_string(), "label".to_string())])
        );
        assert_eq!(m.resolve(&i, Field::SubEnv).unwrap(), None);

        for bad in [
            "[podinfo]\nenv = ['node:x']\n",
            "[podinfo]\nenv = ['']\n",
            "[podinfo]\nenv = ['label:']\n",
            "[podinfo]\nenv = ['a b']\n",
            "[podinfo]\nevn = ['x']\n",
        ] {
            assert!(toml::from_str::<Rules>(bad).is_err(), "{bad}");
        }
        let text = toml::to_string(&PodInfoMapping::default()).unwrap();
        assert_eq!(
            toml::from_str::<PodInfoMapping>(&text).unwrap(),
            PodInfoMapping::default()
        );
        assert_eq!(PodInfoKey::any("a").to_string(), "a");
        assert_eq!(m.env[0].to_string(), "label:environment");
    }

    /// One kubelet `AtomicWriter` update of `dir`: a new timestamped
    /// directory, `..data_tmp` renamed over `..data`, user-visible symlinks,
    /// the old directory removed.
    fn atomic_write(dir: &Path, generation: &str, files: &[(&str, &str)]) {
        let old = std::fs::read_link(dir.join(DATA_LINK)).ok();
        std::fs::create_dir(dir.join(generation)).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(generation).join(name), text).unwrap();
        }
        std::os::unix::fs::symlink(generation, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
        for (name, _) in files {
            let _ = std::os::unix::fs::symlink(format!("{DATA_LINK}/{name}"), dir.join(name));
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }

    fn generation(n: u32) -> (String, [(&'static str, String); 3]) {
        (
            format!("..2026_11_30_10_00_0{n}.12345678{n}"),
            [
                ("labels", format!("generation=\"{n}\"")),
                ("annotations", format!("generation=\"{n}\"")),
                ("uid", format!("uid-{n}")),
            ],
        )
    }

    fn write_generation(dir: &Path, n: u32) {
        let (name, files) = generation(n);
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        atomic_write(dir, &name, &files);
    }

    /// The generation every file of `info` came from; panics on a mix.
    fn only_generation(info: &PodInfo) -> String {
        let l = &info.labels["generation"];
        assert_eq!(
            &info.annotations["generation"], l,
            "labels and annotations mixed"
        );
        assert_eq!(
            info.uid.as_deref(),
            Some(format!("uid-{l}").as_str()),
            "uid mixed"
        );
        assert_eq!(info.generation, Some(generation(l.parse().unwrap()).0));
        l.clone()
    }

    #[test]
    fn a_swap_between_two_files_is_read_again_from_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut next = 2;
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if attempt == 0 && stage == Stage::Read("labels") {
                write_generation(dir.path(), next);
                next += 1;
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(only_generation(&got), "2");
    }

    #[test]
    fn a_swap_after_resolving_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut attempts = Vec::new();
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if stage == Stage::Resolved {
                attempts.push(attempt);
                if attempt < 2 {
                    write_generation(dir.path(), attempt as u32 + 2);
                }
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(attempts, [0, 1, 2]);
        assert_eq!(only_generation(&got), "3");
    }

    #[test]
    fn a_swap_after_the_last_file_keeps_the_old_consistent_generation() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let got = read_observed(dir.path(), &mut |attempt, stage| {
            if attempt == 0 && stage == Stage::Read(UID_FILE) {
                write_generation(dir.path(), 2);
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(only_generation(&got), "1");
    }

    #[test]
    fn a_swap_during_every_read_is_unstable() {
        let dir = tempfile::tempdir().unwrap();
        write_generation(dir.path(), 1);
        let mut next = 2;
        let e = read_observed(dir.path(), &mut |_, stage| {
            if stage == Stage::Resolved {
                write_generation(dir.path(), next);
                next += 1;
            }
        })
        .unwrap_err();
        assert_eq!(e.kind, PodInfoErrorKind::Unstable);
        assert_eq!(next, 2 + MAX_ATTEMPTS as u32);
    }

    #[test]
    fn a_file_not_projected_stays_absent_without_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        atomic_write(
            dir.path(),
            "..2026_11_30_10_00_00.1",
            &[("annotations", "a=\"1\"")],
        );
        let mut resolved = 0;
        let got = read_observed(dir.path(), &mut |_, stage| {
            resolved += usize::from(stage == Stage::Resolved)
        })
        .unwrap()
        .unwrap();
        assert_eq!(resolved, 1);
        assert!(got.labels.is_empty() && got.uid.is_none());
        assert_eq!(got.annotations["a"], "1");
    }
}
