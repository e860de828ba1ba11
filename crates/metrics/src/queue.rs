//! Queue depth and pending acknowledgements per consumer, read from JetStream.
//!
//! The values live in JetStream, not in any one process, so they are read when
//! scraped ([`QueueGauges::refresh`]) rather than counted. Only the gateway
//! exposes them, so a sum over instances does not count them once per worker.

use async_nats::jetstream;
use futures::TryStreamExt;
use jetmill_proto::names;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why the queue gauges could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueueReadError {
    /// The stream or its info could not be read.
    #[error("reading stream {stream}: {detail}")]
    Stream {
        /// Stream name.
        stream: &'static str,
        /// What JetStream said.
        detail: String,
    },
    /// Its consumers could not be listed.
    #[error("listing consumers of {stream}: {detail}")]
    Consumers {
        /// Stream name.
        stream: &'static str,
        /// What JetStream said.
        detail: String,
    },
}

/// Label set `{stream}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Stream name.
    pub stream: String,
}

/// Label set `{stream, consumer}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Stream name.
    pub stream: String,
    /// Durable consumer name.
    pub consumer: String,
}

/// Gauges mirrored from the `JOBS` stream and its consumers.
#[derive(Default)]
pub struct QueueGauges {
    stream_messages: Family<StreamLabel, Gauge>,
    pending: Family<ConsumerLabels, Gauge>,
    ack_pending: Family<ConsumerLabels, Gauge>,
    redelivered: Family<ConsumerLabels, Gauge>,
    waiting: Family<ConsumerLabels, Gauge>,
    /// Consumers set at the last refresh, so one that is gone can be removed
    /// without clearing (and briefly hiding) the others from a concurrent scrape.
    known: std::sync::Mutex<Vec<ConsumerLabels>>,
}

impl QueueGauges {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "jetmill_stream_messages",
            "Messages stored in the stream (JOBS: queued plus running jobs)",
            self.stream_messages.clone(),
        );
        r.register(
            "jetmill_consumer_pending_messages",
            "Messages not yet delivered to the consumer: the queue depth",
            self.pending.clone(),
        );
        r.register(
            "jetmill_consumer_ack_pending_messages",
            "Messages delivered and not yet acknowledged: jobs in flight (capped by max_ack_pending)",
            self.ack_pending.clone(),
        );
        r.register(
            "jetmill_consumer_redelivered_messages",
            "Messages delivered more than once and not yet acknowledged",
            self.redelivered.clone(),
        );
        r.register(
            "jetmill_consumer_waiting_pulls",
            "Open pull requests: idle worker capacity waiting for jobs",
            self.waiting.clone(),
        );
    }

    /// Read the `JOBS` stream and each of its consumers into the gauges.
    ///
    /// On error the gauges are cleared, so a scrape shows no stale numbers.
    pub async fn refresh(&self, js: &jetstream::Context) -> Result<(), QueueReadError> {
        let result = self.read(js).await;
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn clear(&self) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.stream_messages.clear();
        self.pending.clear();
        self.ack_pending.clear();
        self.redelivered.clear();
        self.waiting.clear();
    }

    async fn read(&self, js: &jetstream::Context) -> Result<(), QueueReadError> {
        let stream_name = names::JOBS_STREAM;
        let stream = js
            .get_stream(stream_name)
            .await
            .map_err(|e| QueueReadError::Stream {
                stream: stream_name,
                detail: e.to_string(),
            })?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| QueueReadError::Stream {
                stream: stream_name,
                detail: e.to_string(),
            })?;
        let consumers: Vec<_> =
            stream
                .consumers()
                .try_collect()
                .await
                .map_err(|e| QueueReadError::Consumers {
                    stream: stream_name,
                    detail: e.to_string(),
                })?;
        self.stream_messages
            .get_or_create(&StreamLabel {
                stream: stream_name.to_string(),
            })
            .set(i64::try_from(info.state.messages).unwrap_or(i64::MAX));
        let mut now = Vec::with_capacity(consumers.len());
        for c in consumers {
            let labels = ConsumerLabels {
                stream: stream_name.to_string(),
                consumer: c.name.clone(),
            };
            let set = |family: &Family<ConsumerLabels, Gauge>, v: u64| {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&self.pending, c.num_pending);
            set(&self.ack_pending, c.num_ack_pending as u64);
            set(&self.redelivered, c.num_redelivered as u64);
            set(&self.waiting, c.num_waiting as u64);
            now.push(labels);
        }
        // A consumer deleted since the last refresh disappears.
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for gone in known.iter().filter(|l| !now.contains(l)) {
            for family in [
                &self.pending,
                &self.ack_pending,
                &self.redelivered,
                &self.waiting,
            ] {
                family.remove(gone);
            }
        }
        *known = now;
        Ok(())
    }
}
