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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::location::Location;
use crate::read::ReadProblem;

mod kubelet_format;
mod mapping;
mod volume;

pub use kubelet_format::{parse, parse_bytes};
pub use mapping::{PodInfoKey, PodInfoMapping};

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
        volume::read_observed(dir, &mut |_, _| {})
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
