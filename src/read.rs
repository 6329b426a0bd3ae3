//! One bounded reader for the input files of the project (ARCHITECTURE.md,
//! "Invariants": bad input is a typed error, read with a size cap).
//!
//! The descriptor, each file of the downward-API volume, the rules file,
//! Apollo's `server.properties`, and the service's registry, apps and key
//! files are all read by [`bytes`] or [`text`], in four steps:
//!
//! 1. **The metadata first.** The path is `stat`ed (symlinks followed).
//!    Anything but a regular file (a directory, a FIFO, a device such as
//!    `/dev/zero`, a socket) is [`ReadProblem::NotAFile`], naming what it
//!    is, *without being opened*: opening a device can have effects of its
//!    own (a watchdog arms, a tape rewinds). A file larger than the cap is
//!    [`ReadProblem::TooLarge`] without being opened either.
//! 2. **A non-blocking open** (`O_NONBLOCK`, `O_NOCTTY`): if the path is
//!    swapped for a FIFO between the check and the open, the open returns at
//!    once instead of waiting for a writer that may never come.
//! 3. **The open descriptor is checked again** (`fstat`): what is read is
//!    what was opened, so a swap after step 1 is refused like step 1.
//! 4. **A capped read**: at most `cap + 1` bytes are ever read, so a file
//!    that grows while it is read cannot exhaust memory, and more than `cap`
//!    bytes is [`ReadProblem::TooLarge`] naming the cap. A file of exactly
//!    `cap` bytes is read.
//!
//! [`text`] then applies the text checks of [`decode`]: a UTF-8 byte-order
//! mark is skipped (so it does not count as a column), UTF-16 is named as
//! such rather than blamed on a byte (an editor's "Unicode" save), and
//! invalid UTF-8 is located at its first bad byte ([`TextError`]).
//!
//! Every problem is a [`ReadError`] naming the path and the problem. Callers
//! wrap it in their own error type (a descriptor's `ProblemKind`, the rules
//! file's `RulesErrorKind`, …) and may add what the file is for ("a
//! descriptor is a few hundred bytes").
//!
//! The happy path is `stat`, `open`, `fstat`, one `read` and `close`:
//! identifying a host reads a handful of small files, and system calls are
//! most of its cost.

use std::fmt;
use std::fs::{File, FileType};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::location::Location;

/// The UTF-8 byte-order mark, skipped by [`decode`] and [`text`].
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A file that could not be read: the path and what went wrong.
///
/// Displayed as `path: problem`, or `path:line:column: problem` for a text
/// problem, the form editors jump to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}{problem}",
    path.display(),
    problem.location().map(|l| format!("{}:{}: ", l.line, l.column)).unwrap_or_else(|| " ".into()))]
pub struct ReadError {
    /// The path as given (before following symlinks).
    pub path: PathBuf,
    /// What went wrong.
    pub problem: ReadProblem,
}

impl ReadError {
    fn new(path: &Path, problem: ReadProblem) -> ReadError {
        ReadError {
            path: path.to_path_buf(),
            problem,
        }
    }

    /// True when the file does not exist: for several callers an absent
    /// file is no error (an optional file, a volume that projects only some
    /// files).
    pub fn is_not_found(&self) -> bool {
        self.problem == ReadProblem::NotFound
    }

    /// Where in the file a text problem is; `None` for the others.
    pub fn location(&self) -> Option<Location> {
        self.problem.location()
    }
}

/// What went wrong reading a file (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadProblem {
    /// The path does not exist.
    #[error("file not found")]
    NotFound,
    /// The path is not a regular file.
    #[error("not a regular file: it is {0}")]
    NotAFile(FileKind),
    /// The file holds more than the cap.
    #[error("larger than {cap} bytes")]
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
    /// The file could not be opened or read (permission, I/O error).
    #[error("cannot read: {message}")]
    Io {
        /// The I/O error's kind (`PermissionDenied`, …).
        kind: io::ErrorKind,
        /// The I/O error, as the system says it.
        message: String,
    },
    /// The file is read, but is not UTF-8 text ([`text`] only).
    #[error(transparent)]
    Text(#[from] TextError),
}

impl ReadProblem {
    /// Where in the file a text problem is; `None` for the others.
    pub fn location(&self) -> Option<Location> {
        match self {
            ReadProblem::Text(e) => Some(e.location()),
            _ => None,
        }
    }

    fn io(e: io::Error) -> ReadProblem {
        if e.kind() == io::ErrorKind::NotFound {
            ReadProblem::NotFound
        } else {
            ReadProblem::Io {
                kind: e.kind(),
                message: e.to_string(),
            }
        }
    }
}

/// What a path that is not a regular file is, as messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// A Unix-domain socket.
    Socket,
    /// Anything else that is not a regular file.
    Other,
}

impl FileKind {
    /// `None` for a regular file, else what it is.
    fn of(ft: &FileType) -> Option<FileKind> {
        if ft.is_file() {
            None
        } else if ft.is_dir() {
            Some(FileKind::Directory)
        } else {
            Some(special_kind(ft))
        }
    }
}

#[cfg(unix)]
fn special_kind(ft: &FileType) -> FileKind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Other
    }
}

#[cfg(not(unix))]
fn special_kind(_: &FileType) -> FileKind {
    FileKind::Other
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "a special file",
        })
    }
}

/// Bytes that are not UTF-8 text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The text starts with a UTF-16 byte-order mark (`FF FE` or `FE FF`).
    #[error("UTF-16 text (byte-order mark {:02X} {:02X})", bom[0], bom[1])]
    Utf16 {
        /// The two bytes of the mark.
        bom: [u8; 2],
    },
    /// A byte sequence that is not UTF-8.
    #[error("invalid UTF-8 (byte 0x{byte:02x})")]
    InvalidUtf8 {
        /// The first bad byte.
        byte: u8,
        /// Where it is (a byte-order mark does not count as a column).
        location: Location,
    },
}

impl TextError {
    /// Where the problem is: the first bad byte, or the start for UTF-16.
    pub fn location(&self) -> Location {
        match self {
            TextError::Utf16 { .. } => Location { line: 1, column: 1 },
            TextError::InvalidUtf8 { location, .. } => location.clone(),
        }
    }
}

/// The content of the regular file at `path`, at most `cap` bytes (see the
/// module documentation for the four steps). Errors are
/// [`ReadProblem::NotFound`], [`ReadProblem::NotAFile`],
/// [`ReadProblem::TooLarge`] and [`ReadProblem::Io`].
pub fn bytes(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    read_regular(path, cap).map_err(|problem| ReadError::new(path, problem))
}

/// The content of the regular file at `path` as text: [`bytes`], then the
/// checks of [`decode`] (a UTF-8 byte-order mark is dropped). A text
/// problem is [`ReadProblem::Text`].
pub fn text(path: &Path, cap: u64) -> Result<String, ReadError> {
    let mut bytes = bytes(path, cap)?;
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let problem = text_error(e.as_bytes(), e.utf8_error()).into();
        ReadError::new(path, problem)
    })
}

/// The text of `bytes`: UTF-8, a leading byte-order mark skipped. UTF-16
/// is [`TextError::Utf16`]; any other invalid byte is
/// [`TextError::InvalidUtf8`] with its location. For parsers that take the
/// bytes of a file read elsewhere.
pub fn decode(bytes: &[u8]) -> Result<&str, TextError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| text_error(bytes, e))
}

/// The problem of `bytes` (without a UTF-8 byte-order mark), which `e` says
/// are not UTF-8.
fn text_error(bytes: &[u8], e: std::str::Utf8Error) -> TextError {
    if let [a @ (0xFF | 0xFE), b @ (0xFF | 0xFE), ..] = *bytes {
        if a != b {
            return TextError::Utf16 { bom: [a, b] };
        }
    }
    let good = e.valid_up_to();
    // The prefix up to the first bad byte is UTF-8 by definition.
    let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
    TextError::InvalidUtf8 {
        byte: bytes[good],
        location: Location::at(prefix, good),
    }
}

fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadProblem> {
    let too_large = ReadProblem::TooLarge { cap };
    let regular = |ft: &FileType| match FileKind::of(ft) {
        None => Ok(()),
        Some(kind) => Err(ReadProblem::NotAFile(kind)),
    };
    let meta = std::fs::metadata(path).map_err(ReadProblem::io)?;
    regular(&meta.file_type())?;
    if meta.len() > cap {
        return Err(too_large);
    }
    read_open(path, cap)
}

/// Steps 2 to 4: what the path names *now* is opened, checked and read.
fn read_open(path: &Path, cap: u64) -> Result<Vec<u8>, ReadProblem> {
    let too_large = ReadProblem::TooLarge { cap };
    let mut file = open_nonblocking(path).map_err(ReadProblem::io)?;
    // The path may name another file than at the stat: from here on only
    // the open descriptor counts.
    let meta = file.metadata().map_err(ReadProblem::io)?;
    if let Some(kind) = FileKind::of(&meta.file_type()) {
        return Err(ReadProblem::NotAFile(kind));
    }
    if meta.len() > cap {
        return Err(too_large);
    }
    let want = meta.len() as usize + 1;
    let mut buf = vec![0u8; want];
    let n = loop {
        match file.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadProblem::io(e)),
        }
    };
    buf.truncate(n);
    if n == want {
        // Longer than at the fstat: it is being written. Read on, bounded,
        // rather than hand out a prefix.
        file.take((cap + 1).saturating_sub(n as u64))
            .read_to_end(&mut buf)
            .map_err(ReadProblem::io)?;
    }
    // A short read of a regular file is its end: no probe read is needed.
    if buf.len() as u64 > cap {
        return Err(too_large);
    }
    Ok(buf)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_skips_one_bom_and_locates_bad_bytes() {
        assert_eq!(decode(b"\xEF\xBB\xBFa=1"), Ok("a=1"));
        // Only one mark is a mark; a second is text.
        assert_eq!(decode(b"\xEF\xBB\xBF\xEF\xBB\xBFa"), Ok("\u{feff}a"));
        assert_eq!(
            decode(b"a\n\xEF\xBB\xBFb\xff"),
            Err(TextError::InvalidUtf8 {
                byte: 0xff,
                location: Location { line: 2, column: 3 },
            })
        );
        // Columns count characters, and the mark is not one.
        assert_eq!(
            decode(b"\xEF\xBB\xBF\xc3\xa9\xc3").unwrap_err().location(),
            Location { line: 1, column: 2 }
        );
    }

    #[test]
    fn utf16_is_named_with_its_mark() {
        for bom in [[0xFF, 0xFE], [0xFE, 0xFF]] {
            let mut bytes = bom.to_vec();
            bytes.extend_from_slice(b"a\0=\0");
            let e = decode(&bytes).unwrap_err();
            assert_eq!(e, TextError::Utf16 { bom });
            assert_eq!(e.location(), Location { line: 1, column: 1 });
        }
        assert_eq!(
            decode(b"\xFF\xFE").unwrap_err().to_string(),
            "UTF-16 text (byte-order mark FF FE)"
        );
        // Two equal bytes are no mark, just bad UTF-8.
        assert!(matches!(
            decode(b"\xFF\xFF"),
            Err(TextError::InvalidUtf8 { byte: 0xff, .. })
        ));
    }

    /// A FIFO swapped in between the stat and the open: the open must not
    /// wait for a writer, and the descriptor's fstat must refuse it.
    #[cfg(unix)]
    #[test]
    fn a_fifo_met_only_at_the_open_is_refused_without_blocking() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_open(&fifo, 64));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the open blocked on a FIFO without a writer");
        assert_eq!(got, Err(ReadProblem::NotAFile(FileKind::Fifo)));
        let got = read_open(dir.path(), 64);
        assert_eq!(got, Err(ReadProblem::NotAFile(FileKind::Directory)));
    }

    #[test]
    fn errors_name_the_path_and_the_problem() {
        let e = ReadError::new(Path::new("/x/f"), ReadProblem::TooLarge { cap: 10 });
        assert_eq!(e.to_string(), "/x/f: larger than 10 bytes");
        let e = ReadError::new(Path::new("/x/f"), ReadProblem::NotAFile(FileKind::Fifo));
        assert_eq!(e.to_string(), "/x/f: not a regular file: it is a FIFO");
        let text = TextError::InvalidUtf8 {
            byte: 0xc3,
            location: Location { line: 3, column: 7 },
        };
        let e = ReadError::new(Path::new("/x/f"), text.into());
        assert_eq!(e.to_string(), "/x/f:3:7: invalid UTF-8 (byte 0xc3)");
        assert!(!e.is_not_found());
    }
}
