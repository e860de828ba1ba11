//! What the gateway shows about itself: `/metrics`, and the span of each HTTP request
//! (a child of the caller's `traceparent`, when there is one).

use crate::AppState;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, Request, Response};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use std::time::Duration;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long a scrape may spend reading queue numbers from JetStream.
const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`: this gateway's metrics plus the queue gauges read from JetStream now.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let metrics = state.metrics();
    let read =
        tokio::time::timeout(QUEUE_READ_TIMEOUT, metrics.queue.refresh(&state.jet().js)).await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "queue gauges not refreshed"),
        Err(_) => tracing::warn!("queue gauges not refreshed: JetStream did not answer in time"),
    }
    match tokio::time::timeout(QUEUE_READ_TIMEOUT, crate::store::probe(state.jet())).await {
        Ok(Ok(r)) => metrics.store.set(
            r.used_bytes,
            r.reserved_bytes,
            r.account_limit_bytes,
            r.full.is_some(),
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "store gauges not refreshed"),
        Err(_) => tracing::warn!("store gauges not refreshed: JetStream did not answer in time"),
    }
    jetmill_metrics::encode(metrics)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one HTTP request, named after its route template.
pub fn http_span<B>(req: &Request<B>) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    let span = tracing::debug_span!(
        "http request",
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Record the response status on the request span.
pub fn record_status<B>(res: &Response<B>, latency: Duration, span: &Span) {
    span.record("http.response.status_code", res.status().as_u16());
    tracing::debug!(
        status = res.status().as_u16(),
        latency_ms = latency.as_millis() as u64,
        "answered"
    );
}
