//! A client's negotiation messages (`ClientMessage::CallSignal`) to the
//! call's rtcd node. Whatever a client sends, only its own live session
//! in a running call is spoken for; anything else is refused with a code
//! and touches nothing.

use signaling::call::ClientSignal;
use signaling::ids::{CallId, SessionId};
use signaling::rtcd::{ErrorCode, ToRtcd};

use super::LocalSession;
use crate::AppState;
use crate::db::calls;
use crate::nodes::RequestError;

/// Attempts at adding a session again while the node still removes the
/// copy it held (its close is routed within milliseconds).
const READD_ATTEMPTS: usize = 10;
const READD_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a signal was refused: the `ServerMessage::Error` to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn deny(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

pub async fn client_signal(
    state: &AppState,
    user_id: &str,
    conn_id: &str,
    call_id: CallId,
    session_id: SessionId,
    signal: ClientSignal,
) -> Result<(), Refused> {
    let internal = |e: crate::db::DbError| {
        tracing::warn!(error = %e, "call signal: database");
        deny("internal", "the signal could not be handled; try again")
    };
    let Some(s) = calls::session(&state.db, session_id.as_str())
        .await
        .map_err(internal)?
    else {
        return Err(deny(
            "unknown_session",
            format!("no call session {session_id} exists"),
        ));
    };
    if s.participant.user_id != user_id {
        return Err(deny(
            "not_your_session",
            format!("session {session_id} belongs to another participant"),
        ));
    }
    if s.call_id != call_id {
        return Err(deny(
            "not_in_call",
            format!("session {session_id} is not in call {call_id}"),
        ));
    }
    if !s.live() {
        return Err(match s.leave_reason.as_deref() {
            Some("removed") => deny(
                "removed_from_call",
                "a host removed you from this call; you cannot join it again",
            ),
            Some("call_ended") => deny("call_ended", "the call has ended"),
            _ => deny(
                "session_ended",
                format!("session {session_id} has left the call; join again"),
            ),
        });
    }
    let call = calls::get(&state.db, call_id.as_str())
        .await
        .map_err(internal)?;
    if call.ended_at.is_some() {
        return Err(deny("call_ended", "the call has ended"));
    }
    // This socket's node speaks for the session from now on.
    if s.owner != state.node_instance {
        calls::take_over(&state.db, session_id.as_str(), &state.node_instance)
            .await
            .map_err(internal)?;
    }
    state.calls.own(
        session_id.clone(),
        LocalSession {
            call_id: call_id.clone(),
            user_id: user_id.to_owned(),
            conn: Some(conn_id.to_owned()),
        },
    );
    let node = &call.node;
    let unavailable = |e: crate::nodes::NodeUnavailable| {
        deny(
            "media_unavailable",
            format!("the call's media node cannot be reached: {e}"),
        )
    };
    let msg = match signal {
        ClientSignal::Offer { offer, tracks } => {
            // The client starts over after its media was lost: rtcd has
            // forgotten the session, so add it again as it was.
            if s.media_lost_at.is_some() {
                add_again(state, node, &call_id, &s).await.map_err(|e| {
                    deny(
                        "media_unavailable",
                        format!("the call's media node did not take the session: {e}"),
                    )
                })?;
                super::effects::enforce(state, node, &s.participant);
                calls::media_back(&state.db, session_id.as_str())
                    .await
                    .map_err(internal)?;
            }
            ToRtcd::Offer {
                session_id,
                offer,
                tracks,
            }
        }
        ClientSignal::Answer { answer } => ToRtcd::Answer { session_id, answer },
        ClientSignal::Candidate { candidate } => ToRtcd::Candidate {
            session_id,
            candidate,
        },
        ClientSignal::IceRestart => ToRtcd::IceRestart { session_id },
        ClientSignal::SetQuality {
            publisher,
            source,
            quality,
        } => ToRtcd::SetQuality {
            session_id,
            publisher,
            source,
            quality,
        },
    };
    state.nodes.send(node, msg).map_err(unavailable)
}

/// Adds a session whose media was lost on `node` again, with its stored
/// permissions. A node that only seemed down, and now hosts the call
/// again, may still hold the session from before: that stale copy is
/// removed first, so the client's new offer is answered.
async fn add_again(
    state: &AppState,
    node: &str,
    call_id: &CallId,
    s: &calls::SessionRow,
) -> Result<(), RequestError> {
    let add = || ToRtcd::AddSession {
        call_id: call_id.clone(),
        session_id: s.participant.session_id.clone(),
        permissions: super::join::permissions_of(&s.participant),
        request: None,
    };
    let conflict = |r: &Result<(), RequestError>| matches!(r, Err(RequestError::Refused { error, .. }) if error.code == ErrorCode::Conflict);
    let mut r = state.nodes.request(node, add()).await;
    if !conflict(&r) {
        return r;
    }
    tracing::info!(session = %s.participant.session_id, %node, "the node still held the session; replacing it");
    let remove = ToRtcd::RemoveSession {
        session_id: s.participant.session_id.clone(),
        request: None,
    };
    match state.nodes.request(node, remove).await {
        Ok(()) | Err(RequestError::Refused { .. }) => {}
        Err(e) => return Err(e),
    }
    for _ in 0..READD_ATTEMPTS {
        tokio::time::sleep(READD_PAUSE).await;
        r = state.nodes.request(node, add()).await;
        if !conflict(&r) {
            break;
        }
    }
    r
}
