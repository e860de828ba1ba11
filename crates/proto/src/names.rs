//! Names of every NATS object jetmill uses, in one place.
//!
//! `docs/architecture.md` documents the layout; change both together.

use crate::{EventType, JobId, JobKind, Priority};

/// Work-queue stream holding submitted jobs until a worker acks them.
pub const JOBS_STREAM: &str = "JOBS";
/// Subjects of [`JOBS_STREAM`]: `jobs.run.<priority>.<kind>`.
pub const JOBS_SUBJECTS: &str = "jobs.run.>";
/// Subjects of jobs of a disabled kind, set aside until it is enabled again:
/// `jobs.parked.<priority>.<kind>` (same stream, not seen by the workers' consumer).
pub const PARKED_SUBJECTS: &str = "jobs.parked.>";
/// Work-queue stream of delayed jobs (nats-server 2.12+ message schedules). A stream of
/// its own: schedules cannot live in `JOBS`, whose `discard: new` limit is the queue's
/// backpressure and which the server refuses to combine with schedules.
pub const SCHEDULES_STREAM: &str = "SCHEDULES";
/// A delayed job's schedule: `jobs.sched.<job_id>`, one message, outside every
/// consumer's filter so no ack deletes it. At its time the broker publishes the job to
/// its `jobs.due.` subject in the same stream and removes the schedule.
pub const SCHEDULED_SUBJECTS: &str = "jobs.sched.>";
/// Delayed jobs whose time came: `jobs.due.<priority>.<kind>`, moved to `JOBS` by the
/// workers through the [`DUE_CONSUMER`].
pub const DUE_SUBJECTS: &str = "jobs.due.>";
/// The durable consumer on [`SCHEDULES_STREAM`] that every worker pulls due jobs from
/// to move them into `JOBS` (acked once their copy is stored there).
pub const DUE_CONSUMER: &str = "due";
/// Header of a schedule message: `@at <RFC 3339 time>`.
pub const HDR_SCHEDULE: &str = "Nats-Schedule";
/// Header of a recurring schedule's message: the IANA time zone of its cron expression.
pub const HDR_SCHEDULE_TIME_ZONE: &str = "Nats-Schedule-Time-Zone";
/// Header of a recurring schedule's message (and so of its firings): the schedule id.
pub const HDR_SCHEDULE_ID: &str = "Jetmill-Schedule-Id";
/// KV bucket of what run limits have in use (leases, next start), one key per scope
/// (`RunLimit::key_for`), JSON `LimitUse` values changed by compare-and-set.
pub const LIMITS_BUCKET: &str = "limits";

/// KV bucket of recurring schedules, key `<tenant>.<schedule_id>`, JSON values.
pub const SCHEDULES_BUCKET: &str = "schedules";

/// KV key of a recurring schedule.
pub fn schedule_key(tenant: &str, id: &JobId) -> String {
    format!("{tenant}.{id}")
}

/// Header of a schedule message: the subject the broker publishes the job on.
pub const HDR_SCHEDULE_TARGET: &str = "Nats-Schedule-Target";

/// The subject of one delayed job's schedule.
pub fn schedule_subject(id: &JobId) -> String {
    format!("jobs.sched.{id}")
}

/// Where a delayed job lands when due: `jobs.due.<priority>.<kind>`.
pub fn due_subject(priority: Priority, kind: JobKind) -> String {
    format!("jobs.due.{}.{}", priority.as_str(), kind.as_str())
}

/// The job subject a due job moves to (`jobs.due.` -> `jobs.run.`).
pub fn undue_subject(due_subject: &str) -> Option<String> {
    due_subject
        .strip_prefix("jobs.due.")
        .map(|rest| format!("jobs.run.{rest}"))
}

/// The one durable consumer every worker pulled from before priorities (filter
/// `jobs.run.>`); provisioning deletes it, since it overlaps the per-priority ones.
pub const LEGACY_WORKERS_CONSUMER: &str = "workers";

/// The durable pull consumer of one priority level, shared by every worker:
/// `workers-high`, `workers-normal`, `workers-low`.
pub fn workers_consumer(priority: Priority) -> String {
    format!("workers-{}", priority.as_str())
}

/// The jobs of one priority level: `jobs.run.<priority>.>` (what its consumer filters).
pub fn run_subjects(priority: Priority) -> String {
    format!("jobs.run.{}.>", priority.as_str())
}
/// Limits-retention stream of lifecycle events: the outbox downstream services read.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Subjects of [`EVENTS_STREAM`]: `jobs.events.<job_id>.<type>`.
pub const EVENTS_SUBJECTS: &str = "jobs.events.>";
/// KV bucket of job records, key `<tenant>.<job_id>`, JSON values.
pub const JOBS_BUCKET: &str = "jobs";
/// Object store bucket for results too large for a KV value.
pub const RESULTS_BUCKET: &str = "results";
/// KV bucket of desired runtime configuration written by the controller.
pub const CONFIG_BUCKET: &str = "config";
/// KV bucket where live workers report themselves (short max age).
pub const WORKERS_BUCKET: &str = "workers";

/// KV bucket mapping `<tenant>.<sha256(Idempotency-Key)>` to the job it created.
pub const IDEMPOTENCY_BUCKET: &str = "idempotency";
/// KV bucket mapping `sha256(kind, input, params)` to a job with that computation.
pub const RESULT_CACHE_BUCKET: &str = "result_cache";
/// KV bucket of job batches (`POST /v1/jobs/batch`), key `<tenant>.<batch_id>`.
pub const BATCHES_BUCKET: &str = "batches";
/// Durable consumer on `EVENTS` that gateways before 0.2 shared to keep usage counters
/// (usage now comes from each gateway's job index); gateways delete it at start.
pub const USAGE_CONSUMER: &str = "usage";

/// Header: the job id, readable with `nats stream view`.
pub const HDR_JOB_ID: &str = "Jetmill-Job-Id";
/// Header: the job kind.
pub const HDR_KIND: &str = "Jetmill-Kind";
/// Header: the tenant that owns the job.
pub const HDR_TENANT: &str = "Jetmill-Tenant";
/// Header: the batch a job was submitted in (only on batch jobs).
pub const HDR_BATCH_ID: &str = "Jetmill-Batch-Id";
/// Header: the schema version of the payload.
pub const HDR_SCHEMA: &str = "Jetmill-Schema";
/// Header of a job message republished by an operator's retry of a dead letter: the
/// retry's number (the record's `retries` once applied), so a worker can tell it from
/// a stale delivery and reopen the `failed` record if the gateway could not.
pub const HDR_RETRY: &str = "Jetmill-Retry";
/// Header: the payload's content type.
pub const HDR_CONTENT_TYPE: &str = "Content-Type";
/// Content type of postcard payloads.
pub const CONTENT_TYPE_POSTCARD: &str = "application/x-jetmill-postcard";
/// Content type of JSON payloads.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Subject a job is published on.
pub fn job_subject(priority: Priority, kind: JobKind) -> String {
    format!("jobs.run.{}.{}", priority.as_str(), kind.as_str())
}

/// The parked twin of a job subject (`jobs.run.` -> `jobs.parked.`).
pub fn parked_subject(run_subject: &str) -> Option<String> {
    run_subject
        .strip_prefix("jobs.run.")
        .map(|rest| format!("jobs.parked.{rest}"))
}

/// The job subject a parked subject came from (`jobs.parked.` -> `jobs.run.`).
pub fn unparked_subject(parked_subject: &str) -> Option<String> {
    parked_subject
        .strip_prefix("jobs.parked.")
        .map(|rest| format!("jobs.run.{rest}"))
}

/// Durable consumer that drains one kind's parked jobs back into the queue.
pub fn parked_consumer(kind: JobKind) -> String {
    format!("parked-{}", kind.as_str())
}

/// Subject of one lifecycle event of a job.
pub fn event_subject(id: &JobId, event: EventType) -> String {
    format!("jobs.events.{id}.{}", event.as_str())
}

/// Subject filter for every event of one job.
pub fn job_events_filter(id: &JobId) -> String {
    format!("jobs.events.{id}.*")
}

/// KV key of a job record.
pub fn record_key(tenant: &str, id: &JobId) -> String {
    format!("{tenant}.{id}")
}

/// KV bucket of workflows (`POST /v1/workflows`): the workflow under
/// `<tenant>.<workflow_id>`, its step gates under `...gate.<step>` and its halt under
/// `...halt`.
pub const WORKFLOWS_BUCKET: &str = "workflows";

/// KV key of a stored workflow.
pub fn workflow_key(tenant: &str, id: &JobId) -> String {
    format!("{tenant}.{id}")
}

/// KV key of a workflow step's gate (which dependencies ended).
pub fn workflow_gate_key(tenant: &str, id: &JobId, step: u32) -> String {
    format!("{tenant}.{id}.gate.{step}")
}

/// KV key of a workflow's halt (fail-fast or cancel).
pub fn workflow_halt_key(tenant: &str, id: &JobId) -> String {
    format!("{tenant}.{id}.halt")
}

/// KV key of a batch.
pub fn batch_key(tenant: &str, id: &JobId) -> String {
    format!("{tenant}.{id}")
}

/// Object name of a split factorial part's binary partial product.
pub fn part_object(id: &JobId) -> String {
    format!("{id}.part")
}

/// Object name of a job's large result.
pub fn result_object(id: &JobId) -> String {
    format!("{id}.txt")
}

/// Tenant of requests made without authentication (open `jetmill dev`).
pub const DEFAULT_TENANT: &str = "public";

/// Core NATS subject a cancel is broadcast on, so the worker running the job stops it now.
pub fn cancel_subject(id: &JobId) -> String {
    format!("jetmill.cancel.{id}")
}

/// Subscription filter for every cancel broadcast.
pub const CANCEL_SUBJECTS: &str = "jetmill.cancel.*";

/// Subject of the event recorded when a job message cannot be decoded (stream sequence).
pub fn poison_event_subject(stream_seq: u64) -> String {
    format!("jobs.events.poison.{stream_seq}")
}

/// Whether `s` can be a tenant: 1-64 ASCII letters, digits, `-` or `_`.
///
/// Tenants are the first token of record keys and NATS subjects, so no dots,
/// spaces or wildcards.
pub fn is_valid_tenant(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
