//! The runtime control plane: desired config in KV `config`, reports in KV `workers`.

use crate::{Jet, NatsxError};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::{StreamExt, TryStreamExt};
use jetmill_proto::config::{report_key, worker_key, GLOBAL_KEY};
use jetmill_proto::{JobKind, RuntimeConfig, WorkerReport};

/// A config value and the bucket revision it was written at (0: never written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned {
    pub config: RuntimeConfig,
    pub revision: u64,
}

async fn read(kv: &kv::Store, key: &str) -> Result<Versioned, NatsxError> {
    match kv.entry(key).await.map_err(NatsxError::js("read config"))? {
        Some(e) if e.operation == Operation::Put => {
            let config = serde_json::from_slice(&e.value).map_err(|err| NatsxError::Corrupt {
                what: format!("config key {key}"),
                detail: err.to_string(),
            })?;
            Ok(Versioned {
                config,
                revision: e.revision,
            })
        }
        Some(e) => Ok(Versioned {
            config: RuntimeConfig::default(),
            revision: e.revision,
        }),
        None => Ok(Versioned::default()),
    }
}

/// The global config, and this worker's effective config (global + its overrides).
pub async fn effective(
    kv: &kv::Store,
    worker_id: &str,
) -> Result<(RuntimeConfig, u64), NatsxError> {
    let global = read(kv, GLOBAL_KEY).await?;
    let own = read(kv, &worker_key(worker_id)).await?;
    Ok((
        global.config.merged(&own.config),
        global.revision.max(own.revision),
    ))
}

/// The global config alone.
pub async fn global(kv: &kv::Store) -> Result<Versioned, NatsxError> {
    read(kv, GLOBAL_KEY).await
}

/// Change the global config (or one worker's overrides) by compare-and-set, so two
/// operators changing different settings at once both land. Returns the new revision.
pub async fn update<F>(
    kv: &kv::Store,
    worker: Option<&str>,
    mut change: F,
) -> Result<Versioned, NatsxError>
where
    F: FnMut(&mut RuntimeConfig),
{
    let key = worker
        .map(worker_key)
        .unwrap_or_else(|| GLOBAL_KEY.to_string());
    loop {
        let current = read(kv, &key).await?;
        let mut config = current.config.clone();
        change(&mut config);
        let body = serde_json::to_vec(&config).map_err(|e| NatsxError::Corrupt {
            what: "config".into(),
            detail: e.to_string(),
        })?;
        let written = if current.revision == 0 {
            match kv.create(&key, body.into()).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                Err(e) => return Err(NatsxError::js("write config")(e)),
            }
        } else {
            match kv.update(&key, body.into(), current.revision).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                Err(e) => return Err(NatsxError::js("write config")(e)),
            }
        };
        if let Some(revision) = written {
            return Ok(Versioned { config, revision });
        }
    }
}

/// The keys of a KV bucket, from one server-side snapshot of its stream's subjects.
///
/// `kv::Store::keys` walks the bucket with a consumer and can miss a key that is
/// rewritten during the walk (its old message is gone, the new one comes after the
/// walk's end) — exactly what happens when every worker reports at once after a
/// config change.
pub(crate) async fn bucket_keys(jet: &Jet, bucket: &str) -> Result<Vec<String>, NatsxError> {
    let stream = jet
        .js
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(NatsxError::js("open a KV bucket's stream"))?;
    let prefix = format!("$KV.{bucket}.");
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(NatsxError::js("list KV keys"))?
        .try_collect()
        .await
        .map_err(NatsxError::js("list KV keys"))?;
    Ok(subjects
        .into_iter()
        .filter_map(|(subject, _)| subject.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// Every live worker's latest report (expired ones are gone from the bucket).
pub async fn workers(jet: &Jet) -> Result<Vec<WorkerReport>, NatsxError> {
    let keys = bucket_keys(jet, jetmill_proto::names::WORKERS_BUCKET).await?;
    let mut out = Vec::new();
    for key in keys {
        if let Some(bytes) = jet
            .workers
            .get(&key)
            .await
            .map_err(NatsxError::js("read worker report"))?
        {
            match serde_json::from_slice::<WorkerReport>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(key, error = %e, "unreadable worker report"),
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Publish this worker's report.
pub async fn report(jet: &Jet, report: &WorkerReport) -> Result<(), NatsxError> {
    let body = serde_json::to_vec(report).map_err(|e| NatsxError::Corrupt {
        what: "report".into(),
        detail: e.to_string(),
    })?;
    jet.workers
        .put(report_key(&report.id), body.into())
        .await
        .map_err(NatsxError::js("write worker report"))?;
    Ok(())
}

/// Remove this worker's report (clean shutdown).
pub async fn unreport(jet: &Jet, worker_id: &str) -> Result<(), NatsxError> {
    jet.workers
        .delete(report_key(worker_id))
        .await
        .map_err(NatsxError::js("delete worker report"))
}

/// Set a delivered job of a disabled kind aside: republish it on its
/// `jobs.parked.` subject (awaiting the PubAck), then ack the original. Until the
/// kind is enabled it waits there, not counted as an attempt and invisible to the
/// workers' consumer. A crash between the two steps leaves a duplicate, which the
/// record's compare-and-set makes harmless.
pub async fn park(jet: &Jet, message: &async_nats::jetstream::Message) -> Result<(), NatsxError> {
    let seq = message
        .info()
        .map(|i| i.stream_sequence)
        .unwrap_or_default();
    let Some(subject) = jetmill_proto::names::parked_subject(message.subject.as_str()) else {
        return Err(NatsxError::Corrupt {
            what: "job subject".into(),
            detail: message.subject.to_string(),
        });
    };
    republish(jet, message, subject, format!("parked.{seq}")).await?;
    message.ack().await.map_err(|source| NatsxError::JetStream {
        op: "ack a parked job",
        source,
    })
}

/// Move every parked job of `kind` back into the queue; returns how many moved.
pub async fn unpark(jet: &Jet, kind: JobKind) -> Result<usize, NatsxError> {
    let (consumer, _) = jet.ensure_parked_consumer(kind).await?;
    let mut moved = 0;
    loop {
        // async-nats gives a no-wait fetch no deadline: bound each wait for its answer,
        // so a request the server never answers (sent as it restarts) fails (the next
        // config apply tries again) instead of hanging for good.
        const ANSWER: std::time::Duration = std::time::Duration::from_secs(5);
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .messages()
            .await
            .map_err(NatsxError::js("fetch parked jobs"))?;
        let mut n = 0;
        while let Some(m) = tokio::time::timeout(ANSWER, batch.next())
            .await
            .map_err(NatsxError::js("fetch parked jobs"))?
        {
            let m = m.map_err(|source| NatsxError::JetStream {
                op: "fetch parked jobs",
                source,
            })?;
            n += 1;
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or_default();
            let Some(subject) = jetmill_proto::names::unparked_subject(m.subject.as_str()) else {
                continue;
            };
            republish(jet, &m, subject, format!("unparked.{seq}")).await?;
            m.ack().await.map_err(|source| NatsxError::JetStream {
                op: "ack an unparked job",
                source,
            })?;
            moved += 1;
        }
        if n == 0 {
            return Ok(moved);
        }
    }
}

/// Move delayed jobs that are due (`SCHEDULES`, `jobs.due.>`) into `JOBS`: up to
/// `max`, waiting up to `wait` for the first. Each is republished on its `jobs.run.`
/// subject (deduplicated as `<id>.due`, so a move retried after a lost ack stores one
/// copy), then acked; one `JOBS` refuses (full) is given back for a later try.
/// Returns how many moved.
pub async fn move_due(
    jet: &Jet,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    max: usize,
    wait: std::time::Duration,
) -> Result<usize, NatsxError> {
    let mut batch = consumer
        .batch()
        .max_messages(max)
        .expires(wait)
        .messages()
        .await
        .map_err(NatsxError::js("fetch due jobs"))?;
    let mut moved = 0;
    while let Some(m) = batch.next().await {
        let m = m.map_err(|source| NatsxError::JetStream {
            op: "fetch due jobs",
            source,
        })?;
        let Some(subject) = jetmill_proto::names::undue_subject(m.subject.as_str()) else {
            // Nothing but jobs.due.<priority>.<kind> is published there; drop strays.
            tracing::warn!(subject = %m.subject, "not a due job; dropped");
            let _ = m.ack().await;
            continue;
        };
        let schedule = m
            .headers
            .as_ref()
            .and_then(|h| h.get(jetmill_proto::names::HDR_SCHEDULE_ID))
            .map(|v| v.as_str().to_string());
        let moved_one = match schedule {
            // A recurring schedule fired: a new job each time.
            Some(sid) => fire(jet, &m, &sid, subject).await,
            None => republish(jet, &m, subject, "due".into()).await,
        };
        if let Err(e) = moved_one {
            let _ = m
                .ack_with(async_nats::jetstream::AckKind::Nak(Some(
                    std::time::Duration::from_secs(2),
                )))
                .await;
            return Err(e);
        }
        m.ack().await.map_err(|source| NatsxError::JetStream {
            op: "ack a due job",
            source,
        })?;
        moved += 1;
    }
    Ok(moved)
}

/// A firing of recurring schedule `sid`: unless the schedule is gone or paused (the
/// firing is then dropped), submit its job as a new one named by
/// [`jetmill_proto::schedule::firing_job_id`] (the same for a retried move, so the
/// `Nats-Msg-Id` dedup and the record create keep it one job), with its `accepted`
/// event and `pending` record, as a gateway's submit does.
async fn fire(
    jet: &Jet,
    m: &async_nats::jetstream::Message,
    sid: &str,
    subject: String,
) -> Result<(), NatsxError> {
    use jetmill_proto::{EventType, JobEvent, JobId, JobMessage, JobRecord};
    let (Ok(sid), Ok(template)) = (sid.parse::<JobId>(), JobMessage::decode(&m.payload)) else {
        tracing::warn!(subject = %m.subject, schedule = sid, "a schedule firing that does not decode; dropped");
        return Ok(());
    };
    let active = match crate::schedules::get(jet, &template.tenant, &sid).await {
        Ok(found) => found.is_some_and(|(r, _)| !r.paused),
        // A record that does not decode runs nothing: the firing is dropped.
        Err(NatsxError::Corrupt { .. }) => false,
        Err(e) => return Err(e),
    };
    if !active {
        tracing::info!(schedule = %sid, "a firing of a deleted or paused schedule; dropped");
        return Ok(());
    }
    let info = m.info().map_err(|e| NatsxError::Corrupt {
        what: "due job metadata".into(),
        detail: e.to_string(),
    })?;
    let fired_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let msg = JobMessage {
        id: jetmill_proto::schedule::firing_job_id(&sid, fired_ms, info.stream_sequence),
        submitted_at_ms: fired_ms,
        batch: None,
        run_at_ms: None,
        schedule: Some(sid),
        ..template
    };
    let payload = msg.encode().map_err(|e| NatsxError::Corrupt {
        what: "job message".into(),
        detail: e.to_string(),
    })?;
    let mut headers = crate::jobs::headers(&msg);
    // The trace of the schedule's creation, if it had one, goes on.
    for name in ["traceparent", "tracestate"] {
        if let Some(v) = m.headers.as_ref().and_then(|h| h.get(name)) {
            headers.insert(name, v.as_str());
        }
    }
    jet.js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(NatsxError::js("publish a scheduled job"))?
        .await
        .map_err(NatsxError::js("publish a scheduled job"))?;
    let accepted = JobEvent {
        job_id: msg.id,
        tenant: msg.tenant.clone(),
        event: EventType::Accepted,
        at_ms: fired_ms,
        attempt: 0,
        worker: None,
        progress: None,
        error: None,
        started_at_ms: None,
    };
    // As after a gateway's PubAck: conveniences the worker rebuilds if they fail.
    if let Err(e) = crate::events::publish(&jet.js, &accepted).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not publish the accepted event of a scheduled job");
    }
    if let Err(e) = jet.records.create(&JobRecord::pending(&msg)).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not create the record of a scheduled job; the worker will");
    }
    tracing::debug!(job_id = %msg.id, schedule = %sid, "schedule fired");
    Ok(())
}

async fn republish(
    jet: &Jet,
    message: &async_nats::jetstream::Message,
    subject: String,
    suffix: String,
) -> Result<(), NatsxError> {
    // Every header but the broker's schedule bookkeeping (`Nats-Schedule*` and
    // `Nats-Scheduler` on a delayed job it fired): the copy is an ordinary job.
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        if AsRef::<str>::as_ref(name)
            .to_ascii_lowercase()
            .starts_with("nats-schedule")
        {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    let base = headers
        .get(jetmill_proto::names::HDR_JOB_ID)
        .map(|v| v.as_str().to_string())
        .unwrap_or_else(|| "job".to_string());
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{base}.{suffix}").as_str(),
    );
    jet.js
        .publish_with_headers(subject, headers, message.payload.clone())
        .await
        .map_err(NatsxError::js("republish a job"))?
        .await
        .map_err(NatsxError::js("republish a job"))?;
    Ok(())
}

/// Every per-worker override, by the worker key's name (without the `worker.` prefix).
pub async fn overrides(jet: &Jet) -> Result<Vec<(String, Versioned)>, NatsxError> {
    let kv = &jet.config;
    let keys = bucket_keys(jet, jetmill_proto::names::CONFIG_BUCKET).await?;
    let mut out = Vec::new();
    for key in keys {
        if let Some(worker) = key.strip_prefix("worker.") {
            let v = read(kv, &key).await?;
            if v.revision > 0 && v.config != RuntimeConfig::default() {
                out.push((worker.to_string(), v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
