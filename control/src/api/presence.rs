//! Presence over REST: anyone's status by id, and one's own choice.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use signaling::events::PresenceStatus;

use super::json::{Json, Query};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::presence::Manual;
use crate::error::AppError;
use crate::presence;

/// Ids per `GET /users/status`.
pub const MAX_IDS: usize = 200;

#[derive(Serialize)]
pub struct UserStatus {
    pub user_id: String,
    pub status: PresenceStatus,
    /// What the user chose (`dnd`, `away`), when they chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual: Option<&'static str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ids {
    pub ids: String,
}

fn answer(list: Vec<(String, PresenceStatus, Option<Manual>)>) -> Vec<UserStatus> {
    list.into_iter()
        .map(|(user_id, status, manual)| UserStatus {
            user_id,
            status,
            manual: manual.map(Manual::as_str),
        })
        .collect()
}

/// `GET /users/status?ids=a,b,c`: existing users only, in the order asked.
pub async fn statuses(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(q): Query<Ids>,
) -> Result<Json<Vec<UserStatus>>, AppError> {
    let mut ids: Vec<String> = Vec::new();
    for id in q.ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if id.len() > 64 {
            return Err(AppError::BadRequest(format!("{id:?} is not a user id")));
        }
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    }
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(AppError::BadRequest(format!(
            "ids must name 1 to {MAX_IDS} users, separated by commas"
        )));
    }
    let mut known = Vec::with_capacity(ids.len());
    for id in ids {
        match crate::db::users::get(&state.db, &id).await {
            Ok(_) => known.push(id),
            Err(crate::db::DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(answer(presence::statuses(&state, &known).await?)))
}

pub async fn mine(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<UserStatus>, AppError> {
    let list = presence::statuses(&state, &[user.id().to_owned()]).await?;
    answer(list)
        .pop()
        .map(Json)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no status for the caller")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    /// `dnd`, `away`, or `online` (back to automatic).
    pub status: String,
}

/// `PUT /users/me/status {"status": "dnd" | "away" | "online"}`.
pub async fn set_mine(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<SetStatus>,
) -> Result<StatusCode, AppError> {
    let manual = match req.status.as_str() {
        "online" => None,
        other => Some(Manual::parse(other).ok_or_else(|| {
            AppError::BadRequest("status must be \"dnd\", \"away\" or \"online\"".into())
        })?),
    };
    presence::set_manual(&state, user.id(), manual).await?;
    Ok(StatusCode::NO_CONTENT)
}
