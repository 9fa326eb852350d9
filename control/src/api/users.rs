//! Users: creation by a system admin, lookup by id.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::auth::Client;
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::{CurrentUser, password};
use crate::db::users::{self, NewUser, SystemRole, User};
use crate::error::AppError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "user".into()
}

/// Checks and creates a local user (API and CLI share it).
pub async fn create_local_user(
    state: &AppState,
    username: &str,
    pw: &str,
    email: Option<&str>,
    display_name: &str,
    role: SystemRole,
) -> Result<User, AppError> {
    users::check_username(username).map_err(|e| AppError::BadRequest(e.into()))?;
    if display_name.chars().count() > 128 {
        return Err(AppError::BadRequest(
            "display_name is at most 128 characters".into(),
        ));
    }
    if email.is_some_and(|e| e.len() > 254 || !e.contains('@')) {
        return Err(AppError::BadRequest("email is not an address".into()));
    }
    password::check_policy(&state.config.auth, username, pw)
        .map_err(|p| AppError::BadRequest(p.join("; ")))?;
    let pw = pw.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::Internal)?;
    Ok(users::create(
        &state.db,
        NewUser {
            username,
            email,
            display_name,
            password_hash: Some(&hash),
            role,
        },
        state.clock.now_ms(),
    )
    .await?)
}

pub async fn create(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Json(req): Json<CreateUser>,
) -> Result<Response, AppError> {
    if !user.is_admin() {
        return Err(AppError::Forbidden("only system admins create users"));
    }
    let role = SystemRole::parse(&req.role)
        .ok_or_else(|| AppError::BadRequest("role must be admin, user or guest".into()))?;
    let new = create_local_user(
        &state,
        &req.username,
        &req.password,
        req.email.as_deref(),
        &req.display_name,
        role,
    )
    .await?;
    audit::record(
        "user_create",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("user {} ({}) as {}", new.id, new.username, role.as_str()),
    );
    Ok(created(new))
}

pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<User>, AppError> {
    let mut u = users::get(&state.db, &id).await?;
    u.email = None;
    Ok(Json(u))
}
