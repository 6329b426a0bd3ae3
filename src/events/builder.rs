//! [`EventsBuilder`]: the filter, the checkpoint and the stream's settings
//! of [`Events`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::Checkpoint;
use super::error::EventsError;
use super::filter::Filter;
use super::Events;
use crate::client::{ServiceConfig, Transport};
use crate::replica::follow::Follow;
use crate::replica::{http_transport, ReplicaBuilder, ReplicaView, Settings};

/// Builds [`Events`] over a [`ServiceConfig`]: what to follow (the
/// [`Filter`]), where to keep the checkpoint, and, through
/// [`sync`](Self::sync), the same stream and protection settings as a
/// replica's.
#[derive(Clone, Debug)]
pub struct EventsBuilder {
    config: ServiceConfig,
    settings: Settings,
    filter: Filter,
    checkpoint: Option<PathBuf>,
    ignore_corrupt: bool,
    ack_flush_interval: Duration,
}

impl EventsBuilder {
    pub(super) fn new(config: ServiceConfig) -> EventsBuilder {
        EventsBuilder {
            config,
            settings: Settings::default(),
            filter: Filter::default(),
            checkpoint: None,
            ignore_corrupt: false,
            ack_flush_interval: Duration::from_secs(1),
        }
    }

    /// Which hosts the events are about (default: every single-IP record).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Keep what the consumer believes in this file (and `FILE.journal`
    /// beside it), so a restart resumes after what was acknowledged.
    /// Without one, every start begins with a join for each IP under the
    /// filter.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Start afresh, as if there were no checkpoint, when it does not parse
    /// (default `false`: [`EventsError::Checkpoint`]). The IPs it held are
    /// then forgotten: no leave is emitted for those that left meanwhile.
    pub fn ignore_corrupt_checkpoint(mut self, ignore: bool) -> Self {
        self.ignore_corrupt = ignore;
        self
    }

    /// How long an acknowledgement may stay unwritten (default 1 s; zero
    /// writes each at once). Delivery is at least once: what a crash loses
    /// is delivered again, with the same ids. [`Events::flush`] writes them
    /// now.
    pub fn ack_flush_interval(mut self, interval: Duration) -> Self {
        self.ack_flush_interval = interval;
        self
    }

    /// The stream's settings, set as on a replica's builder: `poll_wait`,
    /// `min_poll_interval`, `backoff`, `max_backoff` and the protection
    /// against mass deletion (`protection`, `protection_thresholds`,
    /// `protection_window`, `protection_min_records`), which holds leaves
    /// instead of deletes. Its cache file and thread settings do not apply.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let config = envid::ServiceConfig::builder().endpoint("http://127.0.0.1:7070").build()?;
    /// let builder = envid::events::Events::builder(config)
    ///     .sync(|r| r.poll_wait(Duration::from_secs(5)).protection_thresholds(0.5, 0.8));
    /// # Ok::<(), envid::ClientError>(())
    /// ```
    pub fn sync(mut self, set: impl FnOnce(ReplicaBuilder) -> ReplicaBuilder) -> Self {
        let (config, settings) =
            set(ReplicaBuilder::from_parts(self.config, self.settings)).into_parts();
        self.config = config;
        self.settings = settings;
        self
    }

    /// Reads the checkpoint (an error when it is there but unusable) and
    /// gets ready; the service is first asked by [`Events::next`].
    pub fn build(self) -> Result<Events, EventsError> {
        let transport = http_transport(&self.config);
        self.build_with_transport(Arc::new(transport))
    }

    /// [`build`](Self::build) over another transport.
    pub fn build_with_transport(
        self,
        transport: Arc<dyn Transport>,
    ) -> Result<Events, EventsError> {
        let mut follow = Follow::new(transport, self.config.endpoints().to_vec(), self.settings);
        let (checkpoint, state, problem) = match &self.checkpoint {
            Some(path) => {
                let (cp, state, problem) =
                    Checkpoint::open(path, &self.filter, self.ignore_corrupt)?;
                (Some(cp), state, problem)
            }
            None => (None, Default::default(), None),
        };
        if !state.joined.is_empty() {
            // What the consumer believes is what protection keeps if the
            // first snapshot collapsed: no mass of leaves after a restart
            // during a wipe.
            let view = ReplicaView::from_shared(state.version, state.joined.values().cloned());
            follow.start_from(view, state.normal_records);
        }
        Ok(Events::new(
            follow,
            self.filter,
            checkpoint,
            state,
            self.ack_flush_interval,
            problem.map(|p| format!("ignored the corrupt checkpoint: {p}")),
        ))
    }
}
