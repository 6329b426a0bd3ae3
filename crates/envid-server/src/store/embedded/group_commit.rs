//! Durable acknowledgements by group commit: a write is applied in memory
//! and queued as a log entry (under one lock, so the log's order is
//! memory's order); one writer task appends whatever is queued to
//! `<state>.log` and fsyncs it, then acknowledges every write it held. The
//! writes that arrive while one append runs share the next fsync: a durable
//! write costs a fraction of an fsync, whatever the registry's size. When
//! the log outgrows the state file, the state file is rewritten whole
//! (atomically, see `envid::atomic_file`) and the log emptied: O(n) once
//! per O(n) entries.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state::{self, LogEntry};
use crate::metrics::Metrics;
use crate::store::records::Records;
use crate::store::StoreError;

/// How long a write waits for the disk before it is answered `503`.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Log entries waiting for the writer, numbered.
#[derive(Debug, Default)]
struct Queue {
    entries: Vec<LogEntry>,
    /// The number of the last entry queued (1 for the first).
    last: u64,
}

/// The state file and its log, written by one task (see the module docs).
/// Without a state file every write is durable at once: there is nothing
/// to wait for.
#[derive(Debug)]
pub(super) struct GroupCommit {
    path: Option<PathBuf>,
    /// The number of the last log entry on disk.
    durable: tokio::sync::watch::Sender<u64>,
    queue: Mutex<Queue>,
    queued: tokio::sync::Notify,
    /// The last write error, until a write succeeds.
    write_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl GroupCommit {
    pub(super) fn new(path: Option<PathBuf>, metrics: Arc<Metrics>) -> GroupCommit {
        GroupCommit {
            path,
            durable: tokio::sync::watch::channel(0).0,
            queue: Mutex::new(Queue::default()),
            queued: tokio::sync::Notify::new(),
            write_error: Mutex::new(None),
            metrics,
        }
    }

    /// Whether there is a state file to write.
    pub(super) fn is_on(&self) -> bool {
        self.path.is_some()
    }

    /// Why the last write failed, until one succeeds.
    pub(super) fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs the in-memory write `f` on `records` and queues the log entries
    /// it returns, under one lock (so the log's order is memory's order).
    /// Returns the number to wait for.
    pub(super) fn logged<T>(
        &self,
        records: &Records,
        f: impl FnOnce(&Records) -> (T, Vec<LogEntry>),
    ) -> (T, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (out, entries) = f(records);
        if self.path.is_none() || entries.is_empty() {
            return (out, 0);
        }
        q.last += entries.len() as u64;
        q.entries.extend(entries);
        let last = q.last;
        drop(q);
        self.queued.notify_one();
        (out, last)
    }

    /// Waits until log entry `n` is on disk.
    pub(super) async fn durable(&self, n: u64) -> Result<(), StoreError> {
        if n == 0 {
            return Ok(());
        }
        let mut rx = self.durable.subscribe();
        let done = tokio::time::timeout(DURABLE_TIMEOUT, async {
            rx.wait_for(|d| *d >= n).await.is_ok()
        })
        .await;
        match done {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable {
                reason: self
                    .write_error()
                    .unwrap_or_else(|| "the state log write is late".into()),
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// The writer: appends what is queued (one fsync per batch), and
    /// rewrites the state file from `records` when the log has grown past it.
    pub(super) async fn write_loop(self: Arc<Self>, records: Arc<Records>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut log_bytes = 0u64;
        let mut state_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        loop {
            let (entries, last) = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                (std::mem::take(&mut q.entries), q.last)
            };
            if entries.is_empty() {
                self.queued.notified().await;
                continue;
            }
            let p = path.clone();
            let written = tokio::task::spawn_blocking(move || {
                state::append(&p, &entries).map_err(|e| (e, entries))
            })
            .await;
            match written {
                Ok(Ok(n)) => {
                    *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.durable.send_replace(last);
                    log_bytes += n;
                }
                Ok(Err((e, entries))) => {
                    self.metrics.store_error("write");
                    tracing::error!(error = %e, "cannot append to the state log; retrying");
                    *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(e.to_string());
                    // Put them back in front, in order.
                    {
                        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                        let later = std::mem::replace(&mut q.entries, entries);
                        q.entries.extend(later);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "state writer failed");
                    return;
                }
            }
            if log_bytes > (4 * state_bytes).max(1 << 20) {
                // Everything the log holds is in memory: the state file
                // takes it in, then the log starts over. A crash between the
                // two replays the old log over the new file: entries are
                // absolute states, and none later than the file is lost.
                let me = self.clone();
                let records = records.clone();
                let p = path.clone();
                let compacted = tokio::task::spawn_blocking(move || {
                    me.save(&records, false)?;
                    state::truncate_log(&p)?;
                    Ok::<u64, std::io::Error>(std::fs::metadata(&p).map_or(0, |m| m.len()))
                })
                .await;
                match compacted {
                    Ok(Ok(size)) => {
                        state_bytes = size;
                        log_bytes = 0;
                    }
                    Ok(Err(e)) => {
                        self.metrics.store_error("write");
                        tracing::error!(error = %e, "cannot rewrite the state file");
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// Writes the state file whole from `records` (blocking); `clean` marks
    /// the last write of a run that shut down.
    pub(super) fn save(&self, records: &Records, clean: bool) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let snapshot = records.snapshot();
        state::save(
            path,
            &snapshot.history,
            snapshot.version,
            clean,
            records.registrations(),
        )
    }

    /// The last word: everything in memory goes to the state file, marked
    /// clean, and the log it supersedes is emptied (blocking).
    pub(super) fn close(&self, records: &Records) -> std::io::Result<()> {
        self.save(records, true)?;
        match &self.path {
            Some(p) => state::truncate_log(p),
            None => Ok(()),
        }
    }
}
