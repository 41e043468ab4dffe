//! Probes and the API description.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::problem::ApiError;
use crate::routes::AppState;

/// Liveness: the process answers HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every backend's gRPC health service says SERVING (and the
/// gateway is not shutting down); otherwise 503 naming the ones down.
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::NotReady(vec![
            "gateway (shutting down)".to_owned(),
        ]));
    }
    let backends = app.backends.readiness().await;
    let down: Vec<String> = backends
        .iter()
        .filter(|(_, serving)| !serving)
        .map(|(name, _)| name.to_string())
        .collect();
    if !down.is_empty() {
        return Err(ApiError::NotReady(down));
    }
    let states: Map<String, Value> = backends
        .into_iter()
        .map(|(name, _)| (name.to_string(), Value::from("SERVING")))
        .collect();
    Ok(Json(json!({"status": "ready", "backends": states})))
}

/// The OpenAPI 3 document of this API.
pub async fn openapi() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
}
