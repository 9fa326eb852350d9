//! Users: creation by a system admin, lookup by id, and switching an
//! account off and on again (system admins; the admin CLI shares the code).
//!
//! Accounts are disabled, not deleted: their posts keep an author and
//! their username stays taken, so a mention or an export never points at
//! someone else. A disabled account logs in by no method, and every session
//! and token it had is ended in the same transaction.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::auth::Client;
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::{CurrentUser, password};
use crate::db::bots;
use crate::db::users::{self, Disabled, NewUser, SystemRole, User};
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

/// Switches account `target_id` off (ending its sessions and tokens and
/// closing its sockets on this node; other nodes' sockets close at their
/// next keep-alive check) or on again, and audits it as `actor`. Bots are
/// refused: they have their own switch (`/bots/{id}/disable`), which also
/// keeps their owner in charge.
pub async fn set_account_disabled(
    state: &AppState,
    target_id: &str,
    disabled: bool,
    actor: &Actor<'_>,
) -> Result<(User, Disabled), AppError> {
    let action = if disabled {
        "user_disable"
    } else {
        "user_enable"
    };
    if bots::is_bot(&state.db, target_id).await? {
        return Err(AppError::Invalid(
            "is_bot",
            "this account is a bot: use /api/v1/bots/{id}/disable or /enable".into(),
        ));
    }
    let ended = users::set_disabled(&state.db, target_id, disabled, state.clock.now_ms()).await?;
    if disabled {
        state.hub.close_user(target_id);
    }
    let user = users::get(&state.db, target_id).await?;
    audit::record(
        action,
        actor,
        "success",
        &format!(
            "user {target_id} ({}); {} session(s) ended, {} token(s) revoked",
            user.username, ended.sessions_ended, ended.tokens_revoked
        ),
    );
    Ok((user, ended))
}

async fn admin_sets_disabled(
    state: AppState,
    client: Client,
    user: CurrentUser,
    id: String,
    disabled: bool,
) -> Result<Json<User>, AppError> {
    let actor = Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    };
    let action = if disabled {
        "user_disable"
    } else {
        "user_enable"
    };
    // The same answer whether or not `id` exists: a non-admin learns nothing.
    if !user.is_admin() {
        audit::record(action, &actor, "denied", &format!("user {id}"));
        return Err(AppError::Forbidden(
            "only system admins disable or enable accounts",
        ));
    }
    if disabled && id == user.id() {
        return Err(AppError::Invalid(
            "cannot_disable_self",
            "an admin cannot disable their own account (another admin can)".into(),
        ));
    }
    let (u, _) = set_account_disabled(&state, &id, disabled, &actor).await?;
    Ok(Json(u))
}

/// Switches an account off: no login of any kind, every session and
/// token ended, its sockets closed.
pub async fn disable(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<User>, AppError> {
    admin_sets_disabled(state, client, user, id, true).await
}

/// Switches an account on again; the user logs in anew.
pub async fn enable(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<User>, AppError> {
    admin_sets_disabled(state, client, user, id, false).await
}
