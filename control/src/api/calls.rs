//! Calls over REST: start or join, look, change one's own state, host
//! controls, leave, end, decline a ring, react. Negotiation goes over the
//! WebSocket ([`crate::calls::relay`]).
//!
//! Only members of the call's channel see or touch it (403/404 as for
//! the channel's posts). Acting on a call needs a live session in it;
//! acting on someone else's session needs to be a host, and a host only
//! turns things off (mute, camera, screen, hand down).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signaling::call::{CallInfo, JoinInfo, LeaveReason, Participant, ParticipantChange};
use signaling::events::ServerMessage;

use super::access::member_channel;
use super::json::Json;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::bus::{Audience, Ephemeral};
use crate::calls::{join as calls_join, refusal};
use crate::db::calls::{self, CallRow, SessionRow};
use crate::error::AppError;

/// Longest emoji name or sequence accepted in a reaction.
pub const MAX_EMOJI_BYTES: usize = 64;

pub async fn start_or_join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
) -> Result<Json<JoinInfo>, AppError> {
    let (ch, _) = member_channel(&state, &user, &channel_id).await?;
    Ok(Json(calls_join::join(&state, user.id(), &ch).await?))
}

pub async fn in_channel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
) -> Result<Json<CallInfo>, AppError> {
    member_channel(&state, &user, &channel_id).await?;
    let call = calls::running_in(&state.db, &channel_id)
        .await?
        .ok_or(AppError::NotFound)?;
    info(&state, &call).await
}

async fn info(state: &AppState, call: &CallRow) -> Result<Json<CallInfo>, AppError> {
    let max = state.config.calls.max_participants;
    Ok(Json(
        calls::info_of(&state.db, call.id.as_str(), max).await?,
    ))
}

/// The call, if the user is a member of its channel (404 otherwise,
/// like an id that does not exist).
async fn member_call(
    state: &AppState,
    user: &CurrentUser,
    call_id: &str,
) -> Result<CallRow, AppError> {
    let call = match calls::get(&state.db, call_id).await {
        Ok(c) => c,
        Err(crate::db::DbError::NotFound) => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    member_channel(state, user, &call.channel_id).await?;
    Ok(call)
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<CallInfo>, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    info(&state, &call).await
}

/// The user's live sessions in the call and the call's live sessions.
async fn actor(
    state: &AppState,
    user: &CurrentUser,
    call: &CallRow,
) -> Result<(Vec<SessionRow>, Vec<SessionRow>), AppError> {
    if call.ended_at.is_some() {
        return Err(refusal(crate::db::DbError::Conflict("call_ended")));
    }
    let live = calls::live_sessions(&state.db, call.id.as_str()).await?;
    let mine: Vec<SessionRow> = live
        .iter()
        .filter(|s| s.participant.user_id == user.id())
        .cloned()
        .collect();
    if mine.is_empty() {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "not_in_call",
            "you are not in this call",
        ));
    }
    Ok((mine, live))
}

/// The running call, if the user is one of its hosts.
pub async fn hosted_call(
    state: &AppState,
    user: &CurrentUser,
    call_id: &str,
) -> Result<CallRow, AppError> {
    let call = member_call(state, user, call_id).await?;
    let (mine, _) = actor(state, user, &call).await?;
    require_host(&mine)?;
    Ok(call)
}

fn require_host(mine: &[SessionRow]) -> Result<(), AppError> {
    if mine.iter().any(|s| s.participant.host) {
        Ok(())
    } else {
        Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "not_host",
            "only a host of the call may do this",
        ))
    }
}

fn target<'a>(live: &'a [SessionRow], session_id: &str) -> Result<&'a SessionRow, AppError> {
    live.iter()
        .find(|s| s.participant.session_id.as_str() == session_id)
        .ok_or_else(|| refusal(crate::db::DbError::Conflict("session_not_found")))
}

pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((call_id, session_id)): Path<(String, String)>,
    Json(c): Json<ParticipantChange>,
) -> Result<Json<Participant>, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, live) = actor(&state, &user, &call).await?;
    let t = target(&live, &session_id)?;
    if t.participant.user_id != user.id() {
        require_host(&mine)?;
        let more = c.muted == Some(false)
            || c.camera == Some(true)
            || c.screen == Some(true)
            || c.hand_raised == Some(true);
        if more {
            return Err(AppError::refused(
                StatusCode::FORBIDDEN,
                "host_cannot_enable",
                "a host may mute, stop a camera or screen share, or lower a hand, \
                 never turn them on for someone else",
            ));
        }
    }
    let p = calls::change(&state.db, &call_id, &session_id, &c, state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    Ok(Json(p))
}

pub async fn make_host(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((call_id, session_id)): Path<(String, String)>,
) -> Result<Json<Participant>, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, live) = actor(&state, &user, &call).await?;
    require_host(&mine)?;
    target(&live, &session_id)?;
    let p = calls::make_host(&state.db, &call_id, &session_id, state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    Ok(Json(p))
}

/// Leave with one's own session, or (a host) remove another participant,
/// who cannot join this call again.
pub async fn leave(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((call_id, session_id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, live) = actor(&state, &user, &call).await?;
    let t = target(&live, &session_id)?;
    let reason = if t.participant.user_id == user.id() {
        LeaveReason::Left
    } else {
        require_host(&mine)?;
        LeaveReason::Removed
    };
    calls_join::leave(&state, &call_id, &session_id, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn mute_others(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<Vec<Participant>>, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, _) = actor(&state, &user, &call).await?;
    require_host(&mine)?;
    let muted = calls::mute_others(&state.db, &call_id, user.id(), state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    Ok(Json(muted))
}

pub async fn end(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<StatusCode, AppError> {
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, _) = actor(&state, &user, &call).await?;
    require_host(&mine)?;
    calls_join::end(&state, &call_id, user.id()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn decline(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
) -> Result<StatusCode, AppError> {
    member_call(&state, &user, &call_id).await?;
    calls::decline(&state.db, &call_id, user.id(), state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct React {
    pub emoji: String,
}

/// An emoji to everyone in the call, at most `[calls]
/// reactions_per_minute` per session: a flood is refused, the call goes on.
pub async fn react(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(call_id): Path<String>,
    Json(r): Json<React>,
) -> Result<Response, AppError> {
    let emoji = r.emoji;
    if emoji.is_empty()
        || emoji.len() > MAX_EMOJI_BYTES
        || emoji.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AppError::Invalid(
            "invalid_emoji",
            format!("emoji must be 1 to {MAX_EMOJI_BYTES} bytes without spaces"),
        ));
    }
    let call = member_call(&state, &user, &call_id).await?;
    let (mine, _) = actor(&state, &user, &call).await?;
    let session = mine[0].participant.session_id.clone();
    if let Err(wait) = state
        .calls
        .reactions
        .check(session.as_str(), state.clock.now_ms())
    {
        return Err(AppError::refused(
            StatusCode::TOO_MANY_REQUESTS,
            "reaction_rate_limited",
            format!("too many reactions; wait {wait} s"),
        ));
    }
    let msg = ServerMessage::CallReaction {
        call_id: call.id.clone(),
        session_id: session,
        user_id: user.id().to_owned(),
        emoji,
    };
    state.bus.publish_ephemeral(Ephemeral {
        audience: Audience::Call {
            call_id: call.id.to_string(),
        },
        except_conn: None,
        kind: "call_reaction".into(),
        message: serde_json::to_string(&msg).unwrap_or_default(),
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}
