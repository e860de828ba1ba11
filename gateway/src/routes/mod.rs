//! The router: one module per URL subtree.

mod cancel;
mod health;
mod jobs;
mod list;

use crate::{ApiError, AppState};
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The whole HTTP API, without a socket (tests can drive it with `oneshot`).
pub fn app(state: AppState, body_limit: usize, request_timeout: Duration) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/jobs", get(list::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::get_one).delete(cancel::cancel))
        .route("/v1/jobs/{id}/result", get(jobs::result))
        .fallback(|| async {
            ApiError::NotFound("no such route; the API lives under /v1/jobs".into())
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
