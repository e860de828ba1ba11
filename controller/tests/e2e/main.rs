//! End-to-end tests: real nats-server, the real gateway over HTTP, real workers
//! (in-process or as `jetmill worker` child processes). One test binary.

mod auth;
mod control;
mod dev;
mod helpers;
mod jobs;
mod listing;
mod reliability;
mod validation;
mod workers;
