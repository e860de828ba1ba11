//! Recurring schedules: their records in KV `schedules` (key `<tenant>.<schedule_id>`,
//! the truth about a schedule) and their clocks, nats-server message schedules on
//! `SCHEDULES` (`jobs.sched.<schedule_id>`).
//!
//! A firing becomes a job only if the record exists and is not paused (the worker that
//! moves it checks, [`get`]), so callers order these writes to err on the side of not
//! firing (see the gateway's `routes/schedules.rs`).

use crate::{Jet, NatsxError};
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use jetmill_proto::{names, JobId, JobMessage, ScheduleRecord, ScheduleRequest};
use time::OffsetDateTime;

/// Compare-and-set tries of [`set_paused`] before it gives up to other writers.
const SET_PAUSED_TRIES: usize = 16;

/// Store a new schedule record (a KV create); its revision.
pub async fn create(jet: &Jet, record: &ScheduleRecord) -> Result<u64, NatsxError> {
    jet.schedule_records
        .create(
            names::schedule_key(&record.tenant, &record.id),
            record.to_json().into(),
        )
        .await
        .map_err(NatsxError::js("store a schedule"))
}

/// `tenant`'s schedule `id` with its revision; `None` when there is none (also once
/// deleted or purged).
pub async fn get(
    jet: &Jet,
    tenant: &str,
    id: &JobId,
) -> Result<Option<(ScheduleRecord, u64)>, NatsxError> {
    read(jet, &names::schedule_key(tenant, id)).await
}

/// The stored schedule under `key`, with its revision.
async fn read(jet: &Jet, key: &str) -> Result<Option<(ScheduleRecord, u64)>, NatsxError> {
    let entry = jet
        .schedule_records
        .entry(key)
        .await
        .map_err(NatsxError::js("read a schedule"))?;
    let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
        return Ok(None);
    };
    let record = ScheduleRecord::from_json(&entry.value).map_err(|e| NatsxError::Corrupt {
        what: format!("schedule {key}"),
        detail: e.to_string(),
    })?;
    Ok(Some((record, entry.revision)))
}

/// `tenant`'s schedules, oldest first (by key: schedule ids are UUIDv7).
///
/// The keys come from one server-side snapshot (`control::bucket_keys`), not
/// a `keys()` walk, which can miss a key rewritten during the walk (a pause, a resume).
pub async fn list(jet: &Jet, tenant: &str) -> Result<Vec<ScheduleRecord>, NatsxError> {
    let prefix = format!("{tenant}.");
    let mut keys: Vec<String> = crate::control::bucket_keys(jet, names::SCHEDULES_BUCKET)
        .await?
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect();
    keys.sort();
    let mut schedules = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some((record, _)) = read(jet, &key).await? {
            schedules.push(record);
        }
    }
    Ok(schedules)
}

/// What [`set_paused`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum SetPaused {
    /// Written; the record as stored.
    Written(ScheduleRecord),
    /// No such schedule.
    Missing,
    /// Every try lost its compare-and-set to another writer.
    Contended,
}

/// Set `paused` (and `updated_at`) of `tenant`'s schedule `id` by compare-and-set,
/// re-reading after a conflicting write.
pub async fn set_paused(
    jet: &Jet,
    tenant: &str,
    id: &JobId,
    paused: bool,
) -> Result<SetPaused, NatsxError> {
    let key = names::schedule_key(tenant, id);
    for _ in 0..SET_PAUSED_TRIES {
        let Some((mut record, rev)) = read(jet, &key).await? else {
            return Ok(SetPaused::Missing);
        };
        record.paused = paused;
        record.updated_at = OffsetDateTime::now_utc();
        match jet
            .schedule_records
            .update(&key, record.to_json().into(), rev)
            .await
        {
            Ok(_) => return Ok(SetPaused::Written(record)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(NatsxError::js("update a schedule")(e)),
        }
    }
    Ok(SetPaused::Contended)
}

/// Delete `tenant`'s schedule record `id` (its clock is [`stop_clock`]'s).
pub async fn delete(jet: &Jet, tenant: &str, id: &JobId) -> Result<(), NatsxError> {
    jet.schedule_records
        .delete(names::schedule_key(tenant, id))
        .await
        .map_err(NatsxError::js("delete a schedule"))
}

/// Publish the schedule's clock and await the PubAck: a nats-server message schedule
/// whose firings carry the job template (`req.job`) to `jobs.due.<priority>.<kind>`.
///
/// nats-server checks the pattern and the time zone itself: its refusal keeps the
/// server's JetStream error (codes 10189, 10223) as this error's `source()`.
pub async fn start_clock(
    jet: &Jet,
    record: &ScheduleRecord,
    req: &ScheduleRequest,
) -> Result<(), NatsxError> {
    let template = JobMessage {
        id: record.id,
        tenant: record.tenant.clone(),
        spec: req.job.spec.clone(),
        priority: req.job.priority,
        submitted_at_ms: jetmill_proto::now_ms(),
        max_attempts: req.job.max_attempts,
        timeout_ms: req.job.timeout_ms,
        chaos: req.job.chaos,
        batch: None,
        run_at_ms: None,
        schedule: Some(record.id),
        retention_secs: req.job.retention_secs,
        workflow: None,
    };
    let payload = template.encode().map_err(|e| NatsxError::Corrupt {
        what: "schedule job".into(),
        detail: e.to_string(),
    })?;
    let mut headers = crate::jobs::headers(&template);
    // Not deduplicated: a resume publishes the same schedule again.
    headers.insert(
        "Nats-Msg-Id",
        format!("{}.{}", record.id, jetmill_proto::now_ms()).as_str(),
    );
    headers.insert(names::HDR_SCHEDULE, record.broker_pattern().as_str());
    headers.insert(
        names::HDR_SCHEDULE_TARGET,
        names::due_subject(template.priority, template.spec.kind()).as_str(),
    );
    if !record.cron.starts_with("@every") {
        headers.insert(names::HDR_SCHEDULE_TIME_ZONE, record.time_zone.as_str());
    }
    crate::trace::inject_current(&mut headers);
    jet.js
        .publish_with_headers(names::schedule_subject(&record.id), headers, payload.into())
        .await
        .map_err(NatsxError::js("publish a schedule"))?
        .await
        .map_err(NatsxError::js("publish a schedule"))?;
    Ok(())
}

/// Remove the schedule's clock (nothing to do when there is none).
pub async fn stop_clock(jet: &Jet, id: &JobId) -> Result<(), NatsxError> {
    crate::jobs::purge_schedule(jet, id)
        .await
        .map_err(NatsxError::js("remove a schedule's clock"))
}
