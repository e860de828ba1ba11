//! The jetmill HTTP gateway: validates submissions, commits them to JetStream,
//! and serves job records and results.
//!
//! - [`auth`]: bearer tokens (JWT, API keys) to a tenant ([`auth::Principal`]).
//! - [`config`]: flags and environment ([`GatewayArgs`]).
//! - [`startup`]: [`Application`] — connect, provision, bind, serve until stopped.
//! - [`routes`]: one module per URL subtree; [`app`] assembles the router.
//! - [`error`]: [`ApiError`], the single place errors become HTTP statuses.
//! - [`state`]: what handlers share.

pub mod auth;
pub mod config;
pub mod error;
pub mod routes;
pub mod startup;
pub mod state;

pub use config::GatewayArgs;
pub use error::ApiError;
pub use routes::app;
pub use startup::Application;
pub use state::AppState;
