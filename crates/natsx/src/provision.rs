//! Creating (or finding) every stream, consumer and bucket jetmill uses.
//!
//! Idempotent: every binary calls [`provision`] at start, so a fresh server needs
//! no manual step and a second gateway or worker just finds what the first made.
//! An object that already exists is used as it is (an operator may have tuned it).

use crate::NatsxError;
use async_nats::jetstream::{self, consumer::pull, kv, object_store, stream, Context};
use jetmill_proto::names;
use std::time::Duration;

/// Queue tuning shared by the stream and the workers' consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// How long a delivered job may go without an ack or progress ack before redelivery.
    pub ack_wait: Duration,
    /// Deliveries before a job is given up (the default `max_attempts`).
    pub max_deliver: i64,
    /// Jobs in flight across all workers; delivery stops silently at this cap.
    pub max_ack_pending: i64,
    /// Jobs the `JOBS` stream holds before publishes are refused (backpressure).
    pub max_queued: i64,
    /// How long lifecycle events are kept.
    pub events_max_age: Duration,
    /// Replicas for every stream and bucket (3 in a production cluster).
    pub replicas: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 10_000,
            max_queued: 1_000_000,
            events_max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// Handles to everything jetmill stores in JetStream.
#[derive(Clone)]
pub struct Jet {
    pub client: async_nats::Client,
    pub js: Context,
    /// The `JOBS` work-queue stream.
    pub jobs: stream::Stream,
    /// The `EVENTS` stream.
    pub events: stream::Stream,
    /// Job records.
    pub records: crate::Records,
    /// Large results.
    pub results: object_store::ObjectStore,
    /// Desired runtime configuration.
    pub config: kv::Store,
    /// Live workers' self-reports.
    pub workers: kv::Store,
    /// Idempotency keys of submits (kept [`IDEMPOTENCY_TTL`]).
    pub idempotency: kv::Store,
    /// Computation fingerprint -> a job that computes it (the result cache).
    pub result_cache: kv::Store,
    /// Job batches (`POST /v1/jobs/batch`): their item ids, key `<tenant>.<batch_id>`.
    pub batches: kv::Store,
    /// The settings these handles were provisioned with.
    pub settings: QueueSettings,
}

/// How long an `Idempotency-Key` is remembered (the API promises at least 24 h).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(48 * 3600);

/// Create or find every stream and bucket.
pub async fn provision(
    client: async_nats::Client,
    settings: QueueSettings,
) -> Result<Jet, NatsxError> {
    let js = jetstream::new(client.clone());
    let jobs = stream_get_or_create(
        &js,
        stream::Config {
            name: names::JOBS_STREAM.into(),
            description: Some("jetmill jobs waiting for a worker (work queue)".into()),
            subjects: vec![names::JOBS_SUBJECTS.into(), names::PARKED_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_messages: settings.max_queued,
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let jobs = add_parked_subjects(&js, jobs).await?;
    let events = stream_get_or_create(
        &js,
        stream::Config {
            name: names::EVENTS_STREAM.into(),
            description: Some(
                "jetmill job lifecycle events (outbox for downstream consumers)".into(),
            ),
            subjects: vec![names::EVENTS_SUBJECTS.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: settings.events_max_age,
            duplicate_window: Duration::from_secs(120),
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let records = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::JOBS_BUCKET.into(),
            description: "jetmill job records, key <tenant>.<job_id>".into(),
            history: 1,
            max_value_size: 1024 * 1024,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let config = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::CONFIG_BUCKET.into(),
            description: "jetmill desired runtime configuration".into(),
            history: 16,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let workers = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::WORKERS_BUCKET.into(),
            description: "jetmill live workers (entries expire when a worker stops reporting)"
                .into(),
            history: 1,
            max_age: Duration::from_secs(10),
            storage: stream::StorageType::Memory,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let idempotency = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::IDEMPOTENCY_BUCKET.into(),
            description: "jetmill submit idempotency keys, key <tenant>.<sha256 of the key>".into(),
            history: 1,
            max_age: IDEMPOTENCY_TTL,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let result_cache = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::RESULT_CACHE_BUCKET.into(),
            description: "jetmill result cache: sha256 of (kind, input, params) -> job".into(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let batches = kv_get_or_create(
        &js,
        kv::Config {
            bucket: names::BATCHES_BUCKET.into(),
            description: "jetmill job batches, key <tenant>.<batch_id>: item ids and creation time"
                .into(),
            history: 1,
            max_value_size: 1024 * 1024,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let results = match js.get_object_store(names::RESULTS_BUCKET).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: names::RESULTS_BUCKET.into(),
                description: Some("jetmill results too large for a KV value".into()),
                storage: stream::StorageType::File,
                num_replicas: settings.replicas,
                ..Default::default()
            })
            .await
            .map_err(provision_err("object store results"))?,
    };
    let records = crate::Records::new(records, client.clone());
    Ok(Jet {
        client,
        js,
        jobs,
        events,
        records,
        results,
        config,
        workers,
        idempotency,
        result_cache,
        batches,
        settings,
    })
}

impl Jet {
    /// The workers' durable pull consumer, created or updated to `settings`.
    pub async fn workers_consumer(&self) -> Result<jetstream::consumer::PullConsumer, NatsxError> {
        let cfg = pull::Config {
            durable_name: Some(names::WORKERS_CONSUMER.into()),
            description: Some("jetmill workers (shared by every worker process)".into()),
            filter_subject: names::JOBS_SUBJECTS.into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: self.settings.max_deliver,
            max_ack_pending: self.settings.max_ack_pending,
            ..Default::default()
        };
        self.jobs
            .create_consumer(cfg)
            .await
            .map_err(provision_err(format!(
                "consumer {}",
                names::WORKERS_CONSUMER
            )))
    }
}

fn provision_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> NatsxError {
    let what = what.into();
    move |e| NatsxError::Provision {
        what,
        source: Box::new(e),
    }
}

async fn stream_get_or_create(
    js: &Context,
    cfg: stream::Config,
) -> Result<stream::Stream, NatsxError> {
    let name = cfg.name.clone();
    js.get_or_create_stream(cfg)
        .await
        .map_err(provision_err(format!("stream {name}")))
}

/// A JOBS stream made before kinds could be parked lacks `jobs.parked.>`: add it
/// (the only change made to an existing stream; nothing else is touched).
async fn add_parked_subjects(
    js: &Context,
    mut jobs: stream::Stream,
) -> Result<stream::Stream, NatsxError> {
    let mut cfg = jobs.cached_info().config.clone();
    if cfg.subjects.iter().any(|s| s == names::PARKED_SUBJECTS) {
        return Ok(jobs);
    }
    cfg.subjects.push(names::PARKED_SUBJECTS.into());
    js.update_stream(cfg).await.map_err(provision_err(
        "adding jobs.parked.> to stream JOBS".to_string(),
    ))?;
    jobs.info()
        .await
        .map_err(provision_err("stream JOBS".to_string()))?;
    Ok(jobs)
}

async fn kv_get_or_create(js: &Context, cfg: kv::Config) -> Result<kv::Store, NatsxError> {
    let bucket = cfg.bucket.clone();
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    match js.create_key_value(cfg).await {
        Ok(store) => Ok(store),
        // Another process may have created it between our get and create.
        Err(e) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| NatsxError::Provision {
                what: format!("KV bucket {bucket}"),
                source: Box::new(e),
            }),
    }
}

/// Queue tuning flags shared by the gateway, the worker and `jetmill dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Seconds a delivered job may go unacknowledged before another worker gets it.
    #[arg(long, env = "JETMILL_ACK_WAIT_SECS", default_value_t = 30.0, value_parser = crate::seconds::parse_secs)]
    pub ack_wait_secs: f64,
    /// Deliveries of a job before it is given up (default max attempts).
    #[arg(long, env = "JETMILL_MAX_DELIVER", default_value_t = 5)]
    pub max_deliver: i64,
    /// Jobs in flight across all workers (JetStream stops delivering at this cap).
    #[arg(long, env = "JETMILL_MAX_ACK_PENDING", default_value_t = 10_000)]
    pub max_ack_pending: i64,
    /// Jobs the queue holds before submits are refused.
    #[arg(long, env = "JETMILL_MAX_QUEUED", default_value_t = 1_000_000)]
    pub max_queued: i64,
    /// Replicas for streams and buckets (3 for a production cluster).
    #[arg(long, env = "JETMILL_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
}

impl QueueArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> QueueSettings {
        QueueSettings {
            ack_wait: Duration::from_secs_f64(self.ack_wait_secs.max(0.1)),
            max_deliver: self.max_deliver.max(1),
            max_ack_pending: self.max_ack_pending.max(1),
            max_queued: self.max_queued.max(1),
            replicas: self.replicas.max(1),
            ..QueueSettings::default()
        }
    }
}
