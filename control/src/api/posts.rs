//! Posts: create (idempotent by pending id), list, thread, edit (history
//! kept), soft delete, reactions, pins.
//!
//! Messages are stored exactly as sent: no HTML is parsed, stripped or
//! rendered here, and every response is `application/json`. Clients render
//! messages as text.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signaling::events::{Post, Reaction};

use super::access::{can_manage_channel, member_channel, member_post};
use super::json::{Json, Query, created};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::posts::{self, Created, Edit, NewPost, parse_mentions};
use crate::error::AppError;

/// Most @usernames counted in one post.
pub const MAX_MENTIONS: usize = 50;
/// Longest client pending id.
pub const MAX_PENDING_ID: usize = 64;
/// Most posts per page.
pub const MAX_PAGE: i64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePost {
    pub message: String,
    #[serde(default)]
    pub root_id: Option<String>,
    /// The client's own id for this post: a retry with the same one
    /// returns the post already made (200) instead of a duplicate (201).
    #[serde(default)]
    pub pending_id: Option<String>,
    /// Uploads (`POST /channels/{id}/files`) to attach: the author's own,
    /// in this channel, not attached yet.
    #[serde(default)]
    pub file_ids: Vec<String>,
}

pub fn check_message(state: &AppState, message: &str) -> Result<(), AppError> {
    if message.trim().is_empty() {
        return Err(AppError::BadRequest("message is empty".into()));
    }
    let max = state.config.limits.max_post_chars;
    let n = message.chars().count();
    if n > max {
        return Err(AppError::BadRequest(format!(
            "message is {n} characters; at most {max} are allowed"
        )));
    }
    if message.contains('\0') {
        return Err(AppError::BadRequest(
            "message contains a NUL character".into(),
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
    Json(req): Json<CreatePost>,
) -> Result<Response, AppError> {
    member_channel(&state, &user, &channel_id).await?;
    // A post of files alone may have no text.
    if !req.message.is_empty() || req.file_ids.is_empty() {
        check_message(&state, &req.message)?;
    }
    if let Some(p) = &req.pending_id
        && (p.is_empty() || p.len() > MAX_PENDING_ID)
    {
        return Err(AppError::BadRequest(format!(
            "pending_id must be 1 to {MAX_PENDING_ID} bytes"
        )));
    }
    // A retry answers with the first post before its files, which that
    // post now holds, are checked again.
    if let Some(pid) = &req.pending_id
        && let Some(p) = posts::by_pending(&state.db, user.id(), pid).await?
    {
        if p.channel_id != channel_id {
            return Err(AppError::Conflict("pending_id_reused"));
        }
        return Ok(Json(p).into_response());
    }
    super::files::check_attachable(&state, user.id(), &channel_id, &req.file_ids).await?;
    let mentions = parse_mentions(&req.message, MAX_MENTIONS);
    let res = posts::create(
        &state.db,
        NewPost {
            channel_id: &channel_id,
            user_id: user.id(),
            root_id: req.root_id.as_deref(),
            message: &req.message,
            pending_id: req.pending_id.as_deref(),
            file_ids: &req.file_ids,
            notify_teams: state.config.m365.notifications_on(),
            ..Default::default()
        },
        &mentions,
        state.clock.now_ms(),
    )
    .await;
    match res {
        Ok(Created::New(p)) => {
            state.announce();
            state.deliveries.notify();
            state.teams_notifications.notify();
            state.metrics.posts_created.inc();
            Ok(created(p))
        }
        Ok(Created::Existing(p)) => Ok(Json(p).into_response()),
        Err(crate::db::DbError::NotFound) => Err(AppError::BadRequest(
            "root_id names no post of this channel".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// A post id: return posts older than it.
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Post>>, AppError> {
    member_channel(&state, &user, &channel_id).await?;
    let limit = page.limit.unwrap_or(60);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let before = match &page.before {
        None => None,
        Some(id) => {
            let p = posts::get(&state.db, id)
                .await
                .ok()
                .filter(|p| p.channel_id == channel_id)
                .ok_or_else(|| {
                    AppError::BadRequest("before names no post of this channel".into())
                })?;
            Some(p)
        }
    };
    Ok(Json(
        posts::list(&state.db, &channel_id, before.as_ref(), limit).await?,
    ))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Post>, AppError> {
    Ok(Json(member_post(&state, &user, &id).await?.0))
}

pub async fn thread(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Post>>, AppError> {
    let (p, _, _) = member_post(&state, &user, &id).await?;
    let root = p.root_id.unwrap_or(p.id);
    Ok(Json(posts::thread(&state.db, &root).await?))
}

pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Edit>>, AppError> {
    let (p, _, _) = member_post(&state, &user, &id).await?;
    if p.deleted {
        return Err(AppError::NotFound);
    }
    Ok(Json(posts::history(&state.db, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditPost {
    pub message: String,
}

/// Only the author edits a post.
pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<EditPost>,
) -> Result<Json<Post>, AppError> {
    let (p, _, _) = member_post(&state, &user, &id).await?;
    if p.deleted {
        return Err(AppError::NotFound);
    }
    if p.user_id != user.id() {
        return Err(AppError::Forbidden("only the author edits a post"));
    }
    check_message(&state, &req.message)?;
    let p = posts::edit(&state.db, &id, &req.message, state.clock.now_ms()).await?;
    state.announce();
    Ok(Json(p))
}

/// The author, channel admins, team admins and system admins delete.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let (p, ch, m) = member_post(&state, &user, &id).await?;
    if p.deleted {
        return Err(AppError::NotFound);
    }
    if p.user_id != user.id() && !can_manage_channel(&state, &user, &ch, &m).await? {
        return Err(AppError::Forbidden(
            "only the author or a channel admin deletes a post",
        ));
    }
    posts::delete(&state.db, &id, state.clock.now_ms()).await?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

/// Emoji names: 1 to 64 of `a-z 0-9 _ + -`.
fn check_emoji(e: &str) -> Result<(), AppError> {
    if (1..=64).contains(&e.len())
        && e.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b))
    {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "emoji names are 1 to 64 characters of a-z, 0-9, '_', '+' and '-'".into(),
        ))
    }
}

pub async fn react(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((id, emoji)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    check_emoji(&emoji)?;
    let (p, _, _) = member_post(&state, &user, &id).await?;
    if p.deleted {
        return Err(AppError::NotFound);
    }
    if posts::react(&state.db, &p, user.id(), &emoji, state.clock.now_ms()).await? {
        state.announce();
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unreact(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((id, emoji)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    check_emoji(&emoji)?;
    let (p, _, _) = member_post(&state, &user, &id).await?;
    posts::unreact(&state.db, &p, user.id(), &emoji, state.clock.now_ms()).await?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reactions(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Reaction>>, AppError> {
    member_post(&state, &user, &id).await?;
    Ok(Json(posts::reactions(&state.db, &id).await?))
}

async fn set_pin(
    state: AppState,
    user: CurrentUser,
    id: String,
    pinned: bool,
) -> Result<StatusCode, AppError> {
    let (p, _, _) = member_post(&state, &user, &id).await?;
    if p.deleted {
        return Err(AppError::NotFound);
    }
    posts::set_pinned(&state.db, &p, pinned, state.clock.now_ms()).await?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

/// Any member pins or unpins (as in the chat servers people know).
pub async fn pin(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_pin(state, user, id, true).await
}

pub async fn unpin(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_pin(state, user, id, false).await
}

pub async fn pinned(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
) -> Result<Json<Vec<Post>>, AppError> {
    member_channel(&state, &user, &channel_id).await?;
    Ok(Json(posts::pinned(&state.db, &channel_id).await?))
}
