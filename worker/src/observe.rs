//! The worker's observability plumbing: trace ids of deliveries, queue wait, and the
//! optional `/metrics` listener (`--metrics-listen`).

use anyhow::Context as _;
use async_nats::jetstream::Message;
use jetmill_metrics::Metrics;
use jetmill_proto::{now_ms, JobMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Make `span` (a job's span) a child of the trace the gateway put in the message
/// headers, and record the trace id on it so every log line of the job carries it.
pub fn adopt_trace(span: &tracing::Span, message: &Message) -> Option<String> {
    let id = jetmill_natsx::trace::adopt(span, message.headers.as_ref());
    if let Some(id) = &id {
        span.record("trace_id", id.as_str());
    }
    id
}

/// Record the time a job's first delivery spent in the queue as a `queue wait` span:
/// a child of the gateway's publish span (from the message headers), from submission
/// until now. Later deliveries are not queue wait of the submission, so they get none;
/// nor does an untraced message, and without an exporter the tracer is a no-op.
pub fn queue_wait_span(message: &Message, job: &JobMessage, delivered: u32) {
    use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
    if delivered != 1 {
        return;
    }
    let parent = jetmill_natsx::trace::extract(message.headers.as_ref());
    if !parent.span().span_context().is_valid() {
        return;
    }
    let tracer = opentelemetry::global::tracer("jetmill");
    let submitted = u64::try_from(job.submitted_at_ms).unwrap_or(0);
    let mut span = tracer
        .span_builder("queue wait")
        .with_kind(SpanKind::Internal)
        .with_start_time(UNIX_EPOCH + Duration::from_millis(submitted))
        .with_attributes([opentelemetry::KeyValue::new("job_id", job.id.to_string())])
        .start_with_context(&tracer, &parent);
    span.end();
}

/// The trace id of the current job: its span's, else the one its message carries.
pub fn trace_id(message: &Message) -> Option<String> {
    jetmill_natsx::trace::trace_id(&tracing::Span::current()).or_else(|| {
        use opentelemetry::trace::TraceContextExt;
        let cx = jetmill_natsx::trace::extract(message.headers.as_ref());
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    })
}

/// Time since the job was submitted (zero if the clocks disagree).
pub fn queue_wait(job: &JobMessage) -> Duration {
    Duration::from_millis(u64::try_from(now_ms() - job.submitted_at_ms).unwrap_or(0))
}

/// Bind the metrics listener.
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Serve `/metrics` on `listener` until `shutdown`.
pub fn spawn_metrics(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "worker metrics listening on /metrics");
    }
    tokio::spawn(async move {
        if let Err(e) = jetmill_metrics::serve(listener, metrics, shutdown).await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
}
