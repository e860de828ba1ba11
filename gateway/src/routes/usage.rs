//! `GET /v1/usage`: the caller's job counters (an admin may ask for any tenant).

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use jetmill_proto::{names, Usage};
use serde::Deserialize;

/// Query of `GET /v1/usage`.
#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    /// Admins only: whose counters (default: the caller's).
    pub tenant: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(("tenant" = Option<String>, Query, description = "Admins only: whose counters")),
    responses(
        (status = 200, description = "The counters", body = Usage),
        (status = 400, description = "Another tenant without admin scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// Submitted, done, failed, cancelled and in-flight jobs of one tenant.
///
/// Counted from the stored job records (the gateway's index of them), including every
/// write acknowledged before the request.
pub async fn usage(
    State(state): State<AppState>,
    caller: Principal,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<Usage>, ApiError> {
    let bad = |message: String| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("tenant".into()),
        message,
    };
    let Query(params) = params.map_err(|e| bad(e.body_text()))?;
    let tenant = match params.tenant {
        None => caller.tenant.clone(),
        Some(t) if t == caller.tenant => t,
        Some(t) if caller.admin && names::is_valid_tenant(&t) => t,
        Some(_) if caller.admin => return Err(bad("not a tenant name".into())),
        Some(_) => return Err(bad("only an admin may read another tenant's usage".into())),
    };
    Ok(Json(crate::usage::read(state.index(), &tenant).await?))
}
