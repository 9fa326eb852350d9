//! Media effects of call events: every node's dispatcher passes each
//! `call_*` event here, and the node that owns the session tells rtcd.
//! Other nodes only forget what they knew of it.

use signaling::call::{LeaveReason, Participant};
use signaling::events::Event;
use signaling::rtcd::ToRtcd;

use crate::AppState;
use crate::db::calls;

/// What rtcd must enforce for `p`, sent to the call's node.
pub fn enforce(state: &AppState, node: &str, p: &Participant) {
    let s = &p.session_id;
    let msgs = [
        ToRtcd::SetMuted {
            session_id: s.clone(),
            muted: p.muted,
        },
        ToRtcd::SetVideo {
            session_id: s.clone(),
            enabled: p.camera,
        },
        ToRtcd::SetScreen {
            session_id: s.clone(),
            enabled: p.screen,
        },
    ];
    for m in msgs {
        if let Err(e) = state.nodes.send(node, m) {
            // Failover re-adds the session with its stored state.
            tracing::debug!(error = %e, session = %s, "media state not sent");
            return;
        }
    }
}

/// Called by the dispatcher for every event, in log order.
pub async fn observe(state: &AppState, event: &Event) {
    match event {
        Event::CallParticipantChanged {
            call_id,
            participant,
            ..
        } => {
            if state.calls.local(&participant.session_id).is_none() {
                return;
            }
            match target(state, call_id.as_str(), participant.session_id.as_str()).await {
                Target::Node(node) => enforce(state, &node, participant),
                // No node holds the session until the client offers again
                // (the relay then re-adds it with its stored state): a
                // change sent now would only earn the client an error.
                Target::MediaLost => {}
                Target::Gone => state.calls.forget(&participant.session_id),
            }
        }
        Event::CallLeft {
            call_id,
            session_id,
            reason,
            ..
        } => {
            if state.calls.local(session_id).is_none() {
                return;
            }
            state.calls.forget(session_id);
            // An ended call's sessions close with it on rtcd.
            if *reason == LeaveReason::CallEnded {
                return;
            }
            match calls::get(&state.db, call_id.as_str()).await {
                Ok(call) => {
                    let _ = state.nodes.send(
                        &call.node,
                        ToRtcd::RemoveSession {
                            session_id: session_id.clone(),
                            request: None,
                        },
                    );
                }
                Err(e) => tracing::warn!(error = %e, "removing a session: call unknown"),
            }
        }
        Event::CallEnded { call_id, .. } => state.calls.forget_call(call_id),
        _ => {}
    }
}

/// Where a participant change must be enforced, as seen by this node.
enum Target {
    /// The call's node: this node owns the live session and rtcd holds it.
    Node(String),
    /// This node owns the session, but its media is lost (its node died or
    /// the client went away): rtcd does not hold it now.
    MediaLost,
    /// The session left or another node speaks for it.
    Gone,
}

async fn target(state: &AppState, call_id: &str, session_id: &str) -> Target {
    let Ok(Some(s)) = calls::session(&state.db, session_id).await else {
        return Target::Gone;
    };
    if s.owner != state.node_instance || !s.live() {
        return Target::Gone;
    }
    if s.media_lost_at.is_some() {
        return Target::MediaLost;
    }
    match calls::get(&state.db, call_id).await {
        Ok(c) => Target::Node(c.node),
        Err(_) => Target::Gone,
    }
}
