//! [`ApiError`]: every failure a handler can return, mapped to HTTP in one place.
//!
//! Client mistakes get a 4xx and a message that says how to fix the request;
//! our own failures get an opaque 5xx body while the full cause goes to the log.
//! Bodies are RFC 9457 problem details (`application/problem+json`).

use crate::auth::AuthError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jetmill_natsx::NatsxError;
use jetmill_proto::ValidationError;
use serde::Serialize;

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field of the request is invalid (422, names the field).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The body is not JSON (400).
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body or a path/query parameter is unusable (400 or 413).
    #[error("{message}")]
    BadRequest {
        status: StatusCode,
        field: Option<String>,
        message: String,
    },
    /// No valid credentials (401 with `WWW-Authenticate: Bearer`).
    #[error(transparent)]
    Unauthorized(AuthError),
    /// No such job (or route) for this caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the job's state (409), e.g. a result of an unfinished job.
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` was reused for a different request (422).
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The operator disabled this job kind for now (503 with `Retry-After`).
    #[error("jobs of kind {kind} are disabled by the operator; retry later")]
    KindDisabled {
        kind: jetmill_proto::JobKind,
        retry_after_secs: u64,
    },
    /// Over a queue limit (429 with `Retry-After`).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// JetStream refused a write because a storage limit is reached (507 with
    /// `Retry-After`, naming the limit): nothing new can be stored until space is freed.
    #[error("the job store is full: {}; retry later", .0.reason)]
    StoreFull(crate::store::StoreLimit),
    /// NATS/JetStream is unreachable or refused the operation (503).
    #[error("job queue unavailable")]
    Unavailable(#[source] NatsxError),
    /// Anything else on our side (500).
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// RFC 9457 problem details, plus the offending field when there is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Short machine-readable problem kind, e.g. `invalid-field`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Human title of the problem kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong and how to fix the request.
    pub detail: String,
    /// The request field, header or parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The job kind the problem is about (a disabled kind).
    #[serde(rename = "kind", skip_serializing_if = "Option::is_none")]
    pub job_kind: Option<String>,
    /// The storage limit that is reached (a full store), e.g. `max_file_store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// JetStream's error code for it (a full store), e.g. 10023.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err_code: Option<u64>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<String>) {
        match self {
            ApiError::Invalid(v) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "Invalid request field",
                Some(v.field.clone()),
            ),
            ApiError::MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                Some("body".into()),
            ),
            ApiError::BadRequest { status, field, .. } => {
                (*status, "bad-request", "Bad request", field.clone())
            }
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                Some("Authorization".into()),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found", None),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the job's state",
                None,
            ),
            ApiError::IdempotencyConflict(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different request",
                Some("Idempotency-Key".into()),
            ),
            ApiError::KindDisabled { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "kind-disabled",
                "Job kind disabled",
                Some("kind".into()),
            ),
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many queued jobs",
                None,
            ),
            ApiError::StoreFull(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "store-full",
                "Job store full",
                None,
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Job queue unavailable",
                None,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                None,
            ),
        }
    }
}

impl ApiError {
    /// Whether this failure certainly published no job: a refusal (by us or by the
    /// server) rather than a lost answer. Only then may an idempotency claim be released.
    pub fn published_nothing(&self) -> bool {
        !matches!(self, ApiError::Unavailable(_) | ApiError::Internal(_))
    }
}

impl From<NatsxError> for ApiError {
    fn from(e: NatsxError) -> Self {
        match e {
            NatsxError::Corrupt { .. } => ApiError::Internal(e.into()),
            other => match crate::store::StoreLimit::find(&other) {
                Some(limit) => ApiError::StoreFull(limit),
                None => ApiError::Unavailable(other),
            },
        }
    }
}

/// A publish refused because the `JOBS` stream is at `--max-queued` becomes a 429.
pub(crate) fn queue_full(e: NatsxError, retry_after_secs: u64) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        // The server's answer: err_code 10077, "maximum messages exceeded" (or bytes).
        if c.downcast_ref::<async_nats::jetstream::Error>().is_some() || c.source().is_none() {
            let d = c.to_string();
            if d.contains("maximum messages") || d.contains("maximum bytes") {
                return ApiError::TooManyRequests {
                    message: "the job queue is full; retry later".into(),
                    retry_after_secs,
                };
            }
        }
        cause = c.source();
    }
    e.into()
}

/// nats-server's refusal of a schedule's pattern (10189) or time zone (10223), found
/// in `e`'s `source()` chain, as a 422 on that field.
pub(crate) fn broker_refusal(e: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(js) = c.downcast_ref::<async_nats::jetstream::Error>() {
            let (field, what) = match js.error_code().0 {
                10189 => ("cron", "nats-server refused the schedule's pattern (a date that never comes, such as 31 February?)"),
                10223 => ("time_zone", "nats-server does not know this time zone; use an IANA name such as Europe/Paris"),
                _ => return None,
            };
            return Some(ApiError::Invalid(ValidationError {
                field: field.into(),
                message: what.into(),
            }));
        }
        cur = c.source();
    }
    None
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The problem details this error answers with (also the per-item answer of a batch).
    pub fn problem(&self) -> Problem {
        let (status, kind, title, field) = self.parts();
        let detail = match self {
            ApiError::Invalid(v) => v.message.clone(),
            ApiError::Unavailable(_) => "the job queue is unavailable; retry shortly".to_string(),
            other => other.to_string(),
        };
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            field,
            job_kind: match self {
                ApiError::KindDisabled { kind, .. } => Some(kind.as_str().to_string()),
                _ => None,
            },
            limit: match self {
                ApiError::StoreFull(l) => Some(l.limit.to_string()),
                _ => None,
            },
            err_code: match self {
                ApiError::StoreFull(l) => Some(l.err_code),
                _ => None,
            },
        }
    }

    /// Log a server-side error with its whole cause chain (client errors are not logged).
    pub fn log_if_ours(&self) {
        if self.parts().0.is_server_error() {
            tracing::error!(error = %ErrorChain(self), "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, ..) = self.parts();
        self.log_if_ours();
        let body = self.problem();
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            json,
        )
            .into_response();
        if let ApiError::KindDisabled {
            retry_after_secs, ..
        }
        | ApiError::TooManyRequests {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let ApiError::StoreFull(_) = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::store::RETRY_AFTER_SECS),
            );
        }
        if let ApiError::Unauthorized(e) = &self {
            // RFC 6750: say how to authenticate, and why a presented token failed.
            let challenge = match e {
                AuthError::Missing => HeaderValue::from_static("Bearer realm=\"jetmill\""),
                _ => HeaderValue::from_static("Bearer realm=\"jetmill\", error=\"invalid_token\""),
            };
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Displays an error with its whole `source()` chain, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}
