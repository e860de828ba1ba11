//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they return.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::OpenApi;

/// The body of `POST /v1/jobs` (validated by hand so errors name the field; this type
/// describes it for the document).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SubmitBody {
    /// What to compute.
    pub kind: jetmill_proto::JobKind,
    /// n for factorial/fibonacci (integer or decimal string); an array of integers or
    /// decimal strings for sum.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// `{"modulus": m}` for fibonacci (1 <= m < 2^64).
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// Queue priority (default normal).
    pub priority: Option<jetmill_proto::Priority>,
    /// Attempts before the job fails (1..20).
    pub max_attempts: Option<u32>,
    /// Wall-clock limit per attempt, seconds.
    pub timeout_secs: Option<f64>,
    /// Failure injection: `{"fail_probability": 0.2, "delay_ms": [100, 500], "panic": false}`.
    #[schema(value_type = Option<Object>)]
    pub chaos: Option<serde_json::Value>,
}

/// The document's root: every route and the types they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jetmill",
        description = "Distributed exact big-number jobs over NATS JetStream. Errors are RFC 9457 problem details (application/problem+json).",
    ),
    paths(
        super::jobs::submit,
        super::list::list,
        super::live::get_one,
        super::cancel::cancel,
        super::jobs::result,
        super::batch::submit,
        super::batch::get_one,
        super::batch::cancel,
        super::live::events,
        super::live::feed,
        super::usage::usage,
        super::workers::list,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(
        SubmitBody,
        crate::error::Problem,
        super::jobs::Submitted,
        super::list::JobList,
        super::batch::BatchSubmitted,
        super::batch::BatchStatus,
        jetmill_proto::BatchItem,
        jetmill_proto::BatchCounts,
        jetmill_proto::JobRecord,
        jetmill_proto::JobEvent,
        jetmill_proto::Usage,
        jetmill_proto::WorkerReport,
        super::workers::WorkersView,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Adds the bearer scheme (JWT or API key).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> impl IntoResponse {
    let body = ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body)
}
