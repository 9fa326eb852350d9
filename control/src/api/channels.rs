//! Channels: create, list, direct and group messages, join, leave, members,
//! read state.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signaling::events::{Channel, ChannelKind};

use super::access::{can_manage_channel, member_channel, team_role, visible_channel};
use super::json::{Json, created};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::channels::{self, NewChannel, Unread};
use crate::db::teams::{self, TeamRole};
use crate::db::users;
use crate::error::AppError;

/// Most members of a group message (beyond that, make a private channel).
pub const MAX_GROUP: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    pub name: String,
    pub display_name: String,
    /// "open" or "private".
    pub kind: ChannelKind,
    #[serde(default)]
    pub purpose: String,
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(team_id): Path<String>,
    Json(req): Json<CreateChannel>,
) -> Result<Response, AppError> {
    let role = team_role(&state, &user, &team_id).await?;
    if role == TeamRole::Guest || user.is_guest() {
        return Err(AppError::Forbidden("guests cannot create channels"));
    }
    if !matches!(req.kind, ChannelKind::Open | ChannelKind::Private) {
        return Err(AppError::BadRequest(
            "kind must be open or private; use /channels/direct or /channels/group".into(),
        ));
    }
    channels::check_name(&req.name).map_err(|e| AppError::BadRequest(e.into()))?;
    let display = req.display_name.trim();
    if display.is_empty() || display.chars().count() > 64 {
        return Err(AppError::BadRequest(
            "display_name must be 1 to 64 characters".into(),
        ));
    }
    if req.purpose.chars().count() > 250 {
        return Err(AppError::BadRequest(
            "purpose is at most 250 characters".into(),
        ));
    }
    let (ch, _) = channels::create(
        &state.db,
        NewChannel {
            team_id: Some(&team_id),
            kind: req.kind,
            name: &req.name,
            display_name: display,
            purpose: &req.purpose,
        },
        &[user.id()],
        state.clock.now_ms(),
    )
    .await?;
    state.announce();
    Ok(created(ch))
}

pub async fn list_for_team(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(team_id): Path<String>,
) -> Result<Json<Vec<Channel>>, AppError> {
    let role = team_role(&state, &user, &team_id).await?;
    let mut list = channels::list_for_team(&state.db, &team_id, user.id()).await?;
    if role == TeamRole::Guest {
        // Guests see only what they were added to.
        let mine: Vec<String> = channels::list_mine(&state.db, user.id())
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        list.retain(|c| mine.contains(&c.id));
    }
    Ok(Json(list))
}

pub async fn mine(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Channel>>, AppError> {
    Ok(Json(channels::list_mine(&state.db, user.id()).await?))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Channel>, AppError> {
    Ok(Json(visible_channel(&state, &user, &id).await?.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direct {
    pub user_id: String,
}

/// Opens (or finds) the direct channel between the caller and another user.
pub async fn direct(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<Direct>,
) -> Result<Response, AppError> {
    let other = users::get(&state.db, &req.user_id)
        .await
        .map_err(|_| AppError::BadRequest("user_id names no user".into()))?;
    let mut pair = [user.id().to_owned(), other.id.clone()];
    pair.sort();
    let name = pair.join("__");
    let (ch, new) = channels::create(
        &state.db,
        NewChannel {
            team_id: None,
            kind: ChannelKind::Direct,
            name: &name,
            display_name: "",
            purpose: "",
        },
        &[user.id(), other.id.as_str()],
        state.clock.now_ms(),
    )
    .await?;
    if new {
        state.announce();
        Ok(created(ch))
    } else {
        Ok(Json(ch).into_response())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub user_ids: Vec<String>,
}

/// Opens (or finds) the group channel of the caller and 2 to 7 others.
pub async fn group(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<Group>,
) -> Result<Response, AppError> {
    let mut ids: Vec<String> = req.user_ids;
    ids.push(user.id().to_owned());
    ids.sort();
    ids.dedup();
    if !(3..=MAX_GROUP).contains(&ids.len()) {
        return Err(AppError::BadRequest(format!(
            "a group has 3 to {MAX_GROUP} people, you included"
        )));
    }
    for id in &ids {
        users::get(&state.db, id)
            .await
            .map_err(|_| AppError::BadRequest(format!("user_ids: {id} names no user")))?;
    }
    let name = ids.join("__");
    let mut members: Vec<&str> = vec![user.id()];
    members.extend(ids.iter().map(String::as_str).filter(|i| *i != user.id()));
    let (ch, new) = channels::create(
        &state.db,
        NewChannel {
            team_id: None,
            kind: ChannelKind::Group,
            name: &name,
            display_name: "",
            purpose: "",
        },
        &members,
        state.clock.now_ms(),
    )
    .await?;
    if new {
        state.announce();
        Ok(created(ch))
    } else {
        Ok(Json(ch).into_response())
    }
}

/// Joins an open channel of one of the caller's teams.
pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let (ch, m) = visible_channel(&state, &user, &id).await?;
    if m.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    debug_assert_eq!(ch.kind, ChannelKind::Open);
    if channels::add_member(&state.db, &id, user.id(), state.clock.now_ms()).await? {
        state.announce();
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn leave(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let (ch, _) = member_channel(&state, &user, &id).await?;
    if ch.kind == ChannelKind::Direct {
        return Err(AppError::BadRequest(
            "a direct channel cannot be left".into(),
        ));
    }
    channels::remove_member(&state.db, &id, user.id(), state.clock.now_ms()).await?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn members(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<String>>, AppError> {
    member_channel(&state, &user, &id).await?;
    Ok(Json(channels::member_ids(&state.db, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: String,
}

/// Adds a team member to a channel. Members of a private channel may add
/// people; to an open one anyone in the team may join by themself, and
/// members may add others. Direct and group channels are fixed.
pub async fn add_member(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<AddMember>,
) -> Result<StatusCode, AppError> {
    let (ch, m) = member_channel(&state, &user, &id).await?;
    let Some(team) = &ch.team_id else {
        return Err(AppError::BadRequest(
            "direct and group channels have fixed members".into(),
        ));
    };
    if user.is_guest() && !can_manage_channel(&state, &user, &ch, &m).await? {
        return Err(AppError::Forbidden("guests cannot add members"));
    }
    if teams::role(&state.db, team, &req.user_id).await?.is_none() {
        return Err(AppError::BadRequest(
            "the user is not in the channel's team".into(),
        ));
    }
    if channels::add_member(&state.db, &id, &req.user_id, state.clock.now_ms()).await? {
        state.announce();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Marks the channel read for the caller.
pub async fn view(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    member_channel(&state, &user, &id).await?;
    channels::mark_viewed(&state.db, &id, user.id(), state.clock.now_ms()).await?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unreads(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Unread>>, AppError> {
    Ok(Json(channels::unreads(&state.db, user.id()).await?))
}
