//! App credentials: who may register what (`envid serve --apps FILE`).
//!
//! ```toml
//! [[app]]
//! name = "payment"
//! envs = ["beta", "prod"]         # the most any of its credentials may claim
//! idcs = ["cn5", "cn6"]           # optional: any idc when absent
//! sub_envs = ["blue", "green"]    # optional (see below)
//!
//! [[app.token]]                   # one credential: its own scope, label, expiry
//! label = "prod-deployer"         # optional; shown in metrics and logs, never the token
//! sha256 = "9f86d0…"              # hex SHA-256 of the token
//! envs = ["prod"]                 # optional: narrows the app's envs (idcs, sub_envs too)
//! not_after = 2026-01-31T00:00:00Z  # optional: refused after it
//!
//! [[app.token]]
//! label = "beta-ci"
//! sha256 = "…"
//! envs = ["beta"]
//!
//! [[operator]]                    # e.g. the release system: any IP, any app
//! name = "release"
//! token_sha256 = ["…"]            # the short form: credentials with the entry's
//!                                 # whole scope, labelled token_sha256[0], …
//! ```
//!
//! One app, several credentials, each with its own scope: a `[[app.token]]`
//! sub-table per credential. A credential's `envs`, `idcs` and `sub_envs`
//! narrow the app's and never widen them (a value outside the app's list is
//! refused), so the app entry stays the one place that says the most the
//! app may claim. Two `[[app]]` entries with one name are refused, naming
//! the sub-table form. `sub_envs` absent means any sub env may be
//! *registered* (descriptors have always sent one), but a signed identity
//! carries `sub_env` only when the credential lists `sub_envs`: a verifier
//! never sees a sub env nobody checked.
//!
//! Only digests are kept: a leaked apps file lets nobody register. A token is
//! hashed once per request and compared with every stored digest in constant
//! time ([`subtle`]), so neither the length nor the first differing byte of
//! a token shows in the answer's timing. The file is read with the bounded
//! reader (see [`load`]) and polled like the registry (see `AppsReloader`
//! and `poll.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use envid::location::Location;
use envid::protocol::HostRecord;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::metrics::Metrics;
use crate::poll::{FileWatch, Poll};

mod parse;

pub use parse::parse_apps;

/// A token's SHA-256 digest.
type Digest32 = [u8; 32];

/// What a credential of an app may claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The envs it may claim.
    pub envs: Vec<String>,
    /// The idcs it may claim; `None`: any.
    pub idcs: Option<Vec<String>>,
    /// The sub envs it may claim; `None`: any may be registered, and none
    /// is put in a signed identity.
    pub sub_envs: Option<Vec<String>>,
}

impl Scope {
    /// Whether a registration in `env` and `idc` is within this scope: what
    /// registering, renewing and removing it need.
    pub fn covers(&self, env: &str, idc: &str) -> bool {
        self.envs.iter().any(|e| e == env)
            && self
                .idcs
                .as_ref()
                .is_none_or(|l| l.iter().any(|i| i == idc))
    }

    /// Whether `sub_env` may be registered.
    pub fn allows_sub_env(&self, sub_env: &str) -> bool {
        self.sub_envs
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == sub_env))
    }

    /// Whether `record` is within this scope (env, idc and sub env).
    pub fn allows(&self, record: &HostRecord) -> bool {
        self.covers(&record.env, &record.idc)
            && record
                .sub_env
                .as_deref()
                .is_none_or(|s| self.allows_sub_env(s))
    }
}

impl fmt::Display for Scope {
    /// `envs beta, prod; idcs any; sub_envs any`: what refusals name (the
    /// caller's own scope, never the token).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |l: Option<&Vec<String>>| l.map_or("any".to_string(), |l| l.join(", "));
        write!(
            f,
            "envs {}; idcs {}; sub_envs {}",
            self.envs.join(", "),
            list(self.idcs.as_ref()),
            list(self.sub_envs.as_ref())
        )
    }
}

/// What a credential may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A credential of an application: registers its own IP, for its own
    /// name, within its scope.
    App(Scope),
    /// An operator (a release system): any IP, for any app.
    Operator,
}

/// One credential: whose it is and what it may do. Holds no token and no
/// digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The app's (or operator's) name.
    pub name: String,
    /// The credential's label (its `label`, else where it is written:
    /// `token_sha256[0]`, `token[1]`): metrics and logs name it, never the
    /// token.
    pub label: String,
    /// What it may do.
    pub role: Role,
    /// When it stops being accepted (Unix seconds), if ever.
    pub not_after: Option<u64>,
}

/// Who a token belongs to: the credential it is.
pub type Principal = Credential;

impl Credential {
    /// True for an operator.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The scope of an app's credential (`None`: an operator's).
    pub fn scope(&self) -> Option<&Scope> {
        match &self.role {
            Role::App(s) => Some(s),
            Role::Operator => None,
        }
    }

    /// Whether it has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.not_after.is_some_and(|t| now > t)
    }
}

/// The parsed apps file.
#[derive(Clone, Default)]
pub struct Apps {
    credentials: Vec<Credential>,
    /// (digest, index into `credentials`) for every token.
    digests: Vec<(Digest32, u32)>,
}

impl fmt::Debug for Apps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apps")
            .field("credentials", &self.credentials)
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl Apps {
    /// The credential `token` is, if any (an expired one too: the caller
    /// says it expired). Compares the token's digest with every stored
    /// digest without an early exit.
    pub fn authenticate(&self, token: &str) -> Option<&Credential> {
        let given: Digest32 = Sha256::digest(token.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (digest, i) in &self.digests {
            let eq = digest.ct_eq(&given);
            index.conditional_assign(i, eq);
            found |= eq;
        }
        bool::from(found).then(|| &self.credentials[index as usize])
    }

    /// The credentials, in file order.
    pub fn principals(&self) -> &[Credential] {
        &self.credentials
    }

    /// How many apps and operators the file names.
    pub fn names(&self) -> usize {
        let mut names: Vec<&str> = self.credentials.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    fn push(&mut self, digest: Digest32, credential: Credential) {
        let index = self.credentials.len() as u32;
        self.credentials.push(credential);
        self.digests.push((digest, index));
    }
}

/// `2026-01-31T00:00:00Z` for Unix seconds: how refusals and logs name a
/// credential's `not_after`.
pub(crate) fn rfc3339(unix: u64) -> String {
    crate::utc::rfc3339(i64::try_from(unix).unwrap_or(i64::MAX))
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
    check_mode(path).map_err(|m| one_problem(path, None, m))?;
    let bytes = read(path)?;
    let apps = parse_bytes(&bytes, path)?;
    Ok(AppsFile { apps, bytes })
}

/// Refuses an apps file that group or others may write: whoever can write
/// it can grant a token of their own any app. Only the mode is checked
/// (the file holds digests, so reading it is harmless); on a symbolic link
/// (a Kubernetes ConfigMap's `..data`), the file it points to.
fn check_mode(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(format!(
                    "writable by group or others (mode {mode:04o}): whoever can write it can give \
                     a token of their own any app; run `chmod go-w {}` (0600 or 0644)",
                    path.display()
                ));
            }
        }
    }
    let _ = path;
    Ok(())
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

/// The apps file on disk is not the one in use: what `/healthz` shows.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct StaleApps {
    /// Always true: `/healthz` says `"stale": true`.
    pub(crate) stale: bool,
    /// When the file on disk was first refused (Unix ms).
    pub(crate) since: u64,
    /// Why it is refused.
    pub(crate) error: String,
    /// Credentials revoked anyway, because the refused file no longer
    /// holds their digest.
    pub(crate) revoked: usize,
}

/// The credentials being served, swapped whole on a reload, and whether
/// they are an older file's.
#[derive(Debug, Default)]
pub(crate) struct AppsHandle {
    current: RwLock<Arc<Apps>>,
    stale: RwLock<Option<StaleApps>>,
}

impl AppsHandle {
    pub(crate) fn new(apps: Apps) -> AppsHandle {
        AppsHandle {
            current: RwLock::new(Arc::new(apps)),
            stale: RwLock::default(),
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

    /// Why the credentials in use are not the file's, if they are not.
    pub(crate) fn stale(&self) -> Option<StaleApps> {
        self.stale.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_stale(&self, stale: Option<StaleApps>) {
        *self.stale.write().unwrap_or_else(|e| e.into_inner()) = stale;
    }
}

impl Apps {
    /// These credentials less those whose digest is not in `kept`.
    fn retain(&self, kept: &std::collections::HashSet<Digest32>) -> Apps {
        let mut out = Apps::default();
        for (digest, i) in &self.digests {
            if kept.contains(digest) {
                out.push(*digest, self.credentials[*i as usize].clone());
            }
        }
        out
    }
}

/// Polls the apps file (as the registry reloader polls the registry): a
/// changed file that parses (and that group and others cannot write)
/// replaces the credentials. One that is refused keeps the old credentials,
/// and `/healthz` (`apps_file.stale`) and `/metrics`
/// (`envid_apps_file_stale`) say so until a good file is in, but a
/// revocation is not lost to an unrelated typo: a credential whose digest
/// the refused file no longer holds anywhere is removed, unless that would
/// remove more than half of them (a truncated or emptied file, the same
/// rule as the registry's mass deletion), when nothing is removed.
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

    /// The file on disk is refused for `message`; `bytes` is its content
    /// when it could be read.
    fn fail(&mut self, message: String, bytes: Option<&[u8]>) {
        // Read again next time: the file is judged afresh once its mode or
        // content is fixed.
        self.file.forget();
        let revoked = bytes.map_or(0, |b| self.revoke(b));
        let first = self.last_error.as_deref() != Some(message.as_str());
        if first {
            tracing::warn!(
                path = %self.file.path().display(),
                error = %message,
                "apps file refused; keeping the credentials in use (less any it revokes)"
            );
            self.metrics.apps_reload(false);
            self.last_error = Some(message.clone());
        }
        let before = self.handle.stale();
        self.handle.set_stale(Some(StaleApps {
            stale: true,
            since: before
                .as_ref()
                .map_or_else(crate::store::now_unix_ms, |s| s.since),
            error: message,
            revoked: before.map_or(0, |s| s.revoked) + revoked,
        }));
        self.metrics.apps_file_stale.set(1);
    }

    /// Removes the credentials whose digest the refused content `bytes`
    /// no longer holds (see the type's docs); how many.
    fn revoke(&self, bytes: &[u8]) -> usize {
        let Ok(text) = envid::read::decode(bytes) else {
            return 0;
        };
        let current = self.handle.get();
        let kept = current.retain(&parse::digests_in(text));
        let (total, removed) = (
            current.digests.len(),
            current.digests.len() - kept.digests.len(),
        );
        if removed == 0 {
            return 0;
        }
        if crate::protection::is_mass_delete(total, removed) {
            tracing::warn!(
                path = %self.file.path().display(),
                removed,
                total,
                "the refused apps file lacks most credentials (truncated?); revoking none"
            );
            return 0;
        }
        let gone: Vec<String> = current
            .credentials
            .iter()
            .filter(|c| !kept.credentials.contains(c))
            .map(|c| format!("{}/{}", c.name, c.label))
            .collect();
        tracing::warn!(
            path = %self.file.path().display(),
            revoked = ?gone,
            "revoked the credentials the refused apps file no longer holds"
        );
        self.handle.set(kept);
        removed
    }
}

impl Poll for AppsReloader {
    const NAME: &'static str = "apps file reloader";

    fn poll(&mut self) {
        let mode = check_mode(self.file.path());
        let bytes = match self.file.changed() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => match mode {
                Ok(()) => return,
                Err(e) => return self.fail(e, None),
            },
            Err(e) => return self.fail(e, None),
        };
        if let Err(e) = mode {
            return self.fail(e, Some(&bytes));
        }
        match parse_bytes(&bytes, self.file.path()) {
            Ok(apps) => {
                self.last_error = None;
                self.metrics.apps_reload(true);
                self.metrics.apps_file_stale.set(0);
                self.handle.set_stale(None);
                tracing::info!(
                    path = %self.file.path().display(),
                    credentials = apps.principals().len(),
                    "apps file reloaded"
                );
                self.handle.set(apps);
            }
            Err(e) => self.fail(e.to_string(), Some(&bytes)),
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
    fn each_credential_has_its_own_scope_label_and_expiry() {
        let text = format!(
            "[[app]]\nname = \"web\"\nenvs = [\"beta\", \"prod\"]\nsub_envs = [\"blue\"]\n\
             [[app.token]]\nlabel = \"beta-ci\"\nsha256 = \"{}\"\nenvs = [\"beta\"]\n\
             [[app.token]]\nsha256 = \"{}\"\nenvs = [\"prod\"]\nidcs = [\"cn5\"]\nnot_after = 2026-01-31T01:00:00+01:00\n",
            token_sha256_hex("b"),
            token_sha256_hex("p"),
        );
        let apps = parse_apps(&text, Path::new("apps.toml")).unwrap();
        let b = apps.authenticate("b").unwrap();
        assert_eq!((b.name.as_str(), b.label.as_str()), ("web", "beta-ci"));
        let scope = b.scope().unwrap();
        assert!(scope.covers("beta", "any") && !scope.covers("prod", "any"));
        assert_eq!(scope.sub_envs.as_deref(), Some(&["blue".to_string()][..]));
        assert_eq!(b.not_after, None);
        let p = apps.authenticate("p").unwrap();
        assert_eq!(p.label, "token[1]");
        assert!(p.scope().unwrap().covers("prod", "cn5"));
        assert!(!p.scope().unwrap().covers("prod", "cn6"));
        assert_eq!(p.not_after, Some(1_769_817_600));
        assert!(p.expired(1_769_817_601) && !p.expired(1_769_817_600));
        assert_eq!(rfc3339(1_769_817_600), "2026-01-31T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
        assert_eq!(
            p.scope().unwrap().to_string(),
            "envs prod; idcs cn5; sub_envs blue"
        );
        assert_eq!(apps.names(), 1);
    }

    #[test]
    fn a_credential_never_widens_its_apps_scope() {
        let token = |t: &str, rest: &str| {
            format!(
                "[[app.token]]\nsha256 = \"{}\"\n{rest}",
                token_sha256_hex(t)
            )
        };
        let text = format!(
            "[[app]]\nname = \"web\"\nenvs = [\"beta\"]\n{}{}{}{}\n[[app]]\nname = \"web\"\nenvs = [\"beta\"]\ntoken_sha256 = [\"{}\"]\n",
            token("a", "envs = [\"prod\"]\n"),
            token("b", "not_after = 2026-01-31\n"),
            token("c", "label = \"x\"\n"),
            token("d", "label = \"x\"\n"),
            token_sha256_hex("e"),
        );
        let e = parse_apps(&text, Path::new("apps.toml"))
            .unwrap_err()
            .to_string();
        for needle in [
            "claims envs \"prod\", which its app does not allow (beta)",
            "`not_after` must be a date and time with its offset",
            "two credentials labelled \"x\"",
            "defined twice (first at line 1); give one app several credentials",
        ] {
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        let e = parse_apps("# nothing\n", Path::new("apps.toml")).unwrap_err();
        assert!(e.to_string().contains("no [[app]] or [[operator]]"), "{e}");
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
