//! Process plumbing every jetmill binary shares: logging, tracing and shutdown signals.
//!
//! [`init`] installs a `tracing` subscriber whose filter can be changed at runtime
//! (the controller's `log-level`), in text or JSON, plus an OpenTelemetry layer that
//! exports spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otel`]).
//! [`shutdown_token`] turns SIGINT/SIGTERM into a `CancellationToken` that every
//! task watches, so a stop drains instead of cutting work off.

pub mod otel;

pub use otel::Telemetry;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::{
    filter::filter_fn, filter::LevelFilter, layer::SubscriberExt, reload, util::SubscriberInitExt,
    EnvFilter, Layer, Registry,
};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging flags shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `info,jetmill_worker=debug` (RUST_LOG syntax).
    #[arg(long = "log-level", env = "JETMILL_LOG", default_value = "info")]
    pub level: String,
    /// Log format.
    #[arg(long = "log-format", env = "JETMILL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
}

/// Changes the active log filter of a running process.
#[derive(Clone)]
pub struct LogHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogHandle {
    /// A handle that changes nothing (the process's logging is set up elsewhere).
    pub fn disabled() -> Self {
        LogHandle { handle: None }
    }

    /// Replace the filter; errors name what was wrong with `filter`.
    pub fn set_filter(&self, filter: &str) -> Result<(), String> {
        let f = EnvFilter::try_new(filter)
            .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
        match &self.handle {
            Some(h) => h.reload(f).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// Install the global subscriber without trace export. A second call (tests,
/// `jetmill dev`) keeps the first subscriber and returns a handle that changes nothing.
pub fn init_logging(args: &LogArgs) -> LogHandle {
    install(args, None)
}

/// Install the global subscriber; export spans over OTLP as `default_service` (unless
/// `OTEL_SERVICE_NAME` says otherwise) when an OTLP endpoint is configured.
///
/// Keep the returned [`Telemetry`] and call [`Telemetry::shutdown`] before exiting so
/// buffered spans are sent. A second call keeps the first subscriber.
pub fn init(args: &LogArgs, default_service: &str) -> (LogHandle, Telemetry) {
    let (provider, problem) = match otel::tracer_provider(default_service) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let handle = install(args, provider.as_ref());
    if let Some(problem) = problem {
        tracing::warn!(%problem, "trace export is off");
    }
    // A provider whose layer was not installed (second call) exports nothing; drop it.
    let telemetry = match (&handle.handle, provider) {
        (Some(_), Some(p)) => {
            // Spans made with the OpenTelemetry API directly (e.g. a worker's backdated
            // `queue wait`) go to the same pipeline.
            opentelemetry::global::set_tracer_provider(p.clone());
            Telemetry::new(Some(p))
        }
        (_, Some(p)) => {
            let _ = p.shutdown();
            Telemetry::default()
        }
        _ => Telemetry::default(),
    };
    (handle, telemetry)
}

fn install(
    args: &LogArgs,
    provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> LogHandle {
    // The log filter (reloadable: the controller's `log-level`) applies to the log
    // output only, so `log-level warn` does not switch tracing off; spans are
    // exported from `info` up whatever the log level.
    let filter = EnvFilter::try_new(&args.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match args.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let otel_layer = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(otel::tracer(p))
            .with_filter(filter_fn(exported))
    });
    let result = tracing_subscriber::registry()
        .with(output)
        .with(otel_layer)
        .try_init();
    LogHandle {
        handle: result.ok().map(|_| handle),
    }
}

/// What the trace exporter takes: events from `info` up, spans from `info` up, and
/// jetmill's own `debug` spans too. Those are the steps of a request or a job (publish,
/// fetch, compute, kernel, result write, events): wanted in a trace, noise in a log, and
/// per job too many to pay for when nobody exports. At `debug` they are off for the log
/// output at its default level, so without an exporter they cost nothing at all.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    let level = *meta.level();
    level <= LevelFilter::INFO
        || (meta.is_span() && level <= LevelFilter::DEBUG && meta.target().starts_with("jetmill"))
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        t.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
