//! Teams and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::access::team_role;
use super::auth::Client;
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::CurrentUser;
use crate::db::channels;
use crate::db::teams::{self, Team, TeamRole};
use crate::db::users;
use crate::error::AppError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
    pub display_name: String,
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<CreateTeam>,
) -> Result<Response, AppError> {
    if user.is_guest() {
        return Err(AppError::Forbidden("guests cannot create teams"));
    }
    channels::check_name(&req.name)
        .map_err(|e| AppError::BadRequest(e.replace("channel", "team")))?;
    let display = req.display_name.trim();
    if display.is_empty() || display.chars().count() > 64 {
        return Err(AppError::BadRequest(
            "display_name must be 1 to 64 characters".into(),
        ));
    }
    let team = teams::create(
        &state.db,
        &req.name,
        display,
        user.id(),
        state.clock.now_ms(),
    )
    .await?;
    Ok(created(team))
}

pub async fn mine(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Team>>, AppError> {
    Ok(Json(teams::list_for_user(&state.db, user.id()).await?))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Team>, AppError> {
    team_role(&state, &user, &id).await?;
    Ok(Json(teams::get(&state.db, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: String,
    #[serde(default = "member")]
    pub role: String,
}

fn member() -> String {
    "member".into()
}

/// Adds a user to the team or changes their role (team admins only).
pub async fn add_member(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<AddMember>,
) -> Result<StatusCode, AppError> {
    if team_role(&state, &user, &id).await? != TeamRole::Admin {
        return Err(AppError::Forbidden("only team admins add members"));
    }
    let role = TeamRole::parse(&req.role)
        .ok_or_else(|| AppError::BadRequest("role must be admin, member or guest".into()))?;
    let target = users::get(&state.db, &req.user_id)
        .await
        .map_err(|_| AppError::BadRequest("user_id names no user".into()))?;
    teams::set_member(&state.db, &id, &target.id, role, state.clock.now_ms()).await?;
    audit::record(
        "team_member_set",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("team {id}: user {} as {}", target.id, role.as_str()),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Team admins remove anyone; a member may remove themself.
pub async fn remove_member(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let role = team_role(&state, &user, &id).await?;
    if role != TeamRole::Admin && user_id != user.id() {
        return Err(AppError::Forbidden("only team admins remove other members"));
    }
    teams::remove_member(&state.db, &id, &user_id, state.clock.now_ms()).await?;
    state.announce();
    audit::record(
        "team_member_remove",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("team {id}: user {user_id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}
