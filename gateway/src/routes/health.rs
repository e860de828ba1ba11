//! `/healthz` (the process serves) and `/readyz` (NATS and JetStream answer, and the
//! JetStream store takes writes).

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

/// Readiness: connected to NATS, JetStream answers an account query, and a tiny probe
/// write is not refused for a storage limit (a full store makes every submit fail, so
/// the gateway is not ready; the body says which limit).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "NATS connected, JetStream answers, the store takes writes", body = Object),
        (status = 503, description = "Not ready, with what is wrong (e.g. the store is full, naming the limit)", body = Object),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let jet = state.jet();
    let connected = jet.connected();
    let probe = if connected {
        crate::store::probe(jet).await.map_err(|e| e.to_string())
    } else {
        Err("not connected".into())
    };
    let unavailable = |body: Value| {
        tracing::warn!(body = %body, "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    };
    match probe {
        Ok(store) => {
            state.metrics().store.set(
                store.used_bytes,
                store.reserved_bytes,
                store.account_limit_bytes,
                store.full.is_some(),
            );
            match store.full {
                Some(limit) => unavailable(json!({
                    "status": "unavailable",
                    "nats": "connected",
                    "jetstream": "store full",
                    "reason": limit.reason,
                    "limit": limit.limit,
                    "err_code": limit.err_code,
                    "store": store,
                })),
                None => {
                    let mut body = json!({
                        "status": "ready", "nats": "connected", "jetstream": "ok", "store": store,
                    });
                    if store.near_full() {
                        body["warning"] = json!(format!(
                            "the JetStream store is at {:.0}% of the account limit",
                            store.used_share().unwrap_or(1.0) * 100.0
                        ));
                    }
                    (StatusCode::OK, Json(body))
                }
            }
        }
        Err(e) => unavailable(json!({
            "status": "unavailable",
            "nats": if connected { "connected" } else { "disconnected" },
            "jetstream": e,
        })),
    }
}
