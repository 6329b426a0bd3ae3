//! Apollo's `server.properties`: the path for teams coming from Apollo.
//!
//! Apollo (the configuration center) reads a host's environment from
//! `/opt/settings/server.properties` (`env=PRO`, `idc=cn5`), or from the file
//! named by the JVM property `apollo.path.server.properties` or the variable
//! `APOLLO_PATH_SERVER_PROPERTIES`. When no envid descriptor is found, envid
//! reads the same file for `env` and `idc`, so a host set up for Apollo is
//! identified without a second file. Apollo's env names (`PRO`, `FAT`, `UAT`,
//! `FWS`, `LPT`, `TOOLS`, `DEV`, `LOCAL`) are in the alias table of
//! [`crate::EnvType`].
//!
//! The file is Java properties (`key=value`, `key: value`, `#` and `!`
//! comments, `\` continuations and escapes), read as UTF-8 as Apollo does,
//! with the descriptor's limits: a regular file of at most 64 KiB, read by
//! the bounded reader ([`crate::read`]).

use std::path::{Path, PathBuf};

use java_properties::PropertiesIter;

use crate::descriptor::{DescriptorError, Problem, ProblemKind};
use crate::location::Location;
use crate::model::Field;
use crate::read::ReadProblem;

/// Apollo's default location.
pub const DEFAULT_PATH: &str = "/opt/settings/server.properties";

/// The JVM property naming another file, as Apollo reads it.
pub const PATH_PROPERTY: &str = "apollo.path.server.properties";

/// The environment variable naming another file, as Apollo reads it.
pub const PATH_VAR: &str = "APOLLO_PATH_SERVER_PROPERTIES";

/// Largest file read (the descriptor's cap).
pub const MAX_LEN: u64 = 64 * 1024;

/// What a `server.properties` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProperties {
    /// The file read.
    pub path: PathBuf,
    /// `env`, trimmed; `None` when absent or empty.
    pub env: Option<String>,
    /// `idc`, trimmed; `None` when absent or empty.
    pub idc: Option<String>,
}

/// Reads `path`; `Ok(None)` when it does not exist. A file that exists but
/// cannot be used (not a regular file, too large, unreadable, not UTF-8, a
/// value with control characters) is an error naming the file and the line.
pub fn read(path: &Path) -> Result<Option<ServerProperties>, DescriptorError> {
    let fail =
        |kind, location: Option<Location>, field: Option<Field>, message: String| DescriptorError {
            path: path.to_path_buf(),
            warnings: Vec::new(),
            problems: vec![Problem {
                kind,
                field: field.map(|f| f.as_str().to_string()),
                location,
                message,
            }],
        };
    let bytes = match crate::read::bytes(path, MAX_LEN) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            let message = match e.problem {
                ReadProblem::NotAFile(_) => {
                    format!("{} (expected Apollo's server.properties)", e.problem)
                }
                ref problem => problem.to_string(),
            };
            return Err(fail(ProblemKind::of_read(&e.problem), None, None, message));
        }
    };
    if let Err(e) = crate::read::decode(&bytes) {
        return Err(fail(
            ProblemKind::InvalidUtf8,
            Some(e.location()),
            None,
            e.to_string(),
        ));
    }
    let mut props = ServerProperties {
        path: path.to_path_buf(),
        env: None,
        idc: None,
    };
    // The bytes as read, a byte-order mark included: Apollo's Java reader
    // keeps one as part of the first key, and envid reads what Apollo reads.
    for line in PropertiesIter::new_with_encoding(&bytes[..], encoding_rs::UTF_8) {
        let line = line.map_err(|e| {
            let at = e.line_number().map(|line| Location { line, column: 1 });
            fail(ProblemKind::Syntax, at, None, e.to_string())
        })?;
        let number = line.line_number();
        let java_properties::LineContent::KVPair(key, value) = line.consume_content() else {
            continue;
        };
        let (field, slot) = match key.as_str() {
            "env" => (Field::Env, &mut props.env),
            "idc" => (Field::Idc, &mut props.idc),
            _ => continue,
        };
        let value = value.trim();
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(fail(
                ProblemKind::InvalidValue,
                Some(Location {
                    line: number,
                    column: 1,
                }),
                Some(field),
                format!(
                    "{field} has a control character (U+{:04X}); expected a name such as PRO or cn5",
                    c as u32
                ),
            ));
        }
        *slot = (!value.is_empty()).then(|| value.to_string());
    }
    Ok(Some(props))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_env_and_idc_like_java_properties() {
        let (_d, path) = write(b"# Apollo\n! old comment\nenv = PRO\nidc:cn5\nother=1\n");
        let p = read(&path).unwrap().unwrap();
        assert_eq!(p.env.as_deref(), Some("PRO"));
        assert_eq!(p.idc.as_deref(), Some("cn5"));
    }

    #[test]
    fn continuations_and_escapes_and_empty_values() {
        let (_d, path) = write(b"env=F\\\n   AT\nidc=\n");
        let p = read(&path).unwrap().unwrap();
        assert_eq!(p.env.as_deref(), Some("FAT"));
        assert_eq!(p.idc, None);
    }

    #[test]
    fn a_missing_file_is_none_and_bad_files_are_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("nope")).unwrap(), None);
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ProblemKind::NotAFile);
        let (_d, path) = write(b"env=PRO\nidc=\xff\n");
        let e = read(&path).unwrap_err();
        assert_eq!(e.kind(), ProblemKind::InvalidUtf8);
        assert_eq!(e.problems[0].location.as_ref().map(|l| l.line), Some(2));
        let (_d, path) = write(b"idc=cn\\u00075\n");
        let e = read(&path).unwrap_err();
        assert_eq!(e.kind(), ProblemKind::InvalidValue);
        assert!(e.to_string().contains("U+0007"), "{e}");
    }
}
