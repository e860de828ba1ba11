//! End-to-end tests: real nats-server, the real gateway over HTTP, real workers
//! (in-process or as `jetmill worker` child processes). One test binary.

mod api_docs;
mod auth;
mod autoscale;
mod backpressure;
mod batch;
mod cluster;
mod control;
mod delayed;
mod dev;
mod disabled_kinds;
mod dlq;
mod gateway_kill;
mod helpers;
mod idempotency;
mod jobs;
mod limits;
mod listing;
mod live;
mod metrics;
mod openapi;
mod otlp;
mod permissions;
mod priority;
mod raw_results;
mod reliability;
mod result_cache;
mod retention;
mod schedules;
mod store_full;
mod store_report;
mod traces;
mod usage;
mod validation;
mod web;
mod workers;
