//! rtcd's events for the sessions this node owns: answers, offers and
//! candidates to the client's socket; connection states into the call's
//! durable state; voice activity to the call as an ephemeral message.

use signaling::call::ServerSignal;
use signaling::events::ServerMessage;
use signaling::ids::SessionId;
use signaling::rtcd::{CloseReason, FromRtcd, SessionState};
use tokio::sync::broadcast::error::RecvError;

use super::LocalSession;
use crate::AppState;
use crate::bus::{Audience, Ephemeral};
use crate::db::calls;
use crate::nodes::NodeEvent;

/// Runs until aborted.
pub async fn run(state: AppState) {
    let mut rx = state.nodes.subscribe();
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Rtcd { node, msg }) => handle(&state, &node, msg).await,
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "calls: fell behind the media nodes' events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn handle(state: &AppState, node: &str, msg: FromRtcd) {
    match msg {
        FromRtcd::Answer { session_id, answer } => {
            signal(state, &session_id, ServerSignal::Answer { answer })
        }
        FromRtcd::Offer { session_id, offer } => {
            signal(state, &session_id, ServerSignal::Offer { offer })
        }
        FromRtcd::Candidate {
            session_id,
            candidate,
        } => signal(state, &session_id, ServerSignal::Candidate { candidate }),
        FromRtcd::SessionState {
            session_id,
            state: s,
        } => {
            let Some(local) = state.calls.local(&session_id) else {
                return;
            };
            let now = state.clock.now_ms();
            let call = local.call_id.as_str();
            let id = session_id.as_str();
            // A node the call moved away from (a drain, a false down) may
            // still report on its old copy of the session; only the
            // call's node speaks for its media.
            match calls::get(&state.db, call).await {
                Ok(c) if c.node == node => {}
                _ => {
                    tracing::debug!(session = %session_id, %node, "session state from a node the call is not on");
                    return;
                }
            }
            let r = match s {
                SessionState::Connecting => return,
                SessionState::Connected => calls::set_connected(&state.db, call, id, true, now)
                    .await
                    .map(drop),
                SessionState::Disconnected => calls::set_connected(&state.db, call, id, false, now)
                    .await
                    .map(drop),
                // Control closed it on purpose.
                SessionState::Closed {
                    reason: CloseReason::Removed | CloseReason::CallEnded,
                } => return,
                // The client may offer again within the grace window.
                SessionState::Closed { .. } => calls::media_lost(&state.db, call, id, now).await,
            };
            match r {
                Ok(()) => state.announce(),
                Err(e) => {
                    tracing::debug!(error = %e, session = %session_id, "session state not recorded")
                }
            }
        }
        FromRtcd::VoiceActivity {
            session_id,
            speaking,
        } => {
            let Some(local) = state.calls.local(&session_id) else {
                return;
            };
            let msg = ServerMessage::CallVoice {
                call_id: local.call_id.clone(),
                session_id,
                speaking,
            };
            state.bus.publish_ephemeral(Ephemeral {
                audience: Audience::Call {
                    call_id: local.call_id.to_string(),
                },
                except_conn: None,
                kind: "call_voice".into(),
                message: serde_json::to_string(&msg).unwrap_or_default(),
            });
        }
        FromRtcd::Error(e) => {
            let Some(session_id) = e.session_id.clone() else {
                tracing::debug!(error = ?e, "media node refused a request");
                return;
            };
            let Some(local) = state.calls.local(&session_id) else {
                return;
            };
            let code = serde_json::to_value(e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            deliver(
                state,
                &local,
                &ServerMessage::Error {
                    code: format!("media_{code}"),
                    message: format!("session {session_id}: {}", e.message),
                },
            );
        }
        _ => {}
    }
}

/// A negotiation message for one of this node's sessions.
fn signal(state: &AppState, session_id: &SessionId, signal: ServerSignal) {
    let Some(local) = state.calls.local(session_id) else {
        tracing::debug!(session = %session_id, "signal for a session this node does not own");
        return;
    };
    deliver(
        state,
        &local,
        &ServerMessage::CallSignal {
            call_id: local.call_id.clone(),
            session_id: session_id.clone(),
            signal,
        },
    );
}

pub(super) fn deliver(state: &AppState, local: &LocalSession, msg: &ServerMessage) {
    let json = serde_json::to_string(msg).unwrap_or_default();
    state
        .hub
        .deliver_signal(&local.user_id, local.conn.as_deref(), json.into());
}
