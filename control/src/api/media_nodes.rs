//! `GET /api/v1/admin/media-nodes`: the media nodes as this control node
//! sees them, for system admins deciding what to drain, restart or add.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use signaling::rtcd::NodeLoad;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::calls;
use crate::error::AppError;
use crate::nodes::NodeHealth;

#[derive(Serialize)]
pub struct MediaNodes {
    pub nodes: Vec<MediaNode>,
}

#[derive(Serialize)]
pub struct MediaNode {
    /// The node's API address (its key in `[rtcd] nodes` or from DNS).
    pub address: String,
    /// The name the node gave itself (`node_id`), once it has been heard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub state: NodeHealth,
    pub embedded: bool,
    /// Its last load report, as it sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<NodeLoad>,
    /// Running calls the database places on this node.
    pub calls_placed: i64,
    /// When it last sent anything (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard_at: Option<i64>,
    /// Why it is, or last was, down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<MediaNodes>, AppError> {
    if !user.is_admin() {
        return Err(AppError::Forbidden(
            "only system admins see the media nodes",
        ));
    }
    let placed = calls::running_per_node(&state.db).await?;
    let nodes = state
        .nodes
        .status()
        .into_iter()
        .map(|s| MediaNode {
            calls_placed: placed
                .iter()
                .find(|(k, _)| *k == s.key)
                .map_or(0, |(_, n)| *n),
            address: s.key,
            node_id: s.node_id,
            state: s.health,
            embedded: s.embedded,
            load: s.load,
            last_heard_at: s.last_heard_ms,
            last_error: s.last_error,
        })
        .collect();
    Ok(Json(MediaNodes { nodes }))
}
