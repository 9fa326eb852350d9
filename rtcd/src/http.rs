//! The HTTP surface: operations endpoints, the control WebSocket, WHIP/WHEP.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::node::Node;
use crate::{control_api, metrics, whip};

pub fn router(node: Arc<Node>) -> Router {
    let origins = &node.config.api.cors_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
        ]);
    let media = Router::new()
        .route("/whip/{call}", post(whip::whip_post))
        .route(
            "/whip/{call}/{session}",
            patch(whip::whip_patch).delete(whip::whip_delete),
        )
        .route("/whep/{call}", post(whip::whep_post))
        .route(
            "/whep/{call}/{session}",
            patch(whip::whep_patch).delete(whip::whep_delete),
        )
        .layer(cors);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/control", get(control_api::upgrade))
        .merge(media)
        .layer(DefaultBodyLimit::max(node.config.api.max_message_bytes))
        .with_state(node)
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn version() -> Response {
    axum::Json(serde_json::json!({
        "name": "rtcd",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": signaling::PROTOCOL_VERSION,
    }))
    .into_response()
}

async fn metrics_text(State(node): State<Arc<Node>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&node),
    )
        .into_response()
}
