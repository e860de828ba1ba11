//! The router: one module per URL subtree.

mod batch;
mod cancel;
mod health;
mod jobs;
mod list;
mod live;
pub mod openapi;
mod retry;
mod schedules;
mod usage;
mod web;
mod workers;
mod workflows;

use crate::{observe, ApiError, AppState};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The whole HTTP API, without a socket (tests can drive it with `oneshot`).
///
/// Every request must produce its response head within `request_timeout` (408
/// otherwise), except the long-poll and SSE routes, which get `max_wait` on top.
pub fn app(state: AppState, body_limit: usize, request_timeout: Duration) -> Router {
    let max_wait = state.options().max_wait;
    let timeout = |d: Duration| TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, d);
    let quick = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observe::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/jobs", get(list::list).post(jobs::submit))
        .route("/v1/jobs/batch", post(batch::submit))
        .route("/v1/jobs/{id}/result", get(jobs::result))
        .route("/v1/jobs/{id}/retry", post(retry::retry_one))
        .route("/v1/dead-letters/retry", post(retry::retry_many))
        .route("/v1/dead-letters/purge", post(retry::purge_many))
        .route(
            "/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/v1/schedules/{id}",
            get(schedules::get_one).delete(schedules::delete),
        )
        .route("/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/v1/workflows", post(workflows::submit))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/workers", get(workers::list))
        .route("/v1/activity", get(workers::activity))
        .route("/v1/limits", get(workers::limits))
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::app_js))
        .route("/assets/style.css", get(web::style_css))
        .layer(timeout(request_timeout));
    let waiting = Router::new()
        .route("/v1/jobs/{id}", get(live::get_one).delete(cancel::cancel))
        .route("/v1/jobs/{id}/events", get(live::events))
        .route(
            "/v1/batches/{id}",
            get(batch::get_one).delete(batch::cancel),
        )
        .route(
            "/v1/workflows/{id}",
            get(workflows::get_one).delete(workflows::cancel),
        )
        .route("/v1/workflows/{id}/events", get(workflows::events))
        .route("/v1/events", get(live::feed))
        .layer(timeout(request_timeout + max_wait));
    quick
        .merge(waiting)
        .fallback(|| async {
            ApiError::NotFound(
                "no such route; the API lives under /v1 and the web page at /".into(),
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics().clone(),
            jetmill_metrics::http::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::http_span)
                .on_response(observe::record_status),
        )
        .with_state(state)
}
