//! `GET /v1/jobs`: the caller's jobs, newest first, filtered, in cursor pages.
//!
//! The cursor is the last job id of the previous page (ids are UUIDv7, so "older than
//! the cursor" is a stable position even while new jobs arrive). Clients treat it as
//! opaque and pass back `next_cursor` as `cursor`.
//!
//! Pages come from the gateway's in-memory index of the records ([`jetmill_natsx::JobIndex`]),
//! which first waits until it holds every write made before the request; if it cannot
//! (starting, down, behind) the page is built by scanning the bucket, with a warning.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use jetmill_metrics::ListSource;
use jetmill_natsx::ListQuery;
use jetmill_proto::{names, JobKind, JobRecord, JobStatus};
use serde::{Deserialize, Serialize};

/// Query of `GET /v1/jobs`; every field is optional and validated by hand so that
/// errors name the field.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// `pending`, `scheduled`, `running`, `done`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// `factorial`, `fibonacci` or `sum`.
    pub kind: Option<String>,
    /// Page size, 1..=1000 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Admins only: list this tenant (default: every tenant).
    pub tenant: Option<String>,
    /// Only the jobs of this batch (`POST /v1/jobs/batch`).
    pub batch: Option<String>,
    /// Only the jobs this recurring schedule made (`POST /v1/schedules`).
    pub schedule: Option<String>,
}

/// A page of `GET /v1/jobs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// Matching jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Most jobs one list call returns.
pub const MAX_LIST: usize = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_LIST: usize = 50;

fn bad(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some(field.into()),
        message,
    }
}

/// Turn the raw parameters into a store query for `caller`.
fn query(caller: &Principal, p: ListParams) -> Result<ListQuery, ApiError> {
    let status = p
        .status
        .map(|s| {
            s.parse::<JobStatus>().map_err(|_| {
                bad(
                    "status",
                    format!(
                        "unknown status {s:?}; use pending, scheduled, running, done, failed or cancelled"
                    ),
                )
            })
        })
        .transpose()?;
    let kind = p
        .kind
        .map(|s| {
            s.parse::<JobKind>().map_err(|_| {
                bad(
                    "kind",
                    format!("unknown kind {s:?}; use factorial, fibonacci or sum"),
                )
            })
        })
        .transpose()?;
    let limit = match p.limit {
        None => DEFAULT_LIST,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("limit must be a whole number from 1 to {MAX_LIST}"),
                )
            })?,
    };
    let before = p
        .cursor
        .map(|c| {
            c.parse().map_err(|_| {
                bad(
                    "cursor",
                    "not a cursor: pass back the next_cursor of the previous page".into(),
                )
            })
        })
        .transpose()?;
    let schedule = p
        .schedule
        .map(|c| {
            c.parse().map_err(|_| {
                bad(
                    "schedule",
                    "not a schedule id: pass the id POST /v1/schedules returned".into(),
                )
            })
        })
        .transpose()?;
    let tenant = match (p.tenant, caller.admin) {
        (None, true) => None,
        (None, false) => Some(caller.tenant.clone()),
        (Some(t), true) if names::is_valid_tenant(&t) => Some(t),
        (Some(_), true) => return Err(bad("tenant", "not a tenant name".into())),
        (Some(t), false) if t == caller.tenant => Some(t),
        (Some(_), false) => {
            return Err(bad(
                "tenant",
                "only an admin may list another tenant's jobs".into(),
            ))
        }
    };
    Ok(ListQuery {
        tenant,
        status,
        kind,
        schedule,
        before,
        limit,
    })
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(
        ("status" = Option<String>, Query, description = "pending, scheduled, running, done, failed or cancelled"),
        ("schedule" = Option<String>, Query, description = "Only the jobs this recurring schedule's firings made (its id from POST /v1/schedules)"),
        ("kind" = Option<String>, Query, description = "factorial, fibonacci or sum"),
        ("limit" = Option<u32>, Query, description = "Page size 1..1000 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("tenant" = Option<String>, Query, description = "Admins only: one tenant"),
        ("batch" = Option<String>, Query, description = "Only the jobs of this batch (its id from POST /v1/jobs/batch)"),
    ),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobList),
        (status = 400, description = "A bad parameter (`field` names it)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/jobs?status=&kind=&limit=&cursor=&batch=`: one page, newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(mut params) = params.map_err(|e| bad("query", e.body_text()))?;
    let batch = params.batch.take();
    let q = query(&caller, params)?;
    if let Some(batch) = batch {
        let (jobs, next) = super::batch::list_jobs(&state, &caller, &batch, &q).await?;
        return Ok(Json(JobList {
            jobs,
            next_cursor: next.map(|id| id.to_string()),
        }));
    }
    let page = match state.list_index() {
        Some(index) => match index.page(&q).await? {
            Ok(page) => {
                state.metrics().list.page(ListSource::Index);
                page
            }
            Err(not_ready) => {
                tracing::warn!(reason = %not_ready, "listing by scanning the bucket");
                state.metrics().list.page(ListSource::Scan);
                state.jet().records.page(&q).await?
            }
        },
        None => {
            state.metrics().list.page(ListSource::Scan);
            state.jet().records.page(&q).await?
        }
    };
    Ok(Json(JobList {
        jobs: page.jobs,
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}
