//! `/healthz` (the process serves) and `/readyz` (NATS and JetStream answer).

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: connected to NATS and JetStream answers an account query.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "NATS connected and JetStream answers", body = Object),
        (status = 503, description = "Not ready, with what is wrong", body = Object),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let jet = state.jet();
    let connected = jet.client.connection_state() == async_nats::connection::State::Connected;
    let js = if connected {
        jet.js.query_account().await.map_err(|e| e.to_string())
    } else {
        Err("not connected".into())
    };
    match js {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "nats": "connected", "jetstream": "ok" })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "nats": if connected { "connected" } else { "disconnected" }, "jetstream": e }),
                ),
            )
        }
    }
}
