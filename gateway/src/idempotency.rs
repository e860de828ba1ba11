//! `Idempotency-Key`: a retried submit returns the job the first attempt created.
//!
//! The key (scoped to the tenant, hashed so any header value makes a valid KV key)
//! is claimed with a KV *create* before the job is published, so two gateways racing
//! on the same key agree on one job. Entries live [`IDEMPOTENCY_TTL`] (48 h).
//!
//! [`IDEMPOTENCY_TTL`]: jetmill_natsx::IDEMPOTENCY_TTL

use crate::ApiError;
use async_nats::jetstream::kv::{self, CreateErrorKind};
use axum::http::{HeaderMap, StatusCode};
use jetmill_natsx::NatsxError;
use jetmill_proto::{JobId, JobMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest accepted key.
const MAX_LEN: usize = 255;

/// What is stored per key.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The job the first request created.
    job_id: JobId,
    /// SHA-256 of what that request asked for, to refuse reuse with another body.
    request: String,
}

/// Outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: go on and publish the job.
    New,
    /// Seen before with the same request: answer with this job.
    Replay(JobId),
}

/// The `Idempotency-Key` of a request, if it sent one (400 if it is unusable).
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = |message: &str| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("Idempotency-Key".into()),
        message: message.into(),
    };
    let key = value
        .to_str()
        .map_err(|_| bad("the Idempotency-Key must be visible ASCII"))?
        .trim();
    if key.is_empty() || key.len() > MAX_LEN {
        return Err(bad("the Idempotency-Key must be 1 to 255 characters"));
    }
    Ok(Some(key.to_string()))
}

fn kv_key(tenant: &str, key: &str) -> String {
    format!("{tenant}.{:x}", Sha256::digest(key.as_bytes()))
}

/// Fingerprint of what a submit asked for (everything but the fresh id and time).
fn fingerprint(msg: &JobMessage) -> String {
    let what = (
        &msg.spec,
        msg.priority,
        msg.max_attempts,
        msg.timeout_ms,
        msg.chaos,
    );
    let bytes = serde_json::to_vec(&what).unwrap_or_default();
    format!("{:x}", Sha256::digest(&bytes))
}

/// Claim `key` for `msg` (which carries the tenant and the new job id).
pub async fn claim(store: &kv::Store, key: &str, msg: &JobMessage) -> Result<Claim, ApiError> {
    let kv_key = kv_key(&msg.tenant, key);
    let entry = Entry {
        job_id: msg.id,
        request: fingerprint(msg),
    };
    let value = serde_json::to_vec(&entry).map_err(|e| ApiError::Internal(e.into()))?;
    match store.create(&kv_key, value.into()).await {
        Ok(_) => return Ok(Claim::New),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(NatsxError::js("claim idempotency key")(e).into()),
    }
    let stored = store
        .get(&kv_key)
        .await
        .map_err(NatsxError::js("read idempotency key"))?
        // Released (its first request failed) between our create and get: a retry wins.
        .ok_or_else(|| {
            ApiError::Conflict("this Idempotency-Key is being released; retry".into())
        })?;
    let stored: Entry =
        serde_json::from_slice(&stored).map_err(|e| ApiError::Internal(e.into()))?;
    if stored.request != entry.request {
        return Err(ApiError::IdempotencyConflict(
            "this Idempotency-Key was already used for a different request".into(),
        ));
    }
    Ok(Claim::Replay(stored.job_id))
}

/// Forget a claim whose job could not be published, so a retry can succeed.
pub async fn release(store: &kv::Store, key: &str, msg: &JobMessage) {
    if let Err(e) = store.purge(kv_key(&msg.tenant, key)).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not release an idempotency key");
    }
}

/// Claim `key` of `tenant` for a request that is not one job (a batch): a replay answers
/// with `id`, and `request` is a fingerprint of the whole request (a reuse with another
/// fingerprint is a 422, as for single submits).
pub async fn claim_request(
    store: &kv::Store,
    tenant: &str,
    key: &str,
    id: JobId,
    request: String,
) -> Result<Claim, ApiError> {
    let kv_key = kv_key(tenant, key);
    let entry = Entry {
        job_id: id,
        request,
    };
    let value = serde_json::to_vec(&entry).map_err(|e| ApiError::Internal(e.into()))?;
    match store.create(&kv_key, value.into()).await {
        Ok(_) => return Ok(Claim::New),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(NatsxError::js("claim idempotency key")(e).into()),
    }
    let stored = store
        .get(&kv_key)
        .await
        .map_err(NatsxError::js("read idempotency key"))?
        .ok_or_else(|| {
            ApiError::Conflict("this Idempotency-Key is being released; retry".into())
        })?;
    let stored: Entry =
        serde_json::from_slice(&stored).map_err(|e| ApiError::Internal(e.into()))?;
    if stored.request != entry.request {
        return Err(ApiError::IdempotencyConflict(
            "this Idempotency-Key was already used for a different request".into(),
        ));
    }
    Ok(Claim::Replay(stored.job_id))
}

/// Forget a claim made with [`claim_request`] whose request created nothing.
pub async fn release_request(store: &kv::Store, tenant: &str, key: &str) {
    if let Err(e) = store.purge(kv_key(tenant, key)).await {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}
