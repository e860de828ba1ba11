//! The jetmill HTTP gateway: validates submissions, commits them to JetStream,
//! and serves job records and results.
//!
//! - [`auth`]: bearer tokens (JWT, API keys) to a tenant ([`auth::Principal`]).
//! - [`idempotency`]: `Idempotency-Key` replays; [`cache`]: the result cache.
//! - [`control`]: the runtime config (disabled kinds), followed with a KV watch.
//! - [`config`]: flags and environment ([`GatewayArgs`]).
//! - [`startup`]: [`Application`] — connect, provision, bind, serve until stopped.
//! - [`routes`]: one module per URL subtree; [`app`] assembles the router.
//! - [`error`]: [`ApiError`], the single place errors become HTTP statuses.
//! - [`state`]: what handlers share.
//! - [`feed`]: the SSE fan-out, one `EVENTS` subscription shared by every live feed.
//! - [`usage`]: per-tenant counters, read from the job index's status counts.
//! - [`store`]: a full JetStream store: which limit refused a write, and a probe.
//! - [`activity`]: the last minutes of queue depth, throughput and workers (the page's chart).
//! - [`sweep`]: removes workflows and batches whose jobs all expired, now and then.
//! - [`observe`]: `/metrics`, the HTTP request span and trace-context extraction.

pub mod activity;
pub mod auth;
pub mod cache;
pub mod config;
pub mod control;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod observe;
pub mod raw;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod sweep;
pub mod usage;

pub use config::GatewayArgs;
pub use error::ApiError;
pub use routes::app;
pub use startup::Application;
pub use state::AppState;
