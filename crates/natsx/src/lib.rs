//! jetmill's NATS layer: connecting, provisioning, and the stores built on JetStream.
//!
//! - [`connect`](mod@connect): connection flags shared by every binary ([`NatsArgs`]).
//! - [`provision`](mod@provision): creates or verifies streams, the consumer and buckets, idempotently.
//! - [`records`]: the job records in KV, with compare-and-set updates.
//! - [`listing`]: per-tenant key scans and cursor pages of records.
//! - [`index`]: a live in-memory index of the records, so listing pages need no scan.
//! - [`events`]: publishing lifecycle events.
//! - [`jobs`]: publishing job messages (submit, retry, delayed), cancel broadcasts.
//! - [`batches`]: stored batches of submits.
//! - [`schedules`]: recurring schedules' records and clocks.
//! - [`workflows`]: stored workflows, their gates and halts; starting and advancing steps.
//! - [`control`]: runtime config, worker reports, the consumer's kind filter.
//! - [`results`]: result summaries and large results in the Object Store.
//! - [`trace`]: W3C trace context in message headers.
//! - [`sweep`]: removing workflows and batches whose jobs all expired.
//! - [`stall`]: telling a quiet stream follower from a stalled one (index, live feeds).
//! - [`seconds`]: the parser of every `--*-secs` flag (refuses values that would panic).
//!
//! Binaries call [`provision::provision`] at start and get a [`Jet`] of handles.

pub mod batches;
pub mod connect;
pub mod control;
pub mod error;
pub mod events;
pub mod index;
pub mod jobs;
pub mod limits;
pub mod listing;
pub mod provision;
pub mod records;
pub mod results;
pub mod schedules;
pub mod seconds;
pub mod stall;
pub mod sweep;
pub mod trace;
pub mod workflows;

pub use connect::{connect, last_permission_violation, NatsArgs};
pub use error::NatsxError;
pub use index::{IndexOptions, IndexStats, JobIndex, NotReady, Phase, StatusCounts};
pub use listing::{ListQuery, Page};
pub use provision::{
    provision, provision_report, until_provisioned, Jet, Provisioned, QueueArgs, QueueSettings,
    IDEMPOTENCY_TTL,
};
pub use records::{Records, Update, Version, Watch, Watched};
pub use seconds::parse_secs;
