//! Start-or-join, leave and end: the database change, then rtcd.

use axum::http::StatusCode;
use signaling::call::{JoinInfo, LeaveReason};
use signaling::events::{Channel, ChannelKind};
use signaling::ids::{CallId, SessionId};
use signaling::media::Permissions;
use signaling::rtcd::ToRtcd;

use super::{LocalSession, refusal};
use crate::AppState;
use crate::db::calls::{self, Joined, Joining, Left, Starting};
use crate::db::{DbError, new_id};
use crate::error::AppError;

/// Attempts at "start, or join the call someone else just started".
const ATTEMPTS: usize = 3;

fn fresh_id<T>(make: impl Fn(String) -> Result<T, signaling::ids::IdError>) -> T {
    make(new_id()).expect("a fresh id is well-formed")
}

/// Joins the channel's running call, or starts one (placed on a media
/// node) if none runs. The caller checked membership.
pub async fn join(
    state: &AppState,
    user_id: &str,
    channel: &Channel,
) -> Result<JoinInfo, AppError> {
    let session_id: SessionId = fresh_id(SessionId::new);
    let max_participants = state.config.calls.max_participants;
    let joining = Joining {
        user_id,
        session_id: &session_id,
        owner: &state.node_instance,
        max_participants,
        bot: false,
        now: state.clock.now_ms(),
    };
    let mut joined = None;
    for _ in 0..ATTEMPTS {
        if let Some(call) = calls::running_in(&state.db, &channel.id).await? {
            match calls::join(&state.db, call.id.as_str(), &joining).await {
                // It ended in between: start a new one.
                Err(DbError::Conflict("call_ended")) => continue,
                r => {
                    joined = Some(r.map_err(refusal)?);
                    break;
                }
            }
        }
        let call_id: CallId = fresh_id(CallId::new);
        let node = state.nodes.place(&call_id, &[]).await.map_err(|e| {
            AppError::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_media_node",
                format!("the call cannot start: {e}"),
            )
        })?;
        let starting = Starting {
            call_id: &call_id,
            channel_id: &channel.id,
            ring: matches!(channel.kind, ChannelKind::Direct | ChannelKind::Group),
            notify_teams: state.config.m365.notifications_on(),
            node: &node,
        };
        match calls::start(&state.db, &starting, &joining).await {
            Ok(j) => {
                joined = Some(j);
                break;
            }
            Err(e) => {
                let _ = state.nodes.send(
                    &node,
                    ToRtcd::EndCall {
                        call_id,
                        request: None,
                    },
                );
                match e {
                    // Someone else started one first: join theirs.
                    DbError::Conflict(calls::CALL_RUNNING) => continue,
                    e => return Err(refusal(e)),
                }
            }
        }
    }
    let Some(joined) = joined else {
        return Err(AppError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "call_busy",
            "the channel's call kept starting and ending; try again",
        ));
    };
    state.announce();
    if joined.started {
        state.teams_notifications.notify();
    }
    add_on_node(state, &joined).await?;
    Ok(JoinInfo {
        call_id: joined.call.id.clone(),
        session_id,
        ice_servers: super::ice::servers_for(
            &state.config.calls.ice_servers,
            user_id,
            state.clock.now_ms(),
        ),
        call: Some(joined.info),
    })
}

/// What rtcd lets a session do: a bot only receives.
pub fn permissions_of(p: &signaling::call::Participant) -> Permissions {
    if p.bot {
        Permissions::RECEIVE_ONLY
    } else {
        Permissions::PARTICIPANT
    }
}

/// A job's bot joins the running call `call`, receive-only. It never
/// starts a call: a recording of a call nobody is in has nothing to hold.
pub async fn join_bot(
    state: &AppState,
    user_id: &str,
    call: &calls::CallRow,
) -> Result<JoinInfo, AppError> {
    let session_id: SessionId = fresh_id(SessionId::new);
    let joining = Joining {
        user_id,
        session_id: &session_id,
        owner: &state.node_instance,
        max_participants: state.config.calls.max_participants,
        bot: true,
        now: state.clock.now_ms(),
    };
    let joined = calls::join(&state.db, call.id.as_str(), &joining)
        .await
        .map_err(refusal)?;
    state.announce();
    add_on_node(state, &joined).await?;
    Ok(JoinInfo {
        call_id: joined.call.id.clone(),
        session_id,
        ice_servers: super::ice::servers_for(
            &state.config.calls.ice_servers,
            user_id,
            state.clock.now_ms(),
        ),
        call: Some(joined.info),
    })
}

/// Adds the new session on the call's node with the state it joined with
/// (camera and screen off until the client turns them on). If the node
/// refuses, the session leaves again.
async fn add_on_node(state: &AppState, joined: &Joined) -> Result<(), AppError> {
    let p = &joined.participant;
    let node = &joined.call.node;
    let added = state
        .nodes
        .request(
            node,
            ToRtcd::AddSession {
                call_id: joined.call.id.clone(),
                session_id: p.session_id.clone(),
                permissions: permissions_of(p),
                request: None,
            },
        )
        .await;
    if let Err(e) = added {
        tracing::warn!(error = %e, call = %joined.call.id, "adding a session on its media node failed");
        let now = state.clock.now_ms();
        let left = calls::leave(
            &state.db,
            joined.call.id.as_str(),
            p.session_id.as_str(),
            LeaveReason::Disconnected,
            now,
        )
        .await;
        state.announce();
        if let Ok(l) = left {
            end_on_node(state, &l);
        }
        return Err(AppError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            format!("the call's media node did not take the session: {e}"),
        ));
    }
    state.calls.own(
        p.session_id.clone(),
        LocalSession {
            call_id: joined.call.id.clone(),
            user_id: p.user_id.clone(),
            conn: None,
        },
    );
    super::effects::enforce(state, node, p);
    Ok(())
}

/// The call ended with this change: rtcd closes what is left of it.
pub fn end_on_node(state: &AppState, left: &Left) {
    if let Some(call) = &left.ended {
        state.calls.forget_call(&call.id);
        tokio::spawn(super::jobs::call_ended(state.clone(), call.id.clone()));
        if let Err(e) = state.nodes.send(
            &call.node,
            ToRtcd::EndCall {
                call_id: call.id.clone(),
                request: None,
            },
        ) {
            // The node is gone, and the call's media with it.
            tracing::debug!(error = %e, call = %call.id, "ending a call on its node");
        }
    }
}

/// A session leaves (or a host removes its user). Removal from rtcd is
/// done by the sessions' owners when they see the event.
pub async fn leave(
    state: &AppState,
    call_id: &str,
    session_id: &str,
    reason: LeaveReason,
) -> Result<(), AppError> {
    let left = calls::leave(&state.db, call_id, session_id, reason, state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    end_on_node(state, &left);
    Ok(())
}

/// A host ends the call for everyone.
pub async fn end(state: &AppState, call_id: &str, by: &str) -> Result<(), AppError> {
    let left = calls::end(&state.db, call_id, by, state.clock.now_ms())
        .await
        .map_err(refusal)?;
    state.announce();
    end_on_node(state, &left);
    Ok(())
}
