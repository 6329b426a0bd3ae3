//! Persisting registrations across restarts.
//!
//! The registrations (and the registry version) are written to
//! `Config::state_path` as JSON, atomically: the whole state goes to a
//! temporary file in the same directory, which is fsynced and renamed over
//! the old file, and the directory is fsynced. A crash mid-write leaves the
//! old file (plus, at worst, a stray temporary file), never a torn one.
//!
//! Writes are group commits (see `group_commit.rs`): a registration
//! is answered only once a write that holds it is fsynced, and the
//! registrations that arrive while one write runs share the next one.
//!
//! The file names the history its version belongs to and whether the run
//! that wrote it ended cleanly: a run that crashed may have served versions
//! it never wrote, so the next one starts a new history (replicas get `410`
//! and re-snapshot rather than a delta from a version that meant something
//! else).
//!
//! At start, a missing file means no registrations. A file that cannot be
//! read or parsed is logged as a warning, moved aside to `<path>.corrupt`
//! (or `.corrupt.1`, `.corrupt.2`, …: an earlier one is never overwritten),
//! and the service starts with no registrations and a new history:
//! registrations are soft state their owners re-create, and refusing to
//! start would take every lookup down over a cache file. Leases that ended
//! while the service was down are dropped at load.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use envid::protocol::canonical_ip;
use serde::{Deserialize, Serialize};

use crate::store::records::Lease;

/// The state file's schema version (1: no history, read as an unclean run).
const STATE_SCHEMA: u32 = 2;

#[derive(Serialize, Deserialize)]
struct StateFile {
    schema: u32,
    version: u64,
    #[serde(default)]
    history: Option<String>,
    /// Written `true` only by the last write of a run that shut down.
    #[serde(default)]
    clean: bool,
    registrations: Vec<Lease>,
}

/// One line of the log beside the state file (`<path>.log`): the changes
/// since the file was written, appended and fsynced in groups. Each entry is
/// an absolute state, so replaying one twice does no harm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum LogEntry {
    /// A registration (new or replaced).
    Put {
        /// The registration.
        lease: Box<Lease>,
    },
    /// A renewal.
    Renew {
        /// The registered address.
        ip: IpAddr,
        /// The lease length.
        lease_seconds: u64,
        /// The new end of the lease.
        expires_unix_ms: u64,
    },
    /// A deregistration or an expiry.
    Delete {
        /// The registered address.
        ip: IpAddr,
    },
}

/// `<path>.log`.
pub(crate) fn log_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".log");
    path.with_file_name(name)
}

/// Applies the log to `leases`; stops at the first line that does not
/// parse (a torn last append, never acknowledged). Returns the entries applied.
fn replay(path: &Path, leases: &mut BTreeMap<IpAddr, Lease>) -> usize {
    let Ok(file) = std::fs::File::open(log_path(path)) else {
        return 0;
    };
    let mut applied = 0;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let Ok(line) = line else { break };
        let Ok(entry) = serde_json::from_slice::<LogEntry>(&line) else {
            break;
        };
        match entry {
            LogEntry::Put { lease } => {
                if let Some(ip) = lease.record.ip {
                    leases.insert(canonical_ip(ip), *lease);
                }
            }
            LogEntry::Renew {
                ip,
                lease_seconds,
                expires_unix_ms,
            } => {
                if let Some(l) = leases.get_mut(&canonical_ip(ip)) {
                    l.lease_seconds = lease_seconds;
                    l.expires_unix_ms = expires_unix_ms;
                }
            }
            LogEntry::Delete { ip } => {
                leases.remove(&canonical_ip(ip));
            }
        }
        applied += 1;
    }
    applied
}

/// Appends `entries` to the log and fsyncs it (one group commit); returns
/// the bytes written.
pub(crate) fn append(path: &Path, entries: &[LogEntry]) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(entries.len() * 200);
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // Like the state file: the log holds the same registrations.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(log_path(path))?;
    file.write_all(&buf)?;
    file.sync_data()?;
    Ok(buf.len() as u64)
}

/// Makes `path` readable and writable by its owner only (mode 0600): every
/// file the service writes holds the registrations, and a log or a moved
/// aside file left by an older version may have been created 0644.
pub(crate) fn private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = path;
    Ok(())
}

/// Empties the log (after the state file took in everything it held).
pub(crate) fn truncate_log(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).open(log_path(path)) {
        Ok(f) => {
            private(&log_path(path))?;
            f.set_len(0)?;
            f.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What was loaded at start.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The registry version the saved state was at (0: none).
    pub(crate) version: u64,
    /// The registrations whose leases had not ended.
    pub(crate) leases: Vec<Lease>,
    /// How many saved leases had ended.
    pub(crate) expired: usize,
    /// The history of `version`, when the file names one.
    pub(crate) history: Option<String>,
    /// Whether the run that wrote the file shut down cleanly.
    pub(crate) clean: bool,
    /// Where a corrupt file was moved to.
    pub(crate) corrupt: Option<PathBuf>,
}

/// Loads the state file; see the module docs for what happens when it is bad.
pub(crate) fn load(path: &Path, now_ms: u64) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No state file yet; a log alone (a first run that crashed before
            // its first full write) still holds acknowledged registrations.
            let mut map = BTreeMap::new();
            if replay(path, &mut map) == 0 {
                return Loaded::default();
            }
            let total = map.len();
            let leases: Vec<Lease> = map
                .into_values()
                .filter(|l| l.expires_unix_ms > now_ms)
                .collect();
            return Loaded {
                expired: total - leases.len(),
                leases,
                ..Loaded::default()
            };
        }
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot read the state file; starting with no registrations"
            );
            return Loaded::default();
        }
    };
    let parsed: Result<StateFile, String> = serde_json::from_slice::<StateFile>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            if s.schema == STATE_SCHEMA || s.schema == 1 {
                Ok(s)
            } else {
                Err(format!("unknown schema {}", s.schema))
            }
        });
    match parsed {
        Ok(state) => {
            let mut map: BTreeMap<IpAddr, Lease> = state
                .registrations
                .into_iter()
                .filter_map(|l| Some((canonical_ip(l.record.ip?), l)))
                .collect();
            replay(path, &mut map);
            let total = map.len();
            let leases: Vec<Lease> = map
                .into_values()
                .filter(|l| l.expires_unix_ms > now_ms)
                .collect();
            Loaded {
                version: state.version,
                expired: total - leases.len(),
                leases,
                history: state.history,
                clean: state.clean,
                corrupt: None,
            }
        }
        Err(e) => {
            let aside = corrupt_path(path);
            // A hard link fails when the name is taken, so two starts racing
            // (or a name found free a moment ago) never overwrite an earlier
            // corrupt file; then the corrupt file is unlinked.
            let moved = std::fs::hard_link(path, &aside)
                .and_then(|()| std::fs::remove_file(path))
                .and_then(|()| private(&aside));
            // The log's changes were relative to the corrupt file: kept
            // beside it, not replayed.
            let log = log_path(path);
            if log.exists() {
                let aside_log = log_path(&aside);
                let _ = std::fs::rename(&log, &aside_log).and_then(|()| private(&aside_log));
            }
            match moved {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    moved_to = %aside.display(),
                    "the state file is corrupt; moved it aside, starting with no registrations"
                ),
                Err(move_error) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    %move_error,
                    "the state file is corrupt and could not be moved aside; starting with no registrations"
                ),
            }
            Loaded {
                corrupt: Some(aside),
                ..Loaded::default()
            }
        }
    }
}

/// The first free name of `<path>.corrupt`, `<path>.corrupt.1`, ….
pub(crate) fn corrupt_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".corrupt");
    let first = path.with_file_name(&name);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|i| {
            let mut n = name.clone();
            n.push(format!(".{i}"));
            path.with_file_name(n)
        })
        .find(|p| !p.exists())
        .expect("some number is free")
}

/// Writes the state atomically (temporary file, fsync, rename, directory
/// fsync). `clean` only for the last write of a run.
pub(crate) fn save(
    path: &Path,
    history: &str,
    version: u64,
    clean: bool,
    leases: Vec<Lease>,
) -> std::io::Result<()> {
    let state = StateFile {
        schema: STATE_SCHEMA,
        version,
        history: Some(history.to_string()),
        clean,
        registrations: leases,
    };
    envid::atomic_file::write(path, |w| {
        serde_json::to_writer(w, &state).map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, expires: u64) -> Lease {
        let text = format!("[[records]]\nip = \"{ip}\"\nenv = \"beta\"\nidc = \"cn0\"\n");
        let record = crate::registry_file::parse_registry(&text, Path::new("t.toml"))
            .unwrap()
            .remove(0);
        Lease {
            record,
            lease_seconds: 30,
            expires_unix_ms: expires,
        }
    }

    #[test]
    fn round_trip_drops_expired_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(
            &path,
            "h1",
            7,
            true,
            vec![lease("10.0.0.1", 5_000), lease("10.0.0.2", 500)],
        )
        .unwrap();
        let loaded = load(&path, 1_000);
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.history.as_deref(), Some("h1"));
        assert!(loaded.clean);
        assert_eq!(loaded.expired, 1);
        assert_eq!(loaded.leases, vec![lease("10.0.0.1", 5_000)]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_log_replays_over_the_file_up_to_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, "h", 3, false, vec![lease("10.0.0.1", 5_000)]).unwrap();
        append(
            &path,
            &[
                LogEntry::Put {
                    lease: Box::new(lease("10.0.0.2", 6_000)),
                },
                LogEntry::Delete {
                    ip: "10.0.0.1".parse().unwrap(),
                },
                LogEntry::Renew {
                    ip: "10.0.0.2".parse().unwrap(),
                    lease_seconds: 30,
                    expires_unix_ms: 9_000,
                },
            ],
        )
        .unwrap();
        // A torn last append (never acknowledged) is where replay stops.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(&path))
            .unwrap();
        f.write_all(b"{\"op\":\"delete\",\"ip\":\"10.0").unwrap();
        let loaded = load(&path, 1_000);
        assert_eq!(loaded.leases, vec![lease("10.0.0.2", 9_000)]);
        assert!(!loaded.clean);
        truncate_log(&path).unwrap();
        assert_eq!(load(&path, 1_000).leases, vec![lease("10.0.0.1", 5_000)]);
    }

    #[cfg(unix)]
    #[test]
    fn every_file_written_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, "h", 1, false, vec![lease("10.0.0.1", 5_000)]).unwrap();
        append(
            &path,
            &[LogEntry::Delete {
                ip: "10.0.0.1".parse().unwrap(),
            }],
        )
        .unwrap();
        assert_eq!((mode(&path), mode(&log_path(&path))), (0o600, 0o600));
        // A log an older version made 0644 is made private at start.
        std::fs::set_permissions(log_path(&path), std::fs::Permissions::from_mode(0o644)).unwrap();
        truncate_log(&path).unwrap();
        assert_eq!(mode(&log_path(&path)), 0o600);
        std::fs::write(&path, b"not json").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append(
            &path,
            &[LogEntry::Delete {
                ip: "10.0.0.1".parse().unwrap(),
            }],
        )
        .unwrap();
        let aside = load(&path, 0).corrupt.unwrap();
        assert_eq!((mode(&aside), mode(&log_path(&aside))), (0o600, 0o600));
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"schema\": 1, \"version\": 3, \"regis").unwrap();
        let loaded = load(&path, 0);
        assert!(loaded.leases.is_empty());
        assert!(!path.exists());
        let first = dir.path().join("state.json.corrupt");
        assert_eq!(loaded.corrupt.as_deref(), Some(first.as_path()));
        // A second corrupt file goes beside the first, never over it.
        std::fs::write(&path, b"not json").unwrap();
        let again = load(&path, 0);
        assert_eq!(
            again.corrupt.as_deref(),
            Some(dir.path().join("state.json.corrupt.1").as_path())
        );
        assert_eq!(std::fs::read(&first).unwrap()[..3], *b"{\"s");
        assert_eq!(load(&dir.path().join("missing.json"), 0).version, 0);
    }
}
