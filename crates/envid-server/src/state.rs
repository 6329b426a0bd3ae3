//! Persisting registrations across restarts.
//!
//! The registrations (and the registry version) are written to
//! `Config::state_path` as JSON, atomically: the whole state goes to a
//! temporary file in the same directory, which is fsynced and renamed over
//! the old file, and the directory is fsynced. A crash mid-write leaves the
//! old file (plus, at worst, a stray temporary file), never a torn one.
//!
//! Writes are behind the changes (write-behind): the persister writes at most
//! every [`PERSIST_DELAY`] after a change, and once more at shutdown. A crash
//! can lose the last fraction of a second of registrations; their owners
//! find out on their next renewal (`404`) and register again.
//!
//! At start, a missing file means no registrations. A file that cannot be
//! read or parsed is logged as a warning, moved aside to `<path>.corrupt`
//! (kept for inspection, not overwritten), and the service starts with no
//! registrations: registrations are soft state their owners re-create, and
//! refusing to start would take every lookup down over a cache file.
//! Leases that ended while the service was down are dropped at load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::Lease;

/// The smallest gap between two writes of the state file.
pub(crate) const PERSIST_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// The state file's schema version.
const STATE_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    schema: u32,
    version: u64,
    registrations: Vec<Lease>,
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
}

/// Loads the state file; see the module docs for what happens when it is bad.
pub(crate) fn load(path: &Path, now_ms: u64) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::default(),
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
            if s.schema == STATE_SCHEMA {
                Ok(s)
            } else {
                Err(format!("unknown schema {}", s.schema))
            }
        });
    match parsed {
        Ok(state) => {
            let total = state.registrations.len();
            let leases: Vec<Lease> = state
                .registrations
                .into_iter()
                .filter(|l| l.expires_unix_ms > now_ms && l.record.ip.is_some())
                .collect();
            Loaded {
                version: state.version,
                expired: total - leases.len(),
                leases,
            }
        }
        Err(e) => {
            let aside = corrupt_path(path);
            let moved = std::fs::rename(path, &aside);
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
            Loaded::default()
        }
    }
}

/// `<path>.corrupt`.
pub(crate) fn corrupt_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".corrupt");
    path.with_file_name(name)
}

/// Writes the state atomically (temporary file, fsync, rename, directory fsync).
pub(crate) fn save(path: &Path, version: u64, leases: Vec<Lease>) -> std::io::Result<()> {
    let state = StateFile {
        schema: STATE_SCHEMA,
        version,
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
            7,
            vec![lease("10.0.0.1", 5_000), lease("10.0.0.2", 500)],
        )
        .unwrap();
        let loaded = load(&path, 1_000);
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.expired, 1);
        assert_eq!(loaded.leases, vec![lease("10.0.0.1", 5_000)]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"schema\": 1, \"version\": 3, \"regis").unwrap();
        let loaded = load(&path, 0);
        assert!(loaded.leases.is_empty());
        assert!(!path.exists());
        assert!(corrupt_path(&path).exists());
        assert_eq!(load(&dir.path().join("missing.json"), 0).version, 0);
    }
}
