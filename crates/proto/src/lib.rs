//! jetmill's shared vocabulary: what travels on NATS and what is stored there.
//!
//! - [`names`]: stream, consumer, bucket and subject names, and header keys.
//! - [`job`]: the job id, kinds and the validated [`JobSpec`].
//! - [`request`]: the HTTP/CLI submit body and its validation into a spec.
//! - [`message`]: the postcard job message published on `JOBS` and its codec.
//! - [`record`]: the JSON job record kept in the `jobs` KV bucket.
//! - [`event`]: lifecycle events published on `EVENTS`.
//! - [`batch`]: a batch of jobs (`POST /v1/jobs/batch`): per-item answers and the stored batch.
//! - [`chaos`]: failure injection settings.
//! - [`config`]: runtime configuration and worker reports.
//! - [`workflow`]: workflows (DAGs of job steps), their validation and derived status.
//!
//! No I/O lives here; the binaries and `jetmill-natsx` do that.

pub mod batch;
pub mod chaos;
pub mod config;
pub mod duration;
pub mod event;
pub mod job;
pub mod limit;
pub mod message;
pub mod names;
pub mod record;
pub mod request;
pub mod schedule;
pub mod usage;
pub mod workflow;

pub use batch::{BatchCounts, BatchItem, BatchRecord, MAX_BATCH};
pub use chaos::Chaos;
pub use config::{RuntimeConfig, WorkerReport};
pub use duration::{parse_duration, DurationError};
pub use event::{EventType, JobEvent};
pub use job::{JobId, JobKind, JobSpec, Priority};
pub use limit::{Decision, LimitUse, LimitView, Rate, RunLimit, ScopeUsage};
pub use message::{CodecError, JobMessage, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_VERSION};
pub use record::{
    AttemptFailure, AttemptInfo, JobRecord, JobStatus, ResultInfo, ResultLocation, Transition,
};
pub use request::{JobRequest, Limits, ValidationError};
pub use schedule::{ScheduleRecord, ScheduleRequest};
pub use usage::Usage;
pub use workflow::{
    FailurePolicy, Halt, StepDef, StepGate, StepRef, StepStatus, WorkflowRecord, WorkflowRequest,
    WorkflowStatus, MAX_STEPS,
};

/// Milliseconds since the Unix epoch, as stored in messages and records.
pub fn now_ms() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}

/// `t` in milliseconds since the Unix epoch.
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
