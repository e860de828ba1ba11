//! Creating (or finding) every stream, consumer and bucket jetmill uses.
//!
//! Idempotent: every binary calls [`provision`] at start, so a fresh server needs
//! no manual step and a second gateway or worker just finds what the first made.
//! An object that already exists is used as it is (an operator may have tuned it).

use crate::NatsxError;
use async_nats::jetstream::{self, consumer::pull, kv, object_store, stream, Context};
use jetmill_proto::{names, Priority};
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
    /// How long a finished job's record and result are kept (a job's own `retention`
    /// overrides it); the broker expires them (per-message TTL).
    pub retention: Duration,
}

/// How long a finished job is kept unless its submit or the flags say otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the delete marker of an expired record stays (so watchers such as the list
/// index see the record go, also after a short disconnect).
pub const EXPIRY_MARKER_TTL: Duration = Duration::from_secs(15 * 60);

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 10_000,
            max_queued: 1_000_000,
            events_max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            retention: DEFAULT_RETENTION,
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
    /// The `SCHEDULES` work-queue stream of delayed jobs.
    pub schedules: stream::Stream,
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
    /// Recurring schedules (`POST /v1/schedules`), key `<tenant>.<schedule_id>`.
    pub schedule_records: kv::Store,
    /// Workflows (`POST /v1/workflows`), their step gates and halts (see `workflows`).
    pub workflows: kv::Store,
    /// What run limits have in use (leases, next start), one key per scope.
    pub limits: kv::Store,
    /// The settings these handles were provisioned with.
    pub settings: QueueSettings,
}

/// How long an `Idempotency-Key` is remembered (the API promises at least 24 h).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(48 * 3600);

/// One object [`provision_report`] looked at, and whether it had to create it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provisioned {
    /// `stream`, `kv`, `object store`, `consumer`.
    pub kind: &'static str,
    pub name: String,
    /// `false`: it existed and was used as it is.
    pub created: bool,
}

/// A bucket of JSON values of up to 1 MiB, one per key (history 1, file storage).
fn json_bucket(bucket: &str, description: &str, settings: &QueueSettings) -> kv::Config {
    kv::Config {
        bucket: bucket.into(),
        description: description.into(),
        history: 1,
        max_value_size: 1024 * 1024,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// Create or find every stream and bucket.
///
/// Only objects that are missing are created, so a user without create rights (the
/// `gateway` and `worker` NATS roles) gets its handles once `jetmill provision` made
/// them; a missing object it may not create is [`NatsxError::Missing`].
pub async fn provision(
    client: async_nats::Client,
    settings: QueueSettings,
) -> Result<Jet, NatsxError> {
    // Boxed: the walk over every stream and bucket is a large future, and callers hold
    // it inside their own start-up futures (a debug build's test thread overflowed).
    Box::pin(provision_report(client, settings))
        .await
        .map(|(jet, _)| jet)
}

/// [`provision`], also saying what existed and what was created (`jetmill provision`).
pub async fn provision_report(
    client: async_nats::Client,
    settings: QueueSettings,
) -> Result<(Jet, Vec<Provisioned>), NatsxError> {
    let js = jetstream::new(client.clone());
    let mut report = Vec::new();
    let jobs = stream_get_or_create(
        &js,
        &mut report,
        stream::Config {
            name: names::JOBS_STREAM.into(),
            description: Some("jetmill jobs waiting for a worker (work queue)".into()),
            subjects: jobs_subjects(),
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
    let jobs = upgrade_jobs_stream(&js, jobs).await?;
    let schedules = stream_get_or_create(
        &js,
        &mut report,
        stream::Config {
            name: names::SCHEDULES_STREAM.into(),
            description: Some(
                "jetmill delayed jobs: one schedule each until due, then due jobs until workers move them to JOBS"
                    .into(),
            ),
            subjects: vec![names::SCHEDULED_SUBJECTS.into(), names::DUE_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            allow_message_schedules: true,
            duplicate_window: Duration::from_secs(120),
            num_replicas: settings.replicas,
            ..Default::default()
        },
    )
    .await?;
    let events = stream_get_or_create(
        &js,
        &mut report,
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
        &mut report,
        kv::Config {
            bucket: names::JOBS_BUCKET.into(),
            description: "jetmill job records, key <tenant>.<job_id>".into(),
            history: 1,
            max_value_size: 1024 * 1024,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            // Finished records expire (per-message TTL) and leave a delete marker.
            limit_markers: Some(EXPIRY_MARKER_TTL),
            ..Default::default()
        },
    )
    .await?;
    allow_ttl(
        &js,
        &format!("KV_{}", names::JOBS_BUCKET),
        Some(EXPIRY_MARKER_TTL),
    )
    .await?;
    let config = kv_get_or_create(
        &js,
        &mut report,
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
        &mut report,
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
        &mut report,
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
        &mut report,
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
        &mut report,
        json_bucket(
            names::BATCHES_BUCKET,
            "jetmill job batches, key <tenant>.<batch_id>: item ids and creation time",
            &settings,
        ),
    )
    .await?;
    let schedule_records = kv_get_or_create(
        &js,
        &mut report,
        json_bucket(
            names::SCHEDULES_BUCKET,
            "jetmill recurring schedules, key <tenant>.<schedule_id>",
            &settings,
        ),
    )
    .await?;
    let limits = kv_get_or_create(
        &js,
        &mut report,
        json_bucket(
            names::LIMITS_BUCKET,
            "jetmill run limits in use, one key per scope: running leases and the next start",
            &settings,
        ),
    )
    .await?;
    let workflows = kv_get_or_create(
        &js,
        &mut report,
        json_bucket(
            names::WORKFLOWS_BUCKET,
            "jetmill workflows, key <tenant>.<workflow_id> (steps), .gate.<step>, .halt",
            &settings,
        ),
    )
    .await?;
    let what = format!("object store {}", names::RESULTS_BUCKET);
    let mut created = false;
    if !exists(&js, &format!("OBJ_{}", names::RESULTS_BUCKET), &what).await? {
        let made = js
            .create_object_store(object_store::Config {
                bucket: names::RESULTS_BUCKET.into(),
                description: Some("jetmill results too large for a KV value".into()),
                storage: stream::StorageType::File,
                num_replicas: settings.replicas,
                ..Default::default()
            })
            .await;
        created = made.is_ok();
        if let Err(e) = made {
            refused(
                &js,
                &format!("OBJ_{}", names::RESULTS_BUCKET),
                what.clone(),
                e,
            )
            .await?;
        }
    }
    // Result objects expire with their records (chunks and info written with a TTL).
    allow_ttl(&js, &format!("OBJ_{}", names::RESULTS_BUCKET), None).await?;
    let results = js
        .get_object_store(names::RESULTS_BUCKET)
        .await
        .map_err(provision_err(what.clone()))?;
    report.push(Provisioned {
        kind: "object store",
        name: names::RESULTS_BUCKET.into(),
        created,
    });
    let records = crate::Records::new(records, client.clone(), js.clone(), settings.retention);
    let jet = Jet {
        client,
        js,
        jobs,
        schedules,
        events,
        records,
        results,
        config,
        workers,
        idempotency,
        result_cache,
        batches,
        schedule_records,
        workflows,
        limits,
        settings,
    };
    Ok((jet, report))
}

impl Jet {
    /// Whether the NATS connection is up now (readiness; async-nats reconnects by itself).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The workers' durable pull consumers, one per priority level, highest first;
    /// created or updated to `settings` (`jetmill provision`, and every worker of an
    /// open NATS). See [`Jet::ensure_workers_consumers`].
    pub async fn workers_consumers(
        &self,
    ) -> Result<Vec<(Priority, jetstream::consumer::PullConsumer)>, NatsxError> {
        Ok(self
            .ensure_workers_consumers()
            .await?
            .into_iter()
            .map(|(p, c, _)| (p, c))
            .collect())
    }

    /// The per-priority workers' consumers as a worker needs them, highest first, each
    /// with whether it was created. The consumer of every level before priorities
    /// (`workers`, filter `jobs.run.>`) overlaps them, which a work queue refuses, so it
    /// is deleted first: its unacked jobs stay in the stream and go to the new ones.
    pub async fn ensure_workers_consumers(
        &self,
    ) -> Result<Vec<(Priority, jetstream::consumer::PullConsumer, bool)>, NatsxError> {
        let legacy = names::LEGACY_WORKERS_CONSUMER;
        match self.jobs.consumer_info(legacy).await {
            Ok(_) => match self.jobs.delete_consumer(legacy).await {
                Ok(_) => tracing::info!(
                    consumer = legacy,
                    "deleted the workers consumer of every priority (before priorities); \
                     its jobs go to the per-priority consumers"
                ),
                Err(e) => tracing::warn!(
                    consumer = legacy,
                    error = %e,
                    "cannot delete the old workers consumer (no permission?): run \
                     `jetmill provision` with operator credentials"
                ),
            },
            Err(e) if consumer_not_found(&e) => {}
            Err(e) => {
                return Err(provision_err(format!("consumer {legacy} on stream JOBS"))(
                    e,
                ))
            }
        }
        let mut out = Vec::with_capacity(Priority::ALL.len());
        for p in Priority::ALL {
            let (c, created) = self.ensure_workers_consumer(p).await?;
            out.push((p, c, created));
        }
        Ok(out)
    }

    /// The consumer of `priority` as a worker needs it: used as it is when its settings
    /// are `settings`' (no write, so a worker needs no right to change consumers);
    /// created when missing, updated when different. A worker that may not update it
    /// logs that the stored settings win; one that may not create it gets
    /// [`NatsxError::Missing`]. The `bool` says whether it was created.
    pub async fn ensure_workers_consumer(
        &self,
        priority: Priority,
    ) -> Result<(jetstream::consumer::PullConsumer, bool), NatsxError> {
        let name = names::workers_consumer(priority);
        let cfg = self.workers_consumer_config(priority);
        let what = format!("consumer {name} on stream JOBS");
        let existing = match self.jobs.consumer_info(&name).await {
            Ok(info) => Some(info.config.clone()),
            Err(e) if consumer_not_found(&e) => None,
            Err(e) => return Err(provision_err(what)(e)),
        };
        if let Some(stored) = &existing {
            let same = stored.filter_subject == cfg.filter_subject
                && stored.ack_wait == cfg.ack_wait
                && stored.max_deliver == cfg.max_deliver
                && stored.max_ack_pending == cfg.max_ack_pending;
            if same {
                let consumer = self
                    .jobs
                    .get_consumer(&name)
                    .await
                    .map_err(|source| provision_failed(what, source))?;
                return Ok((consumer, false));
            }
        }
        match self.jobs.create_consumer(cfg.clone()).await {
            Ok(consumer) => Ok((consumer, existing.is_none())),
            Err(e) if answered(&e) => Err(provision_err(what)(e)),
            Err(e) => match existing {
                None => Err(NatsxError::Missing {
                    what,
                    source: Box::new(e),
                }),
                Some(stored) => {
                    tracing::warn!(
                        consumer = %name,
                        error = %e,
                        stored_ack_wait = ?stored.ack_wait,
                        stored_max_ack_pending = stored.max_ack_pending,
                        wanted_ack_wait = ?cfg.ack_wait,
                        wanted_max_ack_pending = cfg.max_ack_pending,
                        "the workers consumer's settings differ from this worker's flags and it \
                         could not update them (no permission?); using them as stored: run \
                         `jetmill provision` with operator credentials and the new settings"
                    );
                    self.jobs
                        .get_consumer(&name)
                        .await
                        .map(|c| (c, false))
                        .map_err(|source| provision_failed(what, source))
                }
            },
        }
    }

    /// The durable consumer that drains `kind`'s parked jobs (created by
    /// `jetmill provision`, or by the first worker that unparks on an open NATS).
    pub async fn ensure_parked_consumer(
        &self,
        kind: jetmill_proto::JobKind,
    ) -> Result<(jetstream::consumer::PullConsumer, bool), NatsxError> {
        let name = names::parked_consumer(kind);
        let cfg = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!(
                "moves parked {kind} jobs back when the kind is enabled"
            )),
            filter_subject: format!("jobs.parked.*.{}", kind.as_str()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            ..Default::default()
        };
        ensure_pull_consumer(&self.jobs, names::JOBS_STREAM, cfg).await
    }

    /// The durable consumer workers move due delayed jobs to `JOBS` through, created
    /// if missing (`jetmill provision`, and workers of an open NATS); with whether it
    /// was created.
    pub async fn ensure_due_consumer(
        &self,
    ) -> Result<(jetstream::consumer::PullConsumer, bool), NatsxError> {
        let cfg = pull::Config {
            durable_name: Some(names::DUE_CONSUMER.into()),
            description: Some("jetmill workers move delayed jobs that are due into JOBS".into()),
            filter_subject: names::DUE_SUBJECTS.into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            ..Default::default()
        };
        ensure_pull_consumer(&self.schedules, names::SCHEDULES_STREAM, cfg).await
    }

    fn workers_consumer_config(&self, priority: Priority) -> pull::Config {
        pull::Config {
            durable_name: Some(names::workers_consumer(priority)),
            description: Some(format!(
                "jetmill workers, {} priority jobs (shared by every worker process)",
                priority.as_str()
            )),
            filter_subject: names::run_subjects(priority),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: self.settings.max_deliver,
            max_ack_pending: self.settings.max_ack_pending,
            ..Default::default()
        }
    }
}

/// The durable pull consumer `cfg` names on `stream`, created if missing (an existing
/// one is used as it is); with whether it was created.
async fn ensure_pull_consumer(
    stream: &stream::Stream,
    stream_name: &str,
    cfg: pull::Config,
) -> Result<(jetstream::consumer::PullConsumer, bool), NatsxError> {
    let name = cfg.durable_name.clone().unwrap_or_default();
    let what = format!("consumer {name} on stream {stream_name}");
    match stream.consumer_info(&name).await {
        Ok(_) => {
            let c = stream
                .get_consumer(&name)
                .await
                .map_err(|source| provision_failed(what.clone(), source))?;
            return Ok((c, false));
        }
        Err(e) if consumer_not_found(&e) => {}
        Err(e) => return Err(provision_err(what)(e)),
    }
    match stream.create_consumer(cfg).await {
        Ok(c) => Ok((c, true)),
        Err(e) if answered(&e) => Err(provision_err(what)(e)),
        Err(e) => Err(NatsxError::Missing {
            what,
            source: Box::new(e),
        }),
    }
}

/// Whether a consumer lookup failed because it does not exist.
fn consumer_not_found(e: &jetstream::context::ConsumerInfoError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::ConsumerInfoErrorKind::NotFound
    )
}

/// The JetStream API error code somewhere in `e`'s chain, if the server answered with one.
fn api_error(e: &(dyn std::error::Error + 'static)) -> Option<jetstream::ErrorCode> {
    api_answer(e).map(|api| api.error_code())
}

/// The JetStream API error somewhere in `e`'s chain, if the server answered with one.
fn api_answer(e: &(dyn std::error::Error + 'static)) -> Option<jetstream::Error> {
    use async_nats::jetstream::{context, stream as s};
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(err) = err.downcast_ref::<jetstream::Error>() {
            return Some(err.clone());
        }
        if let Some(err) = err.downcast_ref::<context::CreateStreamError>() {
            if let context::CreateStreamErrorKind::JetStream(api) = err.kind() {
                return Some(api);
            }
        }
        if let Some(err) = err.downcast_ref::<context::GetStreamError>() {
            if let context::GetStreamErrorKind::JetStream(api) = err.kind() {
                return Some(api);
            }
        }
        if let Some(err) = err.downcast_ref::<s::ConsumerError>() {
            if let s::ConsumerErrorKind::JetStream(api) = err.kind() {
                return Some(api);
            }
        }
        if let Some(err) = err.downcast_ref::<context::ConsumerInfoError>() {
            if let context::ConsumerInfoErrorKind::JetStream(api) = err.kind() {
                return Some(api);
            }
        }
        cur = err.source();
    }
    None
}

/// Whether `e` is JetStream not answering for now rather than refusing: a request that
/// timed out, or a 503 answer ("temporarily unavailable"). A cluster electing its leaders
/// or a restarting server gives these; retrying is right. "No responders" is not one:
/// that is a server without JetStream, an error to fix, not to wait out.
fn transient(e: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::{context, stream as s};
    if let Some(api) = api_answer(e) {
        return api.code() == 503;
    }
    let mut cur = Some(e);
    while let Some(err) = cur {
        let unanswered = err
            .downcast_ref::<context::RequestError>()
            .is_some_and(|e| {
                matches!(
                    e.kind(),
                    context::RequestErrorKind::TimedOut | context::RequestErrorKind::NoResponders
                )
            })
            || err
                .downcast_ref::<context::ConsumerInfoError>()
                .is_some_and(|e| {
                    matches!(
                        e.kind(),
                        context::ConsumerInfoErrorKind::TimedOut
                            | context::ConsumerInfoErrorKind::NoResponders
                            | context::ConsumerInfoErrorKind::Offline
                    )
                })
            || err
                .downcast_ref::<s::ConsumerError>()
                .is_some_and(|e| matches!(e.kind(), s::ConsumerErrorKind::TimedOut))
            || err
                .downcast_ref::<context::CreateStreamError>()
                .is_some_and(|e| {
                    matches!(
                        e.kind(),
                        context::CreateStreamErrorKind::TimedOut
                            | context::CreateStreamErrorKind::JetStreamUnavailable
                    )
                })
            || err
                .downcast_ref::<context::CreateKeyValueError>()
                .is_some_and(|e| matches!(e.kind(), context::CreateKeyValueErrorKind::TimedOut));
        if unanswered {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether the server answered a request with an API error (a real refusal: bad config,
/// no resources), rather than not answering, which is what a publish the user has no
/// permission for looks like (the server drops it and tells only the connection).
fn answered(e: &(dyn std::error::Error + 'static)) -> bool {
    api_error(e).is_some()
}

/// Whether the stream `name` exists (`what` names the object in errors).
async fn exists(js: &Context, name: &str, what: &str) -> Result<bool, NatsxError> {
    match js.get_stream(name).await {
        Ok(_) => Ok(true),
        Err(e) if api_error(&e) == Some(jetstream::ErrorCode::STREAM_NOT_FOUND) => Ok(false),
        Err(e) => Err(provision_err(what.to_string())(e)),
    }
}

/// A create of `what` (stream `stream`) failed: another process may have made it
/// meanwhile (fine); a server's answer is an error; no answer is [`NatsxError::Missing`].
async fn refused<E: std::error::Error + Send + Sync + 'static>(
    js: &Context,
    stream: &str,
    what: String,
    e: E,
) -> Result<(), NatsxError> {
    if exists(js, stream, &what).await? {
        return Ok(());
    }
    if answered(&e) {
        return Err(provision_err(what)(e));
    }
    Err(NatsxError::Missing {
        what,
        source: Box::new(e),
    })
}

/// Run `attempt` until it succeeds or fails with anything but [`NatsxError::Missing`] or
/// [`NatsxError::Unavailable`]: a gateway or worker whose NATS user may not create
/// streams waits (1 s doubling to 30 s) for an operator to run `jetmill provision`,
/// saying what is missing; one whose JetStream does not answer yet (a cluster still
/// electing leaders) asks again (0.25 s doubling to 5 s).
pub async fn until_provisioned<T, F, Fut>(mut attempt: F) -> Result<T, NatsxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NatsxError>>,
{
    let mut backoff = Duration::from_secs(1);
    let mut unanswered = Duration::from_millis(250);
    loop {
        match attempt().await {
            Err(NatsxError::Unavailable { what, source }) => {
                tracing::warn!(
                    what = %what,
                    error = %source,
                    retry_in = ?unanswered,
                    "JetStream did not answer about {what} (a cluster electing its leaders, \
                     or a server restarting?); retrying"
                );
                tokio::time::sleep(unanswered).await;
                unanswered = (unanswered * 2).min(Duration::from_secs(5));
            }
            Err(NatsxError::Missing { what, source }) => {
                tracing::warn!(
                    missing = %what,
                    error = %source,
                    retry_in = ?backoff,
                    "{what} does not exist and this NATS user could not create it (no \
                     permission?): run `jetmill provision` with operator credentials; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// The error for `what` that could not be provisioned: [`NatsxError::Unavailable`] when
/// JetStream did not answer for now (retried by [`until_provisioned`]), else a refusal.
fn provision_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> NatsxError {
    let what = what.into();
    move |e| provision_failed(what, Box::new(e))
}

/// [`provision_err`] for an error already boxed.
fn provision_failed(what: String, source: Box<dyn std::error::Error + Send + Sync>) -> NatsxError {
    if transient(source.as_ref()) {
        NatsxError::Unavailable { what, source }
    } else {
        NatsxError::Provision { what, source }
    }
}

async fn stream_get_or_create(
    js: &Context,
    report: &mut Vec<Provisioned>,
    cfg: stream::Config,
) -> Result<stream::Stream, NatsxError> {
    let name = cfg.name.clone();
    let what = format!("stream {name}");
    let mut created = false;
    if !exists(js, &name, &what).await? {
        match js.create_stream(cfg).await {
            Ok(_) => created = true,
            Err(e) => refused(js, &name, what.clone(), e).await?,
        }
    }
    report.push(Provisioned {
        kind: "stream",
        name: name.clone(),
        created,
    });
    js.get_stream(&name).await.map_err(provision_err(what))
}

/// Every subject `JOBS` holds: jobs to run and parked jobs.
fn jobs_subjects() -> Vec<String> {
    [names::JOBS_SUBJECTS, names::PARKED_SUBJECTS]
        .map(String::from)
        .to_vec()
}

/// A `JOBS` stream made before kinds could be parked lacks `jobs.parked.>`: add it
/// (the only change made to an existing stream; nothing else is touched).
async fn upgrade_jobs_stream(
    js: &Context,
    mut jobs: stream::Stream,
) -> Result<stream::Stream, NatsxError> {
    let mut cfg = jobs.cached_info().config.clone();
    let missing: Vec<String> = jobs_subjects()
        .into_iter()
        .filter(|s| !cfg.subjects.contains(s))
        .collect();
    if missing.is_empty() {
        return Ok(jobs);
    }
    let what = format!("{} on stream JOBS", missing.join(", "));
    cfg.subjects.extend(missing);
    match js.update_stream(cfg).await {
        Ok(_) => {}
        Err(e) if answered(&e) => return Err(provision_err(what)(e)),
        // No answer: a user that may not update streams (an operator must).
        Err(e) => {
            return Err(NatsxError::Missing {
                what,
                source: Box::new(e),
            })
        }
    }
    jobs.info()
        .await
        .map_err(provision_err("stream JOBS".to_string()))?;
    Ok(jobs)
}

/// Let stream `name` take per-message TTLs (and leave delete markers for `markers` when
/// given), for records and results made by a build before retention: the only change
/// made to it. Refused for want of permission, it is for `jetmill provision` to do.
async fn allow_ttl(js: &Context, name: &str, markers: Option<Duration>) -> Result<(), NatsxError> {
    let stream = js
        .get_stream(name)
        .await
        .map_err(provision_err(format!("stream {name}")))?;
    let mut cfg = stream.cached_info().config.clone();
    if cfg.allow_message_ttl && (markers.is_none() || cfg.subject_delete_marker_ttl.is_some()) {
        return Ok(());
    }
    cfg.allow_message_ttl = true;
    if markers.is_some() && cfg.subject_delete_marker_ttl.is_none() {
        cfg.subject_delete_marker_ttl = markers;
    }
    let what = format!("per-message TTL on stream {name}");
    match js.update_stream(cfg).await {
        Ok(_) => Ok(()),
        Err(e) if answered(&e) => Err(provision_err(what)(e)),
        Err(e) => Err(NatsxError::Missing {
            what,
            source: Box::new(e),
        }),
    }
}

async fn kv_get_or_create(
    js: &Context,
    report: &mut Vec<Provisioned>,
    cfg: kv::Config,
) -> Result<kv::Store, NatsxError> {
    let bucket = cfg.bucket.clone();
    let what = format!("KV bucket {bucket}");
    let stream = format!("KV_{bucket}");
    let mut created = false;
    if !exists(js, &stream, &what).await? {
        // Another process may create it between our look and our create: fine.
        match js.create_key_value(cfg).await {
            Ok(_) => created = true,
            Err(e) => refused(js, &stream, what.clone(), e).await?,
        }
    }
    report.push(Provisioned {
        kind: "kv",
        name: bucket.clone(),
        created,
    });
    js.get_key_value(&bucket).await.map_err(provision_err(what))
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
    /// How long finished jobs (records and results) are kept, e.g. 7d, 12h, 30m (at
    /// least 1s); a job's own `retention` overrides it. Give gateways and workers the same.
    #[arg(long, env = "JETMILL_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,
}

/// A `--retention`: the shared duration grammar, at least one second (the broker's
/// smallest message TTL).
fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = jetmill_proto::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "retention {s:?} is under 1s, the shortest the broker keeps a message"
        ));
    }
    Ok(d)
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
            retention: self.retention,
            ..QueueSettings::default()
        }
    }
}
