//! `Idempotency-Key`: a retried submit returns the job the first attempt created.
//!
//! The key (scoped to the tenant, hashed so any header value makes a valid KV key)
//! is claimed with a KV *create* before the job is published, so two gateways racing
//! on the same key agree on one job. Entries live [`IDEMPOTENCY_TTL`] (48 h).
//!
//! A claim stores the whole job message, so a claim whose job was never published (its
//! gateway was killed between the claim and the PubAck, or the publish failed in a way
//! that may or may not have stored it) *heals*: a later request with the same key finds
//! no record for the job, takes the claim over by compare-and-set and publishes the
//! stored message under the same id ([`Claim::Heal`]). The `Nats-Msg-Id` dedup of `JOBS`
//! (2 min) makes a publish that races the first request's own publish harmless; past
//! the window the missing record is what says it never ran. An id is only handed to a
//! client once its job has a record or was just published, so none answers 404 forever.
//!
//! [`IDEMPOTENCY_TTL`]: jetmill_natsx::IDEMPOTENCY_TTL

use crate::ApiError;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use axum::http::{HeaderMap, StatusCode};
use jetmill_natsx::{NatsxError, Records};
use jetmill_proto::{now_ms, JobId, JobMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest accepted key.
const MAX_LEN: usize = 255;
/// How long a claim whose job has no record yet counts as its first request still
/// publishing: a repeat waits (up to this long) for that record instead of publishing
/// itself. Past it the claim is stale and the repeat heals it.
pub const GRACE: Duration = Duration::from_secs(2);
/// How often a waiting repeat looks for the record.
const POLL: Duration = Duration::from_millis(25);
/// Largest entry that stores its job message (KV values must fit a NATS message); a
/// bigger request is claimed without it and cannot be healed.
const MAX_ENTRY_BYTES: usize = 900 * 1024;
/// Rounds of claim / read / take-over before giving up with a 409 (each round follows a
/// change made by another request, so this is only reached under heavy contention).
const MAX_ROUNDS: usize = 16;

/// What is stored per key.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The job the first request created.
    job_id: JobId,
    /// SHA-256 of what that request asked for, to refuse reuse with another body.
    request: String,
    /// The job message to publish if the claim turns out stale (absent in entries
    /// written before claims could heal, or when the request was too big).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<JobMessage>,
    /// When the claim was made or last taken over (Unix ms, the writer's clock).
    #[serde(default)]
    claimed_at_ms: i64,
}

/// A claim this request holds: the KV key and the revision it wrote.
#[derive(Debug, Clone)]
pub struct Owned {
    kv_key: String,
    revision: u64,
}

/// Outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: go on and publish the job; [`release`] it if nothing was published.
    New(Owned),
    /// Seen before with the same request and its job exists: answer with this job.
    Replay(JobId),
    /// Seen before, but its job has no record past the [`GRACE`]: this request took the
    /// claim over and must publish this (stored) message, same id, before answering.
    Heal(Box<JobMessage>, Owned),
    /// Seen before, its job has no record, and the claim is older than the job's
    /// retention: the job may have finished and expired, so it is not published again
    /// (that could run it twice). The request answers 409 naming this job.
    Expired(JobId),
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

/// The KV key and value a claim of `key` for `msg` writes, made at `claimed_at_ms`.
///
/// Public so tests and tools can write the entry a gateway killed right after its
/// claim leaves behind.
pub fn claim_entry(
    key: &str,
    msg: &JobMessage,
    claimed_at_ms: i64,
) -> Result<(String, Vec<u8>), ApiError> {
    let entry = Entry {
        job_id: msg.id,
        request: fingerprint(msg),
        message: Some(msg.clone()),
        claimed_at_ms,
    };
    let value = serde_json::to_vec(&entry).map_err(|e| ApiError::Internal(e.into()))?;
    let value = if value.len() <= MAX_ENTRY_BYTES {
        value
    } else {
        let lean = Entry {
            message: None,
            ..entry
        };
        serde_json::to_vec(&lean).map_err(|e| ApiError::Internal(e.into()))?
    };
    Ok((kv_key(&msg.tenant, key), value))
}

/// Claim `key` for `msg` (which carries the tenant and the new job id).
///
/// When the key is taken by an earlier request with the same body, this answers
/// [`Claim::Replay`] only once that job has a record; while the claim is younger
/// than [`GRACE`] it waits for one, and after that it takes the claim over
/// ([`Claim::Heal`]). Two requests healing at once race on the entry's revision:
/// one wins, the other waits for the winner's record.
pub async fn claim(
    store: &kv::Store,
    records: &Records,
    key: &str,
    msg: &JobMessage,
) -> Result<Claim, ApiError> {
    let (kv_key, value) = claim_entry(key, msg, now_ms())?;
    let fingerprint = fingerprint(msg);
    for _ in 0..MAX_ROUNDS {
        match store.create(&kv_key, value.clone().into()).await {
            Ok(revision) => return Ok(Claim::New(Owned { kv_key, revision })),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(NatsxError::js("claim idempotency key")(e).into()),
        }
        let Some(found) = store
            .entry(&kv_key)
            .await
            .map_err(NatsxError::js("read idempotency key"))?
            .filter(|e| e.operation == Operation::Put)
        else {
            continue; // released between our create and read: claim it again
        };
        let stored: Entry =
            serde_json::from_slice(&found.value).map_err(|e| ApiError::Internal(e.into()))?;
        if stored.job_id == msg.id {
            // Our own create landed but was answered as a conflict (a retry inside the
            // client, e.g. across a cluster leader change): the claim is ours.
            return Ok(Claim::New(Owned {
                kv_key,
                revision: found.revision,
            }));
        }
        if stored.request != fingerprint {
            return Err(ApiError::IdempotencyConflict(
                "this Idempotency-Key was already used for a different request".into(),
            ));
        }
        let tenant = &msg.tenant;
        if records.get(tenant, &stored.job_id).await?.is_some() {
            return Ok(Claim::Replay(stored.job_id));
        }
        let Some(message) = stored.message else {
            // An entry that cannot heal (older format, or too big): as before.
            return Ok(Claim::Replay(stored.job_id));
        };
        // A claim from a clock ahead of ours counts as new: the wait is bounded anyway.
        let age = Duration::from_millis(
            u64::try_from(now_ms().saturating_sub(stored.claimed_at_ms)).unwrap_or(0),
        );
        if age < GRACE {
            // The first request may still be publishing: wait for its record, or for
            // the claim to change (released, or taken over), at most the rest of the grace.
            let wait = GRACE - age;
            if wait_for_first(
                store,
                records,
                &kv_key,
                tenant,
                &stored.job_id,
                found.revision,
                wait,
            )
            .await?
            {
                return Ok(Claim::Replay(stored.job_id));
            }
            continue;
        }
        if !records.absence_means_unrecorded(stored.claimed_at_ms, message.retention_secs) {
            return Ok(Claim::Expired(stored.job_id));
        }
        // Stale: take it over by compare-and-set, so one of several healers publishes.
        let takeover = Entry {
            job_id: stored.job_id,
            request: stored.request,
            message: Some(message.clone()),
            claimed_at_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&takeover).map_err(|e| ApiError::Internal(e.into()))?;
        match store.update(&kv_key, bytes.into(), found.revision).await {
            Ok(revision) => {
                tracing::warn!(job_id = %message.id, "healing an idempotency claim whose job was never recorded: publishing it again");
                return Ok(Claim::Heal(Box::new(message), Owned { kv_key, revision }));
            }
            // Someone else changed it first (healed or released): look again.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            // The bucket takes no writes now (e.g. its stream is electing a leader; its
            // followers still answer reads, and `create` reports a failed write of an
            // existing key as "already exists"): a 503 the client retries, not 16 rounds
            // of the same failure ending in a 409.
            Err(e) => return Err(NatsxError::js("take over idempotency key")(e).into()),
        }
    }
    Err(ApiError::Conflict(
        "this Idempotency-Key is busy with concurrent requests; retry".into(),
    ))
}

/// Wait up to `wait` for the record of `id`; true if it appeared. Returns early (false)
/// when the claim changed from `revision`, so the caller looks at it again.
async fn wait_for_first(
    store: &kv::Store,
    records: &Records,
    kv_key: &str,
    tenant: &str,
    id: &JobId,
    revision: u64,
    wait: Duration,
) -> Result<bool, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::time::sleep(
            POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        if records.get(tenant, id).await?.is_some() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        let current = store
            .entry(kv_key)
            .await
            .map_err(NatsxError::js("read idempotency key"))?;
        if current.is_none_or(|e| e.revision != revision || e.operation != Operation::Put) {
            return Ok(false);
        }
    }
}

/// Forget a claim whose job was certainly not published, so a retry can succeed.
///
/// Only the revision this request wrote is purged: if another request took the claim
/// over meanwhile (and published its job), the key stays. A failure that may have
/// published (no PubAck) should keep the claim instead: the retry heals it.
pub async fn release(store: &kv::Store, owned: &Owned) {
    if let Err(e) = store
        .purge_expect_revision(&owned.kv_key, Some(owned.revision))
        .await
    {
        tracing::warn!(key = %owned.kv_key, error = %e, "could not release an idempotency key");
    }
}

/// Outcome of claiming a key for a request that is not one job (a batch).
#[derive(Debug)]
pub enum RequestClaim {
    /// First use: go on; [`release`] it if nothing was created.
    New(Owned),
    /// Seen before with the same request, naming `id`. If what `id` names does not
    /// exist and the claim is older than [`GRACE`], its request died before it was
    /// stored: [`retake`] the claim and submit again under the same id.
    Replay {
        id: JobId,
        /// The claim's revision, for [`retake`].
        revision: u64,
        /// Whether the claim is past [`GRACE`] (a live first request would be done).
        stale: bool,
    },
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
) -> Result<RequestClaim, ApiError> {
    let kv_key = kv_key(tenant, key);
    let entry = Entry {
        job_id: id,
        request,
        message: None,
        claimed_at_ms: now_ms(),
    };
    let value = serde_json::to_vec(&entry).map_err(|e| ApiError::Internal(e.into()))?;
    match store.create(&kv_key, value.into()).await {
        Ok(revision) => return Ok(RequestClaim::New(Owned { kv_key, revision })),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(NatsxError::js("claim idempotency key")(e).into()),
    }
    let found = store
        .entry(&kv_key)
        .await
        .map_err(NatsxError::js("read idempotency key"))?
        .filter(|e| e.operation == kv::Operation::Put)
        .ok_or_else(|| {
            ApiError::Conflict("this Idempotency-Key is being released; retry".into())
        })?;
    let stored: Entry =
        serde_json::from_slice(&found.value).map_err(|e| ApiError::Internal(e.into()))?;
    if stored.request != entry.request {
        return Err(ApiError::IdempotencyConflict(
            "this Idempotency-Key was already used for a different request".into(),
        ));
    }
    let age = now_ms().saturating_sub(stored.claimed_at_ms);
    Ok(RequestClaim::Replay {
        id: stored.job_id,
        revision: found.revision,
        stale: u128::try_from(age).unwrap_or(0) > GRACE.as_millis(),
    })
}

/// Take over a stale claim of [`claim_request`] (compare-and-set on `revision`, so of
/// two gateways retrying at once one wins). `None`: someone else took it.
pub async fn retake(
    store: &kv::Store,
    tenant: &str,
    key: &str,
    revision: u64,
) -> Result<Option<Owned>, ApiError> {
    let kv_key = kv_key(tenant, key);
    let Some(found) = store
        .entry(&kv_key)
        .await
        .map_err(NatsxError::js("read idempotency key"))?
        .filter(|e| e.revision == revision && e.operation == kv::Operation::Put)
    else {
        return Ok(None);
    };
    let mut entry: Entry =
        serde_json::from_slice(&found.value).map_err(|e| ApiError::Internal(e.into()))?;
    entry.claimed_at_ms = now_ms();
    let value = serde_json::to_vec(&entry).map_err(|e| ApiError::Internal(e.into()))?;
    match store.update(&kv_key, value.into(), revision).await {
        Ok(revision) => Ok(Some(Owned { kv_key, revision })),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(NatsxError::js("take over idempotency key")(e).into()),
    }
}
