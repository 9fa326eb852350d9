//! Operations endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::AppError;
use crate::nodes::{NodeHealth, RtcdMode};

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The node takes traffic: not draining, the database answers and, with
/// external media nodes, at least one of them is up and takes new calls
/// (the embedded node is part of this process, so it counts as up).
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    if state.is_draining() {
        return Err(AppError::Unavailable);
    }
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: database does not answer");
        AppError::Unavailable
    })?;
    if state.config.rtcd.mode == RtcdMode::External {
        let nodes = state.nodes.status();
        if !nodes.iter().any(|n| n.health == NodeHealth::Up) {
            let seen: Vec<String> = nodes
                .iter()
                .map(|n| format!("{} {:?}", n.key, n.health).to_lowercase())
                .collect();
            return Err(AppError::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_media_node",
                format!(
                    "no media node is up to take new calls ({})",
                    if seen.is_empty() {
                        "none known".into()
                    } else {
                        seen.join(", ")
                    }
                ),
            ));
        }
    }
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
