//! Batches (`POST /v1/jobs/batch`) in KV `batches`, key `<tenant>.<batch_id>`: the
//! per-item answers (so the job ids) and the creation time, so any gateway can answer
//! for a batch.

use crate::{Jet, NatsxError};
use async_nats::jetstream::kv::{CreateErrorKind, Operation};
use futures::TryStreamExt;
use jetmill_proto::{names, unix_ms, BatchRecord, JobId};
use std::time::Duration;

/// Tries of [`store`] before it reports the failure.
const STORE_TRIES: u32 = 3;

/// Store the batch (a KV create; retried, since its jobs are committed already). One
/// stored already (a retried request's) counts as stored.
pub async fn store(jet: &Jet, record: &BatchRecord) -> Result<(), NatsxError> {
    let key = names::batch_key(&record.tenant, &record.id);
    let value: bytes::Bytes = record.to_json().into();
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        match jet.batches.create(&key, value.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return Ok(()),
            Err(e) if tries >= STORE_TRIES => return Err(NatsxError::js("store batch")(e)),
            Err(e) => {
                tracing::warn!(batch = %record.id, error = %e, "storing the batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
}

/// The stored batch `id` of `tenant`, if it exists.
pub async fn get(jet: &Jet, tenant: &str, id: &JobId) -> Result<Option<BatchRecord>, NatsxError> {
    let key = names::batch_key(tenant, id);
    let entry = jet
        .batches
        .entry(key.clone())
        .await
        .map_err(NatsxError::js("read batch"))?;
    match entry {
        Some(e) if e.operation == Operation::Put => BatchRecord::from_json(&e.value)
            .map(Some)
            .map_err(|err| NatsxError::Corrupt {
                what: format!("batch {key}"),
                detail: err.to_string(),
            }),
        _ => Ok(None),
    }
}

/// Whether `batch` is gone with its jobs: the deployment's retention has passed since it
/// was stored and none of its jobs has a record (read until the first one found; a job's
/// own longer retention keeps its record, so its batch).
pub async fn expired(jet: &Jet, batch: &BatchRecord) -> Result<bool, NatsxError> {
    if jet
        .records
        .absence_means_unrecorded(unix_ms(batch.created_at), None)
    {
        return Ok(false);
    }
    for id in batch.job_ids() {
        if jet.records.get(&batch.tenant, &id).await?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Remove the stored `batch` (a purge by subject: no delete marker stays behind).
pub async fn remove(jet: &Jet, batch: &BatchRecord) -> Result<(), NatsxError> {
    let key = names::batch_key(&batch.tenant, &batch.id);
    jet.batches
        .stream
        .purge()
        .filter(format!("{}{key}", jet.batches.prefix))
        .await
        .map_err(NatsxError::js("remove batch"))?;
    Ok(())
}

/// The batch `id` of whichever tenant has it (admin paths: rare, so a walk of the
/// bucket's keys is fine; batches are written once, never rewritten during it).
pub async fn find(jet: &Jet, id: &JobId) -> Result<Option<BatchRecord>, NatsxError> {
    let suffix = format!(".{id}");
    let keys: Vec<String> = jet
        .batches
        .keys()
        .await
        .map_err(NatsxError::js("list batches"))?
        .try_filter(|k| futures::future::ready(k.ends_with(&suffix)))
        .try_collect()
        .await
        .map_err(NatsxError::js("list batches"))?;
    for key in keys {
        if let Some((tenant, _)) = key.split_once('.') {
            if let Some(found) = get(jet, tenant, id).await? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}
