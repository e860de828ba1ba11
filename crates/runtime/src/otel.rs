//! OpenTelemetry trace export over OTLP/HTTP (protobuf), switched on by the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables.
//!
//! When neither is set, [`tracer_provider`] returns `None` and the subscriber gets no
//! OpenTelemetry layer at all, so spans cost what they cost without tracing export.
//! The W3C trace-context propagator is installed either way: it is cheap, and it lets a
//! process without an exporter still read (and log) the trace id it was handed.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// Variables that switch export on (the OpenTelemetry SDK's standard names).
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Whether an OTLP endpoint is configured in the environment.
pub fn export_configured() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The service name: `OTEL_SERVICE_NAME` when set, else `default`.
pub fn service_name(default: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The OTLP exporter rejected its configuration (e.g. a malformed endpoint).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Build the provider exporting to the configured endpoint, or `None` when export is off.
///
/// The exporter reads the endpoint, headers and timeout from the `OTEL_*` variables
/// itself; the batch processor honours `OTEL_BSP_*` (e.g. `OTEL_BSP_SCHEDULE_DELAY`).
pub fn tracer_provider(default_service: &str) -> Result<Option<SdkTracerProvider>, OtelError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if !export_configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(service_name(default_service))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok(Some(provider))
}

/// The tracer jetmill's spans are recorded with.
pub fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("jetmill")
}

/// Owns the trace pipeline of a process; [`Telemetry::shutdown`] flushes it.
#[derive(Default)]
pub struct Telemetry {
    /// Present only when an OTLP endpoint was configured.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub(crate) fn new(provider: Option<SdkTracerProvider>) -> Self {
        Telemetry { provider }
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export what is still buffered and stop the exporter (at most a few seconds).
    ///
    /// Call it once, after the process's work has stopped. The exporter's HTTP client
    /// blocks, so this runs on the blocking pool.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("jetmill: flushing traces failed: {e}"),
            Err(e) => eprintln!("jetmill: flushing traces failed: {e}"),
        }
    }
}
