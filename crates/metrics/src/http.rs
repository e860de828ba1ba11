//! HTTP request metrics by route template, method and status, and the axum
//! middleware that records them.

use crate::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// Label set `{method, route, status}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Standard method name, or `other`.
    pub method: &'static str,
    /// The route template written `/v1/jobs/:id` (braces trip up some text-format
    /// parsers), or `unmatched`: never the raw path.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Label set `{method, route}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Standard method name, or `other`.
    pub method: &'static str,
    /// The route template, or `unmatched`.
    pub route: String,
}

fn latency_buckets() -> Histogram {
    // 1 ms .. ~60 s, x2.5 per bucket.
    Histogram::new(exponential_buckets(0.001, 2.5, 12))
}

/// Request counts and latencies.
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_buckets),
        }
    }
}

impl HttpMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "jetmill_http_requests",
            "HTTP requests answered, by method, route template and status",
            self.requests.clone(),
        );
        r.register(
            "jetmill_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response head), by method and route template",
            self.duration.clone(),
        );
    }

    /// Record one answered request.
    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        let route = route.to_string();
        self.duration
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }
}

/// `/v1/jobs/{id}` -> `/v1/jobs/:id`.
fn route_label(template: &str) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Axum middleware (`axum::middleware::from_fn_with_state`) counting every request.
///
/// Add it with `Router::layer`, which wraps each route, so the route template
/// ([`MatchedPath`]) is known; requests no route matched are `unmatched`.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| route_label(p.as_str()))
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.http.observe(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_templates_use_colon_parameters() {
        assert_eq!(
            super::route_label("/v1/jobs/{id}/result"),
            "/v1/jobs/:id/result"
        );
        assert_eq!(super::route_label("/v1/jobs"), "/v1/jobs");
    }
}
