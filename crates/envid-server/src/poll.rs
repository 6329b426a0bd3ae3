//! The one polling loop of the service ([`spawn`], and [`every`] for quick
//! periodic work), and the one check of "has this file changed".
//!
//! The registry file, the apps file and the etcd credentials are *polled*
//! (every `reload_interval`) rather than watched with inotify: polling works
//! on every filesystem (NFS, overlay, FUSE) and with Kubernetes ConfigMap
//! volumes, where an update swaps a `..data` symlink and the watched inode
//! never changes. Each is a [`Poll`] run by [`spawn`]: one check at a time,
//! on a blocking thread, so reading and parsing a file never holds an async
//! worker.
//!
//! [`FileWatch`] is the check the two files share: it compares the file's
//! (mtime, length); when they differ, or when the mtime is so recent that a
//! same-size rewrite within one timestamp tick could hide (the "racy" window
//! git also guards against), the content is read and hashed, and only a new
//! hash is handed back.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::hash::content_hash;

/// Something checked again and again (see the module docs).
pub(crate) trait Poll: Send + 'static {
    /// What the log calls it if its task stops.
    const NAME: &'static str;
    /// Whether the first check runs at once; by default it runs one
    /// interval after start, since what it checks was just loaded.
    const AT_ONCE: bool = false;

    /// One check. Runs on a blocking thread: blocking I/O is fine, and
    /// async work goes through `tokio::runtime::Handle::current().block_on`.
    fn poll(&mut self);
}

/// Runs `poller` every `interval` (at least 10 ms; a late check delays
/// the next rather than bunching up) until the task is aborted.
pub(crate) fn spawn<P: Poll>(interval: Duration, mut poller: P) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = ticks(interval);
        if !P::AT_ONCE {
            tick.tick().await; // the first tick is immediate
        }
        loop {
            tick.tick().await;
            poller = match tokio::task::spawn_blocking(move || {
                poller.poll();
                poller
            })
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "{} stopped", P::NAME);
                    return;
                }
            };
        }
    })
}

/// Runs `work` every `interval` like [`spawn`], the first time at once,
/// but on the async workers: for quick work that never blocks (the lease
/// sweep).
pub(crate) fn every(
    interval: Duration,
    mut work: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = ticks(interval);
        loop {
            tick.tick().await;
            work();
        }
    })
}

/// Ticks every `interval`, at least 10 ms apart, the first one at once.
fn ticks(interval: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Within this age of the file's mtime, the content is re-checked on every poll.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Whether a file's content changed since the last look (see the module
/// docs). Blocking I/O.
#[derive(Debug)]
pub(crate) struct FileWatch {
    path: PathBuf,
    /// How the file is read: its module's bounded read, whose error names
    /// the file and the problem the way that file's other errors do.
    read: fn(&Path) -> Result<Vec<u8>, String>,
    last_stamp: Option<(Option<SystemTime>, u64)>,
    last_hash: Option<u64>,
}

impl FileWatch {
    /// Watches `path`, whose content `loaded` is in use now; `read` reads
    /// it (bounded: [`envid::read`]).
    pub(crate) fn new(
        path: PathBuf,
        read: fn(&Path) -> Result<Vec<u8>, String>,
        loaded: &[u8],
    ) -> FileWatch {
        FileWatch {
            path,
            read,
            last_stamp: None,
            last_hash: Some(content_hash(loaded)),
        }
    }

    /// The watched file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's content when it is new, `None` when it is the content
    /// seen last; `Err` when it cannot be read, naming the file.
    pub(crate) fn changed(&mut self) -> Result<Option<Vec<u8>>, String> {
        let path = self.path.display();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return Err(format!("{path}: {e}")),
        };
        let stamp = (meta.modified().ok(), meta.len());
        let racy = stamp.0.is_none_or(|m| {
            SystemTime::now()
                .duration_since(m)
                .map_or(true, |age| age < RACY_WINDOW)
        });
        if self.last_stamp == Some(stamp) && !racy {
            return Ok(None);
        }
        self.last_stamp = Some(stamp);
        // Bounded and non-blocking: a FIFO or a device put in the file's
        // place is refused, where a plain read would hang the poller.
        let bytes = (self.read)(&self.path)?;
        let hash = content_hash(&bytes);
        if self.last_hash == Some(hash) {
            return Ok(None);
        }
        self.last_hash = Some(hash);
        Ok(Some(bytes))
    }

    /// Forgets the content seen, so the next check hands it back again
    /// (a reload that could not be stored is retried).
    pub(crate) fn forget(&mut self) {
        self.last_hash = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_content_is_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a").unwrap();
        let mut w = FileWatch::new(
            path.clone(),
            |p| std::fs::read(p).map_err(|e| e.to_string()),
            b"a",
        );
        // Within the racy window the content is read again, but it is the same.
        assert_eq!(w.changed(), Ok(None));
        std::fs::write(&path, "b").unwrap();
        assert_eq!(w.changed(), Ok(Some(b"b".to_vec())));
        assert_eq!(w.changed(), Ok(None));
        w.forget();
        assert_eq!(w.changed(), Ok(Some(b"b".to_vec())));
        std::fs::remove_file(&path).unwrap();
        assert!(w.changed().unwrap_err().contains("f: "));
    }
}
