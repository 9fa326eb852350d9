//! Bot accounts. System admins create them (naming an owner, themselves
//! by default) and see all; an owner sees, disables and mints tokens for
//! their own. Anyone else gets 404 for a bot id, as for any id they may
//! not know. A bot has no password: it acts only through access tokens,
//! and disabling it revokes them.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::auth::{Client, CreatedToken, NewToken};
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::tokens::{hash_secret, random_secret};
use crate::auth::{CurrentUser, PAT_PREFIX};
use crate::db::bots::{self, Bot, NewBot};
use crate::db::{sessions, users};
use crate::error::AppError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBot {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    /// Defaults to the caller.
    #[serde(default)]
    pub owner_id: Option<String>,
}

fn actor<'a>(user: &'a CurrentUser, client: &'a Client) -> Actor<'a> {
    Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    }
}

pub async fn create(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Json(req): Json<CreateBot>,
) -> Result<Response, AppError> {
    if !user.is_admin() {
        return Err(AppError::Forbidden("only system admins create bots"));
    }
    let username = req.username.trim().to_ascii_lowercase();
    users::check_username(&username).map_err(|e| AppError::BadRequest(e.into()))?;
    if req.display_name.chars().count() > 128 || req.description.chars().count() > 1024 {
        return Err(AppError::BadRequest(
            "display_name is at most 128 characters, description at most 1024".into(),
        ));
    }
    let owner = match &req.owner_id {
        Some(id) => {
            users::get(&state.db, id)
                .await
                .map_err(|_| AppError::BadRequest("owner_id names no user".into()))?
                .id
        }
        None => user.id().to_owned(),
    };
    let display = if req.display_name.trim().is_empty() {
        username.as_str()
    } else {
        req.display_name.trim()
    };
    let bot = bots::create(
        &state.db,
        NewBot {
            username: &username,
            display_name: display,
            description: req.description.trim(),
            owner_id: &owner,
        },
        state.clock.now_ms(),
    )
    .await?;
    audit::record(
        "bot_create",
        &actor(&user, &client),
        "success",
        &format!("bot {} ({}) owned by {owner}", bot.user_id, bot.username),
    );
    Ok(created(bot))
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Bot>>, AppError> {
    let owner = (!user.is_admin()).then(|| user.id());
    Ok(Json(bots::list(&state.db, owner).await?))
}

/// The bot if the caller may manage it (its owner or a system admin).
async fn managed(state: &AppState, user: &CurrentUser, id: &str) -> Result<Bot, AppError> {
    let bot = bots::get(&state.db, id).await?;
    if user.is_admin() || bot.owner_id == user.id() {
        Ok(bot)
    } else {
        Err(AppError::NotFound)
    }
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Bot>, AppError> {
    Ok(Json(managed(&state, &user, &id).await?))
}

async fn set_disabled(
    state: AppState,
    client: Client,
    user: CurrentUser,
    id: String,
    disabled: bool,
) -> Result<Json<Bot>, AppError> {
    managed(&state, &user, &id).await?;
    let revoked = bots::set_disabled(&state.db, &id, disabled, state.clock.now_ms()).await?;
    if disabled {
        // Its sockets go too: a token that no longer works must not keep a
        // live event stream open.
        state.hub.close_user(&id);
    }
    audit::record(
        if disabled {
            "bot_disable"
        } else {
            "bot_enable"
        },
        &actor(&user, &client),
        "success",
        &format!("bot {id}; {revoked} tokens revoked"),
    );
    Ok(Json(bots::get(&state.db, &id).await?))
}

/// Disabling revokes every token of the bot; it cannot act until enabled
/// and given a new token.
pub async fn disable(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Bot>, AppError> {
    set_disabled(state, client, user, id, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Bot>, AppError> {
    set_disabled(state, client, user, id, false).await
}

/// Mints an access token for the bot (shown once).
pub async fn create_token(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<NewToken>,
) -> Result<Response, AppError> {
    let bot = managed(&state, &user, &id).await?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(AppError::BadRequest(
            "name must be 1 to 64 characters".into(),
        ));
    }
    if bot.disabled_at.is_some() {
        return Err(AppError::Invalid(
            "bot_disabled",
            "enable the bot before giving it a token".into(),
        ));
    }
    let token = random_secret(PAT_PREFIX);
    let info = sessions::create_token(
        &state.db,
        &bot.user_id,
        name,
        &hash_secret(&token),
        state.clock.now_ms(),
    )
    .await?;
    audit::record(
        "token_create",
        &actor(&user, &client),
        "success",
        &format!("token {} ({name}) for bot {}", info.id, bot.user_id),
    );
    Ok(created(CreatedToken { info, token }))
}
