//! The result cache: an identical computation whose result exists is answered from it.
//!
//! KV `result_cache` maps the SHA-256 of (kind, input, params) to the job that computes
//! it. The gateway writes the entry when it queues that job, so no worker has to know
//! about the cache; a lookup trusts the entry only if that job's record says `done`.
//! An entry whose job failed or was cancelled is replaced by the next identical submit.
//! The hit is a new job of the caller's tenant, already `done`, with `cached: true`,
//! pointing at the same result (inline text or Object Store object).

use async_nats::jetstream::kv::{self, CreateErrorKind};
use jetmill_natsx::{NatsxError, Records};
use jetmill_proto::{JobId, JobMessage, JobRecord, JobSpec, JobStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// What is stored per computation.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    tenant: String,
    job_id: JobId,
}

/// KV key of a computation: hex SHA-256 of its spec (kind, input and params).
pub fn key_of(spec: &JobSpec) -> String {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    format!("{:x}", Sha256::digest(&bytes))
}

/// Whether a job may be served from (and recorded in) the cache: jobs with failure
/// injection exist to exercise failures, so they always run.
pub fn cacheable(msg: &JobMessage) -> bool {
    msg.chaos.is_none_or(|c| !c.is_active())
}

/// A finished job with the same computation as `msg`, if the cache knows one.
pub async fn lookup(
    store: &kv::Store,
    records: &Records,
    msg: &JobMessage,
) -> Result<Option<JobRecord>, NatsxError> {
    let Some(raw) = store
        .get(key_of(&msg.spec))
        .await
        .map_err(NatsxError::js("read result cache"))?
    else {
        return Ok(None);
    };
    let Ok(entry) = serde_json::from_slice::<Entry>(&raw) else {
        return Ok(None);
    };
    let Some((source, _)) = records.get(&entry.tenant, &entry.job_id).await? else {
        return Ok(None);
    };
    let usable = source.status == JobStatus::Done
        && source.result_info.is_some()
        && source.kind == msg.spec.kind()
        && source.input == msg.spec.input_json()
        && source.params == msg.spec.params_json();
    Ok(usable.then_some(source))
}

/// The caller's own record for `msg`, answered from `source`'s result.
pub fn hit_record(msg: &JobMessage, source: &JobRecord) -> JobRecord {
    let now = OffsetDateTime::now_utc();
    let mut record = JobRecord::pending(msg);
    record.status = JobStatus::Done;
    record.progress = 1.0;
    record.started_at = Some(now);
    record.finished_at = Some(now);
    record.result = source.result.clone();
    record.result_info = source.result_info.clone();
    record.cached = true;
    record
}

/// Remember that `msg`'s job computes its spec, unless a usable entry already exists.
///
/// Best effort: a lost write only costs a future cache miss.
pub async fn remember(store: &kv::Store, records: &Records, msg: &JobMessage) {
    let key = key_of(&msg.spec);
    let entry = Entry {
        tenant: msg.tenant.clone(),
        job_id: msg.id,
    };
    let Ok(value) = serde_json::to_vec(&entry) else {
        return;
    };
    let result = match store.create(&key, value.clone().into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            replace_if_dead(store, records, &key, value).await
        }
        Err(e) => Err(NatsxError::js("write result cache")(e)),
    };
    if let Err(e) = result {
        tracing::debug!(job_id = %msg.id, error = %e, "result cache entry not written");
    }
}

/// Point `key` at a new job if the job it names failed, was cancelled or vanished.
async fn replace_if_dead(
    store: &kv::Store,
    records: &Records,
    key: &str,
    value: Vec<u8>,
) -> Result<(), NatsxError> {
    let Some(current) = store
        .entry(key)
        .await
        .map_err(NatsxError::js("read result cache"))?
    else {
        return Ok(());
    };
    let alive = match serde_json::from_slice::<Entry>(&current.value) {
        Ok(e) => match records.get(&e.tenant, &e.job_id).await? {
            Some((r, _)) => !matches!(r.status, JobStatus::Failed | JobStatus::Cancelled),
            None => false,
        },
        Err(_) => false,
    };
    if !alive {
        // Compare-and-set: if another gateway replaced it first, theirs stands.
        let _ = store.update(key, value.into(), current.revision).await;
    }
    Ok(())
}
