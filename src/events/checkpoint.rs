//! The checkpoint of a consumer of events: what it believes joined, and
//! the events delivered to it but not yet acknowledged.
//!
//! Two files. `FILE` is one JSON document written with
//! [`crate::atomic_file::write`] (mode 0600): the format, a generation, the
//! filter, the stream's history and version, the protection's normal
//! record count, the joined records (as they will be once every pending
//! event is acted on) and the pending events with their ids. `FILE.journal`
//! beside it holds one JSON line per change since: a batch of new events
//! (written and fsynced before any of them is delivered) or a count of
//! events acknowledged. Rewriting every joined record for every batch would
//! cost O(joined) per batch (about 15 MB at 100,000 IPs); the journal makes
//! a batch and an acknowledgement cost what they say, and `FILE` is
//! rewritten (the next generation, then an empty journal) once the journal
//! outgrows it, which keeps the amortised cost linear in the changes.
//!
//! A journal line of another generation is left over from a rewrite cut
//! short, and ignored. A last line cut short (no newline) is a write cut
//! short: its batch was never delivered, so it is dropped. Anything else
//! that does not parse is an error naming the file and line.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{CheckpointProblem, EventsError};
use super::filter::Filter;
use super::Event;
use crate::protocol::HostRecord;

/// The format this build writes and reads.
pub(crate) const FORMAT: &str = "envid-events-1";

/// The largest checkpoint read (a million joined records fit).
const MAX_BYTES: u64 = 1 << 30;

/// The journal is folded into the checkpoint once it is larger than the
/// checkpoint and than this.
const MIN_COMPACTION_BYTES: u64 = 1 << 20;

/// What a consumer believes: kept in memory by [`Events`](super::Events)
/// and written here.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) history: Option<String>,
    pub(crate) version: u64,
    /// IP → record, once every pending event is acted on.
    pub(crate) joined: HashMap<IpAddr, Arc<HostRecord>>,
    /// Delivered or not, not yet acknowledged; in order.
    pub(crate) pending: VecDeque<Event>,
    pub(crate) normal_records: usize,
}

#[derive(Serialize)]
struct BaseOut<'a> {
    format: &'static str,
    generation: u64,
    written_unix_ms: u64,
    filter: &'a Filter,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a str>,
    version: u64,
    normal_records: usize,
    joined: Vec<&'a HostRecord>,
    pending: Vec<&'a Event>,
}

#[derive(Deserialize)]
struct BaseIn {
    format: String,
    generation: u64,
    filter: Filter,
    #[serde(default)]
    history: Option<String>,
    version: u64,
    #[serde(default)]
    normal_records: usize,
    joined: Vec<HostRecord>,
    pending: Vec<Event>,
}

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LineOut<'a> {
    Batch {
        g: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        history: Option<&'a str>,
        version: u64,
        events: &'a [Event],
    },
    Acked {
        g: u64,
        n: usize,
    },
}

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum LineIn {
    Batch {
        g: u64,
        #[serde(default)]
        history: Option<String>,
        version: u64,
        events: Vec<Event>,
    },
    Acked {
        g: u64,
        n: usize,
    },
}

/// The checkpoint files of one consumer.
pub(crate) struct Checkpoint {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Option<File>,
    generation: u64,
    journal_bytes: u64,
    base_bytes: u64,
    filter: Filter,
}

fn corrupt(path: &Path, line: Option<usize>, message: impl Into<String>) -> EventsError {
    EventsError::Checkpoint {
        path: path.to_path_buf(),
        line,
        problem: CheckpointProblem::Corrupt(message.into()),
    }
}

fn write_error(path: &Path, e: std::io::Error) -> EventsError {
    EventsError::CheckpointWrite {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Reads `path` whole, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, EventsError> {
    match crate::read::bytes(path, MAX_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(EventsError::Checkpoint {
            path: path.to_path_buf(),
            line: None,
            problem: CheckpointProblem::Unreadable(e.problem.to_string()),
        }),
    }
}

impl Checkpoint {
    /// Opens the checkpoint at `path` for `filter`: the state it holds
    /// (empty when there is none), then writes it afresh (a new
    /// generation, an empty journal), so a start leaves one file that
    /// parses. With `ignore_corrupt`, a checkpoint that does not parse is
    /// replaced by an empty state instead of failing; the problem is
    /// returned beside it.
    pub(crate) fn open(
        path: &Path,
        filter: &Filter,
        ignore_corrupt: bool,
    ) -> Result<(Checkpoint, State, Option<EventsError>), EventsError> {
        let filter = filter.normalized();
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let mut cp = Checkpoint {
            path: path.to_path_buf(),
            journal_path: PathBuf::from(journal_path),
            journal: None,
            generation: 0,
            journal_bytes: 0,
            base_bytes: 0,
            filter,
        };
        let (state, problem) = match cp.load() {
            Ok(state) => (state, None),
            Err(e @ EventsError::Checkpoint { .. }) if ignore_corrupt => {
                (State::default(), Some(e))
            }
            Err(e) => return Err(e),
        };
        cp.compact(&state)?;
        Ok((cp, state, problem))
    }

    fn load(&mut self) -> Result<State, EventsError> {
        let Some(bytes) = read(&self.path)? else {
            return Ok(State::default());
        };
        let base: BaseIn = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&self.path, None, format!("not a checkpoint: {e}")))?;
        if base.format != FORMAT {
            return Err(EventsError::Checkpoint {
                path: self.path.clone(),
                line: None,
                problem: CheckpointProblem::Format {
                    found: base.format,
                    expected: FORMAT,
                },
            });
        }
        if base.filter.normalized() != self.filter {
            return Err(EventsError::FilterChanged {
                path: self.path.clone(),
                found: base.filter.to_string(),
                expected: self.filter.to_string(),
            });
        }
        self.generation = base.generation;
        let mut state = State {
            history: base.history,
            version: base.version,
            joined: HashMap::with_capacity(base.joined.len()),
            pending: base.pending.into(),
            normal_records: base.normal_records,
        };
        for r in base.joined {
            let ip =
                r.ip.ok_or_else(|| corrupt(&self.path, None, "a joined record has no `ip`"))?;
            state.joined.insert(ip, Arc::new(r));
        }
        if let Some(journal) = read(&self.journal_path)? {
            self.replay(&journal, &mut state)?;
        }
        Ok(state)
    }

    fn replay(&self, journal: &[u8], state: &mut State) -> Result<(), EventsError> {
        let lines: Vec<&[u8]> = journal.split(|b| *b == b'\n').collect();
        let complete = journal.ends_with(b"\n");
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            if line.is_empty() {
                continue;
            }
            let parsed: LineIn = match serde_json::from_slice(line) {
                Ok(l) => l,
                // The last write, cut short: nothing of it was delivered.
                Err(_) if last && !complete => break,
                Err(e) => return Err(corrupt(&self.journal_path, Some(i + 1), e.to_string())),
            };
            match parsed {
                LineIn::Batch {
                    g,
                    history,
                    version,
                    events,
                } if g == self.generation => {
                    for e in events {
                        e.apply_to(&mut state.joined);
                        state.pending.push_back(e);
                    }
                    state.history = history;
                    state.version = version;
                }
                LineIn::Acked { g, n } if g == self.generation => {
                    if n > state.pending.len() {
                        return Err(corrupt(
                            &self.journal_path,
                            Some(i + 1),
                            format!(
                                "acknowledges {n} events, {} are pending",
                                state.pending.len()
                            ),
                        ));
                    }
                    state.pending.drain(..n);
                }
                // Left over from a rewrite of the checkpoint cut short.
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends a batch of events (and where the stream is), durably,
    /// before any of them is delivered.
    pub(crate) fn append_batch(
        &mut self,
        history: Option<&str>,
        version: u64,
        events: &[Event],
    ) -> Result<(), EventsError> {
        self.append(&LineOut::Batch {
            g: self.generation,
            history,
            version,
            events,
        })
    }

    /// Appends that `n` more events are acknowledged, durably.
    pub(crate) fn append_acked(&mut self, n: usize) -> Result<(), EventsError> {
        self.append(&LineOut::Acked {
            g: self.generation,
            n,
        })
    }

    fn append(&mut self, line: &LineOut<'_>) -> Result<(), EventsError> {
        let mut text =
            serde_json::to_vec(line).map_err(|e| write_error(&self.journal_path, e.into()))?;
        text.push(b'\n');
        let journal = match &mut self.journal {
            Some(f) => f,
            None => {
                let f = open_journal(&self.journal_path, false)
                    .map_err(|e| write_error(&self.journal_path, e))?;
                self.journal.insert(f)
            }
        };
        journal
            .write_all(&text)
            .and_then(|()| journal.sync_data())
            .map_err(|e| {
                // A line half written would be in the middle of the next
                // ones: reopen (and so append after it) only after a rewrite.
                self.journal = None;
                write_error(&self.journal_path, e)
            })?;
        self.journal_bytes += text.len() as u64;
        Ok(())
    }

    /// Whether the journal has outgrown the checkpoint.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.journal_bytes > self.base_bytes.max(MIN_COMPACTION_BYTES)
    }

    /// Writes `state` as the next generation, then empties the journal.
    pub(crate) fn compact(&mut self, state: &State) -> Result<(), EventsError> {
        let mut joined: Vec<&HostRecord> = state.joined.values().map(|r| &**r).collect();
        joined.sort_by_key(|r| r.ip);
        let out = BaseOut {
            format: FORMAT,
            generation: self.generation + 1,
            written_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            filter: &self.filter,
            history: state.history.as_deref(),
            version: state.version,
            normal_records: state.normal_records,
            joined,
            pending: state.pending.iter().collect(),
        };
        let mut written = 0u64;
        crate::atomic_file::write(&self.path, |w| {
            let mut counting = Counting { inner: w, n: 0 };
            serde_json::to_writer(&mut counting, &out).map_err(std::io::Error::other)?;
            written = counting.n;
            Ok(())
        })
        .map_err(|e| write_error(&self.path, e))?;
        self.generation += 1;
        self.base_bytes = written;
        // Lines of the old generation would be ignored anyway; emptying the
        // journal only keeps it small.
        self.journal = Some(
            open_journal(&self.journal_path, true)
                .map_err(|e| write_error(&self.journal_path, e))?,
        );
        self.journal_bytes = 0;
        Ok(())
    }
}

/// Opens the journal for appending (emptied first with `truncate`), mode
/// 0600 like the checkpoint.
fn open_journal(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    if truncate {
        f.set_len(0)?;
        f.sync_all()?;
        // A journal just created is durable only with its directory entry.
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(f)
}

/// Counts what goes through it (the checkpoint's size, for compaction).
struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn rec(ip: &str, app: &str) -> HostRecord {
        serde_json::from_value(serde_json::json!({
            "ip": ip, "app": app, "env": "prod", "idc": "cn0", "registration": format!("r-{ip}")
        }))
        .unwrap()
    }

    fn event(kind: EventKind, ip: &str, version: u64) -> Event {
        let record = rec(ip, "a");
        Event {
            id: format!("h1/{version}/{ip}"),
            kind,
            ip: ip.parse().unwrap(),
            history: Some("h1".into()),
            version,
            registration: record.registration.clone(),
            previous_registration: None,
            record: Arc::new(record),
            previous: None,
            computed_unix_ms: 1_700_000_000_000,
        }
    }

    fn ips(state: &State) -> Vec<String> {
        let mut v: Vec<String> = state.joined.keys().map(|ip| ip.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_through_the_journal_and_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let filter = Filter::new().app("a");
        let (mut cp, state, problem) = Checkpoint::open(&path, &filter, false).unwrap();
        assert!(problem.is_none());
        assert!(state.joined.is_empty() && state.pending.is_empty());
        // A batch of three joins, two of them acknowledged.
        let batch = [
            event(EventKind::Join, "10.0.0.1", 5),
            event(EventKind::Join, "10.0.0.2", 5),
            event(EventKind::Join, "10.0.0.3", 5),
        ];
        cp.append_batch(Some("h1"), 5, &batch).unwrap();
        cp.append_acked(2).unwrap();
        cp.append_batch(Some("h1"), 9, &[event(EventKind::Leave, "10.0.0.1", 9)])
            .unwrap();
        drop(cp);

        let (cp, state, _) = Checkpoint::open(&path, &filter, false).unwrap();
        assert_eq!((state.history.as_deref(), state.version), (Some("h1"), 9));
        assert_eq!(ips(&state), ["10.0.0.2", "10.0.0.3"]);
        let pending: Vec<&str> = state.pending.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(pending, ["h1/5/10.0.0.3", "h1/9/10.0.0.1"]);
        // Opening rewrote it as the next generation with an empty journal.
        assert_eq!(cp.generation, 2);
        assert_eq!(std::fs::metadata(&cp.journal_path).unwrap().len(), 0);
        drop(cp);
        let (_, again, _) = Checkpoint::open(&path, &filter, false).unwrap();
        assert_eq!(ips(&again), ips(&state));
        assert_eq!(again.pending, state.pending);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&path, &dir.path().join("events.json.journal")] {
                let mode = std::fs::metadata(p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
        }
    }

    #[test]
    fn torn_last_line_and_stale_generation_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let filter = Filter::new();
        let (mut cp, _, _) = Checkpoint::open(&path, &filter, false).unwrap();
        cp.append_batch(None, 3, &[event(EventKind::Join, "10.0.0.7", 3)])
            .unwrap();
        let journal = cp.journal_path.clone();
        drop(cp);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        // A line of an older generation, then a write cut short.
        f.write_all(b"{\"t\":\"acked\",\"g\":0,\"n\":1}\n{\"t\":\"batch\",\"g\":1,\"vers")
            .unwrap();
        drop(f);
        let (_, state, _) = Checkpoint::open(&path, &filter, false).unwrap();
        assert_eq!(ips(&state), ["10.0.0.7"]);
        assert_eq!(state.pending.len(), 1);
    }

    #[test]
    fn corruption_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let filter = Filter::new().env("prod");
        let (mut cp, _, _) = Checkpoint::open(&path, &filter, false).unwrap();
        cp.append_batch(None, 3, &[event(EventKind::Join, "10.0.0.7", 3)])
            .unwrap();
        let journal = cp.journal_path.clone();
        drop(cp);
        // A bad line followed by a good one is no torn write.
        let mut text = std::fs::read_to_string(&journal).unwrap();
        text.insert_str(0, "garbage\n");
        std::fs::write(&journal, text).unwrap();
        let err = Checkpoint::open(&path, &filter, false).err().unwrap();
        assert!(
            matches!(
                &err,
                EventsError::Checkpoint {
                    line: Some(1),
                    problem: CheckpointProblem::Corrupt(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cp.json.journal line 1"), "{err}");
        std::fs::remove_file(&journal).unwrap();

        std::fs::write(&path, b"{\"format\": \"envid-events-1\", \"gen").unwrap();
        let err = Checkpoint::open(&path, &filter, false).err().unwrap();
        assert!(
            err.to_string()
                .starts_with(&format!("checkpoint {}: is corrupt", path.display())),
            "{err}"
        );
        // Allowed to start afresh, it says why.
        let (_, state, problem) = Checkpoint::open(&path, &filter, true).unwrap();
        assert!(state.joined.is_empty());
        assert!(problem.unwrap().to_string().contains("is corrupt"));

        std::fs::write(
            &path,
            br#"{"format":"envid-events-9","generation":1,"filter":{},"version":1,"joined":[],"pending":[]}"#,
        )
        .unwrap();
        let err = Checkpoint::open(&path, &filter, false).err().unwrap();
        assert!(
            err.to_string().contains("has format \"envid-events-9\""),
            "{err}"
        );

        // Another filter's checkpoint is refused, naming both.
        let (_, _, _) = Checkpoint::open(
            &dir.path().join("b.json"),
            &Filter::new().app("a").app("b"),
            false,
        )
        .unwrap();
        let err = Checkpoint::open(&dir.path().join("b.json"), &Filter::new().app("b"), false)
            .err()
            .unwrap();
        assert!(matches!(err, EventsError::FilterChanged { .. }), "{err}");
        assert!(
            err.to_string().contains("filter app=a,b, not app=b"),
            "{err}"
        );
        // The same filter spelt in another order is the same.
        assert!(Checkpoint::open(
            &dir.path().join("b.json"),
            &Filter::new().app("b").app("a"),
            false
        )
        .is_ok());
    }
}
