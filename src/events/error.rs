//! [`EventsError`]: why a consumer of events cannot go on, and
//! [`CheckpointProblem`]: what is wrong with a checkpoint.

use std::path::PathBuf;

use crate::client::ClientError;

/// Why [`Events`](super::Events) failed. Service errors are not among
/// them once built: the stream retries them (see
/// [`EventsStats::sync_errors`](super::EventsStats::sync_errors)); what is
/// returned is what retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The connection settings were refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The checkpoint (or its journal) exists but cannot be used: it is
    /// never silently taken for a fresh start, since that would forget
    /// every IP the consumer believes joined (see
    /// [`EventsBuilder::ignore_corrupt_checkpoint`](super::EventsBuilder::ignore_corrupt_checkpoint)).
    #[error("checkpoint {path}{}: {problem}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Checkpoint {
        /// The file (the checkpoint, or its `.journal` beside it).
        path: PathBuf,
        /// The line of the journal, when the problem is on one.
        line: Option<usize>,
        /// What is wrong.
        problem: CheckpointProblem,
    },
    /// The checkpoint was written by a consumer with another filter: the
    /// IPs it believes joined are not this filter's.
    #[error(
        "checkpoint {path} was written for the filter {found}, not {expected}; \
         give another checkpoint file, or remove it to start afresh"
    )]
    FilterChanged {
        /// The checkpoint.
        path: PathBuf,
        /// The filter it was written for.
        found: String,
        /// The filter of this consumer.
        expected: String,
    },
    /// The checkpoint (or its journal) could not be written: no event is
    /// delivered that it does not hold.
    #[error("cannot write checkpoint {path}: {message}")]
    CheckpointWrite {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// What is wrong with a checkpoint file (see [`EventsError::Checkpoint`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    /// It could not be read (permissions, I/O, not a regular file).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// It is not a checkpoint's JSON (cut short, edited, another file).
    #[error("is corrupt: {0}")]
    Corrupt(String),
    /// It is a checkpoint of another format version.
    #[error("has format {found:?}, this build reads {expected:?}")]
    Format {
        /// The format it names.
        found: String,
        /// The format this build reads.
        expected: &'static str,
    },
}
