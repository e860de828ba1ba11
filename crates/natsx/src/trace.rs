//! W3C trace context (`traceparent`, `tracestate`) in NATS message headers.
//!
//! The gateway injects the context of its current span into a job message; a worker
//! makes its `job` span a child of it, so one trace runs from the HTTP request to the
//! result. Lifecycle events carry the context of the span that published them.
//! Without an OpenTelemetry layer installed the current span has no context, and
//! nothing is injected.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Add the current span's trace context to `headers` (nothing when there is none).
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Inject(headers)));
}

/// The trace context carried by `headers` (empty when there is none).
pub fn extract(headers: Option<&HeaderMap>) -> opentelemetry::Context {
    match headers {
        Some(h) => opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(h))),
        None => opentelemetry::Context::new(),
    }
}

/// Make `span` a child of the trace context in `headers`, and return the trace id
/// (32 hex digits) the span belongs to, if any.
///
/// Call it before the span is first entered.
pub fn adopt(span: &tracing::Span, headers: Option<&HeaderMap>) -> Option<String> {
    let parent = extract(headers);
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        // Fails only when no OpenTelemetry layer is installed: the trace id still counts.
        let _ = span.set_parent(parent);
    }
    trace_id(span).or_else(|| remote.is_valid().then(|| remote.trace_id().to_string()))
}

/// The trace id of `span` when it is being traced (32 hex digits).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
