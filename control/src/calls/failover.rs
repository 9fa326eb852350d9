//! A call survives its media node. When the pool reports a node down,
//! every running call on it moves: one control node wins each move (a
//! conditional update of `calls.node`; the others read its choice). Then
//! every control node marks the sessions it owns as having lost their
//! media and tells those clients to start over
//! ([`ServerSignal::Reconnect`]); each client offers again on the same
//! session, and [`super::relay`] adds it on the new node with its stored
//! state, as after any loss of media. A client that does not come back is
//! ended by [`super::sweep`] like any other.

use signaling::call::{ReconnectReason, ServerSignal};
use signaling::events::ServerMessage;
use signaling::rtcd::ToRtcd;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::db::calls::{self, CallRow};
use crate::nodes::NodeEvent;

/// Runs until aborted.
pub async fn run(state: AppState) {
    let mut rx = state.nodes.subscribe();
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Down { node }) => {
                move_calls(&state, &node, ReconnectReason::NodeFailed).await
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "failover: fell behind the media nodes' events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Moves every running call off `old`.
pub async fn move_calls(state: &AppState, old: &str, reason: ReconnectReason) {
    let running = match calls::running_on(&state.db, old).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, node = %old, "failover: cannot list the node's calls");
            return;
        }
    };
    if !running.is_empty() {
        tracing::warn!(node = %old, calls = running.len(), "media node lost; moving its calls");
    }
    for call in running {
        if let Err(e) = move_call(state, &call, old, reason).await {
            tracing::error!(error = %e, call = %call.id, "failover: the call could not move");
        }
    }
}

async fn move_call(
    state: &AppState,
    call: &CallRow,
    old: &str,
    reason: ReconnectReason,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let current = calls::get(&state.db, call.id.as_str()).await?;
    if current.ended_at.is_some() {
        return Ok(());
    }
    let home = if current.node != old {
        // Another control node moved it already.
        current.node
    } else {
        let new = state
            .nodes
            .place(&call.id, &[old.to_owned()])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match calls::move_node(&state.db, call.id.as_str(), old, &new).await? {
            Some(winner) if winner == new => new,
            other => {
                // Lost the race (or the call ended): drop our empty copy.
                let _ = state.nodes.send(
                    &new,
                    ToRtcd::EndCall {
                        call_id: call.id.clone(),
                        request: None,
                    },
                );
                match other {
                    Some(winner) => winner,
                    None => return Ok(()),
                }
            }
        }
    };
    let mine: Vec<_> = calls::live_sessions(&state.db, call.id.as_str())
        .await?
        .into_iter()
        .filter(|s| s.owner == state.node_instance)
        .collect();
    let now = state.clock.now_ms();
    for s in &mine {
        let p = &s.participant;
        calls::media_lost(&state.db, call.id.as_str(), p.session_id.as_str(), now).await?;
        if let Some(local) = state.calls.local(&p.session_id) {
            super::media::deliver(
                state,
                &local,
                &ServerMessage::CallSignal {
                    call_id: call.id.clone(),
                    session_id: p.session_id.clone(),
                    signal: ServerSignal::Reconnect { reason },
                },
            );
        }
    }
    state.announce();
    tracing::info!(call = %call.id, from = %old, to = %home, sessions = mine.len(), took = ?started.elapsed(), "call moved");
    Ok(())
}
