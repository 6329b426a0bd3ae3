//! The replica's cache file: the view it serves, written atomically so a
//! restart during an outage still answers (see the [replica
//! documentation](super)).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::view::ReplicaView;
use crate::client::CacheProblem;
use crate::protocol::HostRecord;

/// The cache file: the snapshot's shape plus a format marker.
#[derive(Serialize)]
struct CacheOut<'a> {
    format: &'static str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    /// When it was written: its age survives copies that lose the mtime.
    written_unix_ms: u64,
    records: Vec<&'a HostRecord>,
}

#[derive(Deserialize)]
struct CacheIn {
    format: String,
    version: u64,
    #[serde(default)]
    history: Option<String>,
    written_unix_ms: Option<u64>,
    records: Vec<HostRecord>,
}

const CACHE_FORMAT: &str = "envid-replica-1";

/// Writes `view` to `path` (see [`crate::atomic_file`]).
pub(super) fn write(path: &Path, view: &ReplicaView, written: SystemTime) -> std::io::Result<()> {
    let out = CacheOut {
        format: CACHE_FORMAT,
        version: view.version,
        history: view.history.as_deref(),
        written_unix_ms: written
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        records: view.records.values().map(|r| &**r).collect(),
    };
    crate::atomic_file::write(path, |w| {
        serde_json::to_writer(w, &out).map_err(std::io::Error::other)
    })
}

/// Reads a cache file written by [`write`]: the view and when it was
/// written (else the file's mtime).
pub(super) fn read(path: &Path) -> Result<(ReplicaView, SystemTime), CacheProblem> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CacheProblem::Missing,
        _ => CacheProblem::Unreadable(e.to_string()),
    })?;
    let file: CacheIn = serde_json::from_slice(&bytes)
        .map_err(|e| CacheProblem::Corrupt(format!("not a replica cache: {e}")))?;
    if file.format != CACHE_FORMAT {
        return Err(CacheProblem::Corrupt(format!(
            "unknown format {:?} (expected {CACHE_FORMAT:?})",
            file.format
        )));
    }
    let written = match file.written_unix_ms {
        Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        None => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now()),
    };
    let mut view =
        ReplicaView::from_records(file.version, file.records).map_err(CacheProblem::Corrupt)?;
    view.history = file.history;
    Ok((view, written))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::protocol::RecordKey;

    fn rec(key: &str, env: &str) -> HostRecord {
        let mut r: HostRecord =
            serde_json::from_value(serde_json::json!({"env": env, "idc": "cn0"})).unwrap();
        match key.parse::<RecordKey>().unwrap() {
            RecordKey::Ip(ip) => r.ip = Some(ip),
            RecordKey::Net(n) => r.cidr = Some(n),
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cache_file_round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("envid-replica-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache.json");
        let view = ReplicaView::from_records(
            7,
            vec![rec("10.0.0.0/8", "prod"), rec("2001:db8::1", "beta")],
        )
        .unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write(&path, &view, at).unwrap();
        write(&path, &view, at).unwrap(); // replacing works too
        let (back, written) = read(&path).unwrap();
        assert_eq!(written, at);
        assert_eq!(back.version(), 7);
        assert_eq!(back.len(), 2);
        assert_eq!(back.lookup(ip("2001:db8::1")).unwrap().env, "beta");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        std::fs::write(&path, b"{\"format\": \"envid-replica-1\", \"vers").unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(&err, CacheProblem::Corrupt(m) if m.contains("not a replica cache")),
            "{err}"
        );
        std::fs::write(
            &path,
            b"{\"format\": \"other\", \"version\": 1, \"records\": []}",
        )
        .unwrap();
        assert!(read(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown format"));
        assert_eq!(
            read(&dir.join("absent.json")).unwrap_err(),
            CacheProblem::Missing
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
