//! A call survives its media node. When the pool reports a node down,
//! every running call on it moves: one control node wins each move (a
//! conditional update of `calls.node`; the others read its choice). Then
//! every control node marks the sessions it owns as having lost their
//! media and tells those clients to start over
//! ([`ServerSignal::Reconnect`]); each client offers again on the same
//! session, and [`super::relay`] adds it on the new node with its stored
//! state, as after any loss of media. A client that does not come back is
//! ended by [`super::sweep`] like any other.
//!
//! A draining node keeps its calls until `[rtcd] drain_move_margin_secs`
//! before the deadline it reported; then they move the same way, with
//! reason `node_drained`, and the winner ends the old copy so the node
//! empties and exits early instead of cutting people off at its deadline.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use signaling::CallId;
use signaling::call::{ReconnectReason, ServerSignal};
use signaling::events::ServerMessage;
use signaling::rtcd::{FromRtcd, ToRtcd};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::db::calls::{self, CallRow};
use crate::nodes::{NodeEvent, NodeKey};

/// `calls.node` of a call whose node went down when no other node could
/// take it: it waits, its sessions marked as having lost their media,
/// until a node comes up (or a retry finds one) and it moves there.
pub const NO_NODE: &str = "";

/// How often a draining node's watch looks at its deadline again (it may
/// change with each load report, or the drain may be called off).
const DRAIN_WATCH_EVERY: Duration = Duration::from_secs(1);

/// After a round of moves off a draining node that left calls behind (no
/// other node took them), the next round waits this long.
const DRAIN_RETRY_EVERY: Duration = Duration::from_secs(5);

/// How often waiting calls look for a node besides when one comes up (a
/// node that was up all along may have refused the first time).
const RESUME_EVERY: Duration = Duration::from_secs(2);

/// Runs until aborted.
pub async fn run(state: AppState) {
    let mut rx = state.nodes.subscribe();
    let mut drains: HashMap<NodeKey, tokio::task::JoinHandle<()>> = HashMap::new();
    // Calls this node saw waiting: when another control node resumes one
    // first, it is no longer listed as waiting, yet this node's clients
    // must still be told where it went.
    let mut waiting: BTreeSet<CallId> = BTreeSet::new();
    let mut retry = tokio::time::interval(RESUME_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = retry.tick() => {
                resume_waiting(&state, &mut waiting).await;
                continue;
            }
        };
        match event {
            Ok(NodeEvent::Down { node }) => {
                let left = move_calls(&state, &node, ReconnectReason::NodeFailed).await;
                waiting.extend(left);
            }
            Ok(NodeEvent::Draining { node }) => {
                drains.retain(|_, t| !t.is_finished());
                drains
                    .entry(node.clone())
                    .or_insert_with(|| tokio::spawn(watch_drain(state.clone(), node)));
            }
            Ok(NodeEvent::Up { node }) => {
                // A node back from a false down may still hold calls that
                // moved away: ask, and end those (see `drop_leftovers`).
                let _ = state.nodes.send(&node, ToRtcd::ListCalls);
                resume_waiting(&state, &mut waiting).await;
            }
            Ok(NodeEvent::Rtcd {
                node,
                msg: FromRtcd::Calls { calls },
            }) => drop_leftovers(&state, &node, &calls).await,
            Ok(NodeEvent::Rtcd { .. }) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "failover: fell behind the media nodes' events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Moves a draining node's calls `drain_move_margin_secs` before its
/// deadline, and again while some are left (no other node took them
/// yet). Ends when the node stops draining, goes down or has no calls.
async fn watch_drain(state: AppState, node: NodeKey) {
    let margin = Duration::from_secs(state.config.rtcd.drain_move_margin_secs);
    loop {
        // No deadline: not draining any more, down, or a node too old to
        // say; its calls then stay until they end.
        let Some(deadline) = state.nodes.drain_deadline(&node) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let move_at = deadline.checked_sub(margin).unwrap_or(now);
        if now >= move_at {
            tracing::info!(%node, left = ?deadline.saturating_duration_since(now), "media node drains soon; moving its calls");
            // A call no node takes stays here until the deadline; the
            // next round tries again.
            let _ = move_calls_elsewhere(&state, &node, ReconnectReason::NodeDrained, false).await;
            match calls::running_on(&state.db, &node).await {
                Ok(left) if left.is_empty() => return,
                _ => tokio::time::sleep(DRAIN_RETRY_EVERY).await,
            }
            continue;
        }
        tokio::time::sleep_until(move_at.min(now + DRAIN_WATCH_EVERY)).await;
    }
}

/// Moves the calls that wait for a node to one that is up now.
async fn resume_waiting(state: &AppState, seen: &mut BTreeSet<CallId>) {
    let any_up = state
        .nodes
        .status()
        .iter()
        .any(|n| n.health == crate::nodes::NodeHealth::Up);
    if !any_up {
        return;
    }
    let mut ids: BTreeSet<CallId> = std::mem::take(seen);
    match calls::running_on(&state.db, NO_NODE).await {
        Ok(rows) => ids.extend(rows.into_iter().map(|c| c.id)),
        Err(e) => tracing::warn!(error = %e, "failover: cannot list the waiting calls"),
    }
    for id in ids {
        let call = match calls::get(&state.db, id.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, call = %id, "a waiting call is gone");
                continue;
            }
        };
        match move_call(state, &call, NO_NODE, ReconnectReason::NodeFailed, true).await {
            Ok(Some(home)) if home == NO_NODE => {
                seen.insert(id);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(error = %e, call = %id, "failover: a waiting call found no node yet");
                seen.insert(id);
            }
        }
    }
}

/// `node` (just back) holds `held`: end each copy whose call ended or
/// now lives on another node that is up, so it neither forwards media
/// for people who left it nor counts in its load. A call whose database
/// row says it is moving (its node is down, draining or none) is left
/// for the move to settle; a call control does not know (a WHIP call, or
/// one being started) is not control's to end.
pub async fn drop_leftovers(state: &AppState, node: &str, held: &[CallId]) {
    for id in held {
        let call = match calls::get(&state.db, id.as_str()).await {
            Ok(c) => c,
            Err(_) => continue,
        };
        let stale = call.ended_at.is_some()
            || (call.node != node
                && state.nodes.is_up(&call.node)
                && !state.nodes.is_draining(&call.node));
        if stale {
            tracing::warn!(%node, call = %id, now_on = %call.node, "media node still held a call that moved or ended; ending its copy");
            let _ = state.nodes.send(
                node,
                ToRtcd::EndCall {
                    call_id: id.clone(),
                    request: None,
                },
            );
        }
    }
}

/// Moves every running call off `old` (down). Returns the calls that
/// found no node and wait for one.
pub async fn move_calls(state: &AppState, old: &str, reason: ReconnectReason) -> Vec<CallId> {
    move_calls_elsewhere(state, old, reason, true).await
}

/// Moves every running call off `old`; with `may_wait`, a call that finds
/// no node waits for one ([`NO_NODE`]) instead of staying on `old`.
async fn move_calls_elsewhere(
    state: &AppState,
    old: &str,
    reason: ReconnectReason,
    may_wait: bool,
) -> Vec<CallId> {
    let running = match calls::running_on(&state.db, old).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, node = %old, "failover: cannot list the node's calls");
            return Vec::new();
        }
    };
    if !running.is_empty() {
        tracing::warn!(node = %old, calls = running.len(), ?reason, "moving a media node's calls");
    }
    let mut waiting = Vec::new();
    for call in running {
        match move_call(state, &call, old, reason, may_wait).await {
            Ok(Some(home)) if home == NO_NODE => waiting.push(call.id),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, call = %call.id, "failover: the call could not move")
            }
        }
    }
    waiting
}

/// Moves `call` off `old` (or learns where another control node moved
/// it), then tells this node's clients in the call to start their media
/// over there. Returns the call's home now (`None`: it ended).
async fn move_call(
    state: &AppState,
    call: &CallRow,
    old: &str,
    reason: ReconnectReason,
    may_wait: bool,
) -> anyhow::Result<Option<String>> {
    let started = std::time::Instant::now();
    let current = calls::get(&state.db, call.id.as_str()).await?;
    if current.ended_at.is_some() {
        return Ok(None);
    }
    let home = if current.node != old {
        // Another control node moved it already.
        current.node
    } else {
        let placed = state.nodes.place(&call.id, &[old.to_owned()]).await;
        let new = match placed {
            Ok(n) => n,
            Err(e) if may_wait && old != NO_NODE => {
                tracing::warn!(call = %call.id, from = %old, error = %e, "no media node can take the call; it waits for one");
                NO_NODE.to_owned()
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        };
        match calls::move_node(&state.db, call.id.as_str(), old, &new).await? {
            Some(winner) if winner == new => {
                // A node that drains (or only seemed down) still holds the
                // old copy: end it, so it stops forwarding and counting it
                // and a draining node can exit once empty.
                if old != NO_NODE {
                    let _ = state.nodes.send(
                        old,
                        ToRtcd::EndCall {
                            call_id: call.id.clone(),
                            request: None,
                        },
                    );
                }
                new
            }
            other => {
                // Lost the race (or the call ended): drop our empty copy.
                if new != NO_NODE {
                    let _ = state.nodes.send(
                        &new,
                        ToRtcd::EndCall {
                            call_id: call.id.clone(),
                            request: None,
                        },
                    );
                }
                match other {
                    Some(winner) => winner,
                    None => return Ok(None),
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
        let id = p.session_id.as_str();
        if old == NO_NODE {
            // The wait is over: the grace to offer again starts now.
            calls::media_back(&state.db, id).await?;
        }
        calls::media_lost(&state.db, call.id.as_str(), id, now).await?;
        if home == NO_NODE {
            // Nothing to offer to yet; they are told when a node takes it.
            continue;
        }
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
    if home != NO_NODE {
        tracing::info!(call = %call.id, from = %old, to = %home, sessions = mine.len(), took = ?started.elapsed(), "call moved");
    }
    Ok(Some(home))
}
