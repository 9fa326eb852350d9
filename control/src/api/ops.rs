//! Operations endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::AppError;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The node takes traffic: not draining and the database answers.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    if state.is_draining() {
        return Err(AppError::Unavailable);
    }
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: database does not answer");
        AppError::Unavailable
    })?;
    Ok("ready\n")
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.db.pool),
    )
        .into_response()
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}
