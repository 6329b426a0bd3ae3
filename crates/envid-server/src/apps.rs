//! App credentials: who may register what (`envid serve --apps FILE`).
//!
//! ```toml
//! [[app]]
//! name = "payment"
//! envs = ["prod"]                 # the envs this app's tokens may claim
//! idcs = ["cn5", "cn6"]           # optional: any idc when absent
//! token_sha256 = ["9f86d0…"]      # hex SHA-256 of each valid token (several: rotation)
//!
//! [[operator]]                    # e.g. the release system: any IP, any app
//! name = "release"
//! token_sha256 = ["…"]
//! ```
//!
//! Only digests are kept: a leaked apps file lets nobody register. A token is
//! hashed once per request and compared with every stored digest in constant
//! time ([`subtle`]), so neither the length nor the first differing byte of
//! a token shows in the answer's timing. The file is read with the bounded
//! reader (see [`load`]) and polled like the registry (see `AppsReloader`
//! and `poll.rs`); a broken new file is
//! logged and the old credentials stay.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use envid::location::{LineIndex, Location};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::metrics::Metrics;
use crate::poll::{FileWatch, Poll};
use crate::validation::string_problem;

/// A token's SHA-256 digest.
type Digest32 = [u8; 32];

/// What a principal may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// An application: registers its own IP, for its own name, in its envs.
    App {
        /// The envs its tokens may claim.
        envs: Vec<String>,
        /// The idcs its tokens may claim; `None`: any.
        idcs: Option<Vec<String>>,
    },
    /// An operator (a release system): any IP, for any app.
    Operator,
}

/// Who a token belongs to. Holds no token and no digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The app's (or operator's) name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// True for an operator.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// The parsed apps file.
#[derive(Clone, Default)]
pub struct Apps {
    principals: Vec<Principal>,
    /// (digest, index into `principals`) for every token.
    digests: Vec<(Digest32, u32)>,
}

impl fmt::Debug for Apps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apps")
            .field("principals", &self.principals)
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl Apps {
    /// The principal `token` belongs to, if any. Compares the token's digest
    /// with every stored digest without an early exit.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let given: Digest32 = Sha256::digest(token.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (digest, i) in &self.digests {
            let eq = digest.ct_eq(&given);
            index.conditional_assign(i, eq);
            found |= eq;
        }
        bool::from(found).then(|| &self.principals[index as usize])
    }

    /// The principals, in file order.
    pub fn principals(&self) -> &[Principal] {
        &self.principals
    }
}

/// The hex SHA-256 of `token`: what an apps file stores for it.
pub fn token_sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One problem of an apps file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppsProblem {
    /// Where (1-based line and column), when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

/// An apps file that could not be used, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppsError {
    /// The file.
    pub path: PathBuf,
    /// Every problem, in file order; never empty.
    pub problems: Vec<AppsProblem>,
}

impl fmt::Display for AppsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let one = |f: &mut fmt::Formatter<'_>, p: &AppsProblem| match &p.location {
            Some(l) => write!(f, "{path}:{}:{}: {}", l.line, l.column, p.message),
            None => write!(f, "{path}: {}", p.message),
        };
        match self.problems.as_slice() {
            [p] => {
                f.write_str("invalid apps file ")?;
                one(f, p)
            }
            many => {
                write!(f, "invalid apps file {path}: {} problems", many.len())?;
                for p in many {
                    f.write_str("\n  ")?;
                    one(f, p)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for AppsError {}

/// The largest apps file read. An app takes about 200 bytes, so this is
/// tens of thousands of apps, each with several digests: far above any file
/// in use, so the cap only refuses a wrong or runaway file.
pub const MAX_APPS_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// An apps file as read: the credentials, and the bytes they were parsed
/// from (the reloader compares later reads with them).
#[derive(Debug)]
pub struct AppsFile {
    /// The credentials.
    pub apps: Apps,
    /// The file's content, as read.
    pub bytes: Vec<u8>,
}

/// Reads the apps file at `path` with the bounded reader ([`envid::read`],
/// at most [`MAX_APPS_FILE_BYTES`]) and parses it (see [`parse_apps`]):
/// what the service does at start and at every reload. A FIFO, a device or
/// a directory is refused without blocking, naming what it is.
pub fn load(path: &Path) -> Result<AppsFile, AppsError> {
    let bytes = read(path)?;
    let apps = parse_bytes(&bytes, path)?;
    Ok(AppsFile { apps, bytes })
}

/// Reads and parses an apps file: [`load`]'s credentials.
pub fn load_apps(path: &Path) -> Result<Apps, AppsError> {
    load(path).map(|file| file.apps)
}

fn one_problem(path: &Path, location: Option<Location>, message: String) -> AppsError {
    AppsError {
        path: path.to_path_buf(),
        problems: vec![AppsProblem { location, message }],
    }
}

/// The bytes of the apps file at `path`, bounded.
fn read(path: &Path) -> Result<Vec<u8>, AppsError> {
    envid::read::bytes(path, MAX_APPS_FILE_BYTES)
        .map_err(|e| one_problem(path, None, e.problem.to_string()))
}

/// Parses the bytes of an apps file: UTF-8 (a byte-order mark skipped),
/// then [`parse_apps`].
fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Apps, AppsError> {
    let text = envid::read::decode(bytes)
        .map_err(|e| one_problem(path, Some(e.location()), e.to_string()))?;
    parse_apps(text, path)
}

/// Parses the text of an apps file (the format is in the module docs);
/// `path` only names the file in errors. Every problem is reported with
/// its line and column: unknown keys, missing or empty names, envs or
/// hashes, a hash that is not 64 hex digits, a plain `token` (only hashes
/// belong here), two entries with one name, one hash under two names.
pub fn parse_apps(text: &str, path: &Path) -> Result<Apps, AppsError> {
    use toml::de::{DeTable, DeValue};

    let lines = LineIndex::new(text);
    let mut problems: Vec<AppsProblem> = Vec::new();
    let mut problem = |span: Option<std::ops::Range<usize>>, message: String| {
        problems.push(AppsProblem {
            location: span.map(|s| lines.at(s.start)),
            message,
        })
    };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let msg = e.message().trim().to_string();
            problem(e.span(), format!("invalid TOML: {msg}"));
            return Err(AppsError {
                path: path.to_path_buf(),
                problems,
            });
        }
    };

    let mut apps = Apps::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut seen_digests: HashMap<Digest32, String> = HashMap::new();
    for (key, value) in doc.get_ref() {
        let kind = key.get_ref().as_ref();
        if kind != "app" && kind != "operator" {
            problem(
                Some(key.span()),
                format!("unknown top-level key {kind:?} (expected [[app]] and [[operator]])"),
            );
            continue;
        }
        let DeValue::Array(entries) = value.get_ref() else {
            problem(
                Some(value.span()),
                format!("`{kind}` must be an array of tables ([[{kind}]])"),
            );
            continue;
        };
        for entry in entries.iter() {
            let Some(table) = entry.get_ref().as_table() else {
                problem(
                    Some(entry.span()),
                    format!("each [[{kind}]] must be a table"),
                );
                continue;
            };
            let mut name: Option<String> = None;
            let mut envs: Option<Vec<String>> = None;
            let mut idcs: Option<Vec<String>> = None;
            let mut digests: Vec<Digest32> = Vec::new();
            let mut had_hashes = false;
            let mut ok = true;
            // A list of checked strings, or the problems with it.
            let strings = |v: &toml::Spanned<DeValue<'_>>,
                           field: &str,
                           problem: &mut dyn FnMut(Option<std::ops::Range<usize>>, String)|
             -> Option<Vec<String>> {
                let DeValue::Array(items) = v.get_ref() else {
                    problem(
                        Some(v.span()),
                        format!("`{field}` must be a list of strings"),
                    );
                    return None;
                };
                let mut out = Vec::new();
                let mut good = true;
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => match string_problem(s) {
                            Some(m) => {
                                good = false;
                                problem(Some(item.span()), format!("`{field}`: {s:?} {m}"));
                            }
                            None => out.push(s.to_string()),
                        },
                        None => {
                            good = false;
                            problem(Some(item.span()), format!("`{field}` must hold strings"));
                        }
                    }
                }
                if good && out.is_empty() {
                    problem(Some(v.span()), format!("`{field}` must not be empty"));
                    good = false;
                }
                good.then_some(out)
            };
            for (k, v) in table {
                let field = k.get_ref().as_ref();
                match (kind, field) {
                    (_, "name") => match v.get_ref().as_str() {
                        Some(s) => match string_problem(s) {
                            Some(m) => {
                                ok = false;
                                problem(Some(v.span()), format!("`name` {s:?} {m}"));
                            }
                            None => name = Some(s.to_string()),
                        },
                        None => {
                            ok = false;
                            problem(Some(v.span()), "`name` must be a string".into());
                        }
                    },
                    ("app", "envs") => {
                        envs = strings(v, "envs", &mut problem);
                        ok &= envs.is_some();
                    }
                    ("app", "idcs") => {
                        idcs = strings(v, "idcs", &mut problem);
                        ok &= idcs.is_some();
                    }
                    (_, "token_sha256") => {
                        had_hashes = true;
                        match strings(v, "token_sha256", &mut problem) {
                            Some(list) => {
                                let DeValue::Array(items) = v.get_ref() else {
                                    unreachable!("checked by strings()")
                                };
                                for (hex, item) in list.iter().zip(items.iter()) {
                                    match parse_hex32(hex) {
                                        Some(d) => digests.push(d),
                                        None => {
                                            ok = false;
                                            problem(
                                                Some(item.span()),
                                                "`token_sha256`: not a SHA-256 in hex (64 hex digits; `printf %s \"$TOKEN\" | sha256sum`)".into(),
                                            );
                                        }
                                    }
                                }
                            }
                            None => ok = false,
                        }
                    }
                    (_, "token" | "tokens") => {
                        ok = false;
                        problem(
                            Some(k.span()),
                            format!("`{field}`: tokens are never stored here; give their SHA-256 in `token_sha256`"),
                        );
                    }
                    _ => {
                        ok = false;
                        let known = if kind == "app" {
                            "name, envs, idcs, token_sha256"
                        } else {
                            "name, token_sha256"
                        };
                        problem(
                            Some(k.span()),
                            format!("unknown key {field:?} in [[{kind}]] (known: {known})"),
                        );
                    }
                }
            }
            let Some(name) = name else {
                if !table.keys().any(|k| k.get_ref() == "name") {
                    problem(Some(entry.span()), format!("[[{kind}]] without `name`"));
                }
                continue;
            };
            if kind == "app" && envs.is_none() && !table.keys().any(|k| k.get_ref() == "envs") {
                ok = false;
                problem(
                    Some(entry.span()),
                    format!("[[app]] {name:?} without `envs` (the envs its tokens may claim)"),
                );
            }
            if !had_hashes {
                ok = false;
                problem(
                    Some(entry.span()),
                    format!("[[{kind}]] {name:?} without `token_sha256`"),
                );
            }
            let entry_line = lines.at(entry.span().start).line;
            if let Some(first) = names.get(&name) {
                ok = false;
                problem(
                    Some(entry.span()),
                    format!("{name:?} is defined twice (first at line {first})"),
                );
            } else {
                names.insert(name.clone(), entry_line);
            }
            for d in &digests {
                if let Some(other) = seen_digests.get(d) {
                    ok = false;
                    problem(
                        Some(entry.span()),
                        format!("a token hash of {name:?} is also one of {other:?}; one token must name one app"),
                    );
                } else {
                    seen_digests.insert(*d, name.clone());
                }
            }
            if !ok {
                continue;
            }
            let role = if kind == "app" {
                Role::App {
                    envs: envs.unwrap_or_default(),
                    idcs,
                }
            } else {
                Role::Operator
            };
            let index = apps.principals.len() as u32;
            apps.principals.push(Principal { name, role });
            apps.digests.extend(digests.into_iter().map(|d| (d, index)));
        }
    }

    if problems.is_empty() {
        Ok(apps)
    } else {
        problems.sort_by_key(|p| p.location.as_ref().map(|l| (l.line, l.column)));
        Err(AppsError {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn parse_hex32(s: &str) -> Option<Digest32> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hex = |c: u8| (c as char).to_digit(16);
        out[i] = (hex(pair[0])? * 16 + hex(pair[1])?) as u8;
    }
    Some(out)
}

/// The credentials being served, swapped whole on a reload.
#[derive(Debug, Default)]
pub(crate) struct AppsHandle {
    current: RwLock<Arc<Apps>>,
}

impl AppsHandle {
    pub(crate) fn new(apps: Apps) -> AppsHandle {
        AppsHandle {
            current: RwLock::new(Arc::new(apps)),
        }
    }

    pub(crate) fn get(&self) -> Arc<Apps> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, apps: Apps) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(apps);
    }
}

/// Polls the apps file (as the registry reloader polls the registry): a
/// changed file that parses replaces the credentials; one that does not is
/// logged once and the old credentials stay.
pub(crate) struct AppsReloader {
    file: FileWatch,
    handle: Arc<AppsHandle>,
    metrics: Arc<Metrics>,
    last_error: Option<String>,
}

impl AppsReloader {
    pub(crate) fn new(
        path: PathBuf,
        handle: Arc<AppsHandle>,
        metrics: Arc<Metrics>,
        loaded: &[u8],
    ) -> AppsReloader {
        AppsReloader {
            file: FileWatch::new(path, |p| read(p).map_err(|e| e.to_string()), loaded),
            handle,
            metrics,
            last_error: None,
        }
    }

    fn fail(&mut self, message: String) {
        if self.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(
                path = %self.file.path().display(),
                error = %message,
                "apps file reload failed; keeping the old credentials"
            );
            self.metrics.apps_reload(false);
            self.last_error = Some(message);
        }
    }
}

impl Poll for AppsReloader {
    const NAME: &'static str = "apps file reloader";

    fn poll(&mut self) {
        let bytes = match self.file.changed() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => return self.fail(e),
        };
        match parse_bytes(&bytes, self.file.path()) {
            Ok(apps) => {
                self.last_error = None;
                self.metrics.apps_reload(true);
                tracing::info!(
                    path = %self.file.path().display(),
                    principals = apps.principals.len(),
                    "apps file reloaded"
                );
                self.handle.set(apps);
            }
            Err(e) => self.fail(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENT: &str = "payment-token";

    fn file() -> String {
        format!(
            "[[app]]\nname = \"payment\"\nenvs = [\"prod\"]\nidcs = [\"cn5\"]\ntoken_sha256 = [\"{}\"]\n\n[[operator]]\nname = \"release\"\ntoken_sha256 = [\"{}\"]\n",
            token_sha256_hex(PAYMENT),
            token_sha256_hex("release-token"),
        )
    }

    #[test]
    fn tokens_name_their_principal() {
        let apps = parse_apps(&file(), Path::new("apps.toml")).unwrap();
        let p = apps.authenticate(PAYMENT).unwrap();
        assert_eq!(p.name, "payment");
        assert!(!p.is_operator());
        assert!(apps.authenticate("release-token").unwrap().is_operator());
        assert!(apps.authenticate("payment-token ").is_none());
        assert!(apps.authenticate("").is_none());
        assert!(!format!("{apps:?}").contains(&token_sha256_hex(PAYMENT)));
    }

    #[test]
    fn sha256_of_test_is_the_known_one() {
        assert_eq!(
            token_sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn an_apps_path_that_is_no_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_apps(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid apps file {}: not a regular file: it is a directory",
                dir.path().display()
            )
        );
        let path = dir.path().join("apps.toml");
        std::fs::write(&path, b"[[app]]\nname = \"p\xffy\"\n").unwrap();
        let e = load_apps(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid apps file {}:2:10: invalid UTF-8 (byte 0xff)",
                path.display()
            )
        );
    }

    #[test]
    fn every_problem_is_located() {
        let text = "[[app]]\nname = \"a\"\nenvs = []\ntoken = \"x\"\ntoken_sha256 = [\"abc\"]\n\n[[app]]\nname = \"a\"\nenvs = [\"prod\"]\ntoken_sha256 = [\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"]\n[[ops]]\n";
        let e = parse_apps(text, Path::new("apps.toml")).unwrap_err();
        let lines: Vec<usize> = e
            .problems
            .iter()
            .map(|p| p.location.as_ref().unwrap().line)
            .collect();
        assert_eq!(lines, vec![3, 4, 5, 7, 11], "{e}");
        assert!(e.to_string().contains("apps.toml:3:"), "{e}");
    }
}
