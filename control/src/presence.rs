//! Presence: online, away, do-not-disturb or offline, derived from the
//! WebSocket connections of every node ([`crate::db::presence`]).
//!
//! - A socket counts while its node's heartbeat is fresh: every node beats
//!   every `presence.heartbeat_secs` ([`run`]), and a node silent for
//!   `presence.node_timeout_secs` is dead, its sockets forgotten by
//!   whichever node sweeps first. A crashed node's users go offline.
//! - Connected users are online, or away after `presence.away_after_secs`
//!   without activity (a socket opened, typing, choosing "online"), unless they chose
//!   `dnd` or `away` themselves.
//! - A change is announced once: the node that moves the stored "last
//!   announced" status (a compare-and-set) sends the presence message over
//!   the bus, to the user and everyone who shares a channel with them.
//!   Like typing, it is ephemeral: dropped first for a slow socket, never
//!   replayed; a client that reconnects asks `GET /users/status`.

use std::time::Duration;

use signaling::events::{PresenceStatus, ServerMessage};

use crate::AppState;
use crate::bus::{Audience, Ephemeral};
use crate::db::DbResult;
use crate::db::presence::{self, Manual, status_str};

/// Activity is written at most this often per user.
const ACTIVITY_COARSE_MS: i64 = 15_000;

fn live_since(state: &AppState, now: i64) -> i64 {
    now - state.config.presence.node_timeout_secs as i64 * 1000
}

fn away_after_ms(state: &AppState) -> i64 {
    state.config.presence.away_after_secs as i64 * 1000
}

/// Current statuses of `user_ids` (unknown or never-seen users: offline).
pub async fn statuses(
    state: &AppState,
    user_ids: &[String],
) -> DbResult<Vec<(String, PresenceStatus, Option<Manual>)>> {
    let now = state.clock.now_ms();
    let records = presence::records(&state.db, user_ids, live_since(state, now)).await?;
    Ok(user_ids
        .iter()
        .map(|id| match records.iter().find(|r| &r.user_id == id) {
            Some(r) => (id.clone(), r.status(now, away_after_ms(state)), r.manual),
            None => (id.clone(), PresenceStatus::Offline, None),
        })
        .collect())
}

/// Announces `user_id`'s status if it differs from the last announced one
/// and no other node announced it first.
pub async fn announce_if_changed(state: &AppState, user_id: &str) -> DbResult<()> {
    let now = state.clock.now_ms();
    let records =
        presence::records(&state.db, &[user_id.to_owned()], live_since(state, now)).await?;
    let Some(r) = records.first() else {
        return Ok(());
    };
    let status = r.status(now, away_after_ms(state));
    let new = status_str(status);
    if new == r.last_status
        || !presence::claim_change(&state.db, user_id, &r.last_status, new).await?
    {
        return Ok(());
    }
    let msg = ServerMessage::Presence {
        user_id: user_id.to_owned(),
        status,
    };
    state.bus.publish_ephemeral(Ephemeral {
        audience: Audience::Contacts {
            user_id: user_id.to_owned(),
        },
        except_conn: None,
        kind: "presence".into(),
        message: serde_json::to_string(&msg).unwrap_or_default(),
    });
    Ok(())
}

/// A socket of `user_id` opened on this node.
pub async fn connected(state: &AppState, conn_id: &str, user_id: &str) -> DbResult<()> {
    let now = state.clock.now_ms();
    // The node counts from its first socket, even before its first beat.
    presence::beat(&state.db, &state.node_instance, now).await?;
    presence::add_conn(&state.db, conn_id, user_id, &state.node_instance, now).await?;
    presence::touch(&state.db, user_id, now, 0).await?;
    announce_if_changed(state, user_id).await
}

/// A socket closed.
pub async fn disconnected(state: &AppState, conn_id: &str, user_id: &str) -> DbResult<()> {
    presence::remove_conn(&state.db, conn_id).await?;
    announce_if_changed(state, user_id).await
}

/// The user did something (typed): back from away.
pub async fn activity(state: &AppState, user_id: &str) -> DbResult<()> {
    let now = state.clock.now_ms();
    if presence::touch(&state.db, user_id, now, ACTIVITY_COARSE_MS).await? {
        announce_if_changed(state, user_id).await?;
    }
    Ok(())
}

pub async fn set_manual(state: &AppState, user_id: &str, manual: Option<Manual>) -> DbResult<()> {
    presence::set_manual(&state.db, user_id, manual).await?;
    if manual.is_none() {
        presence::touch(&state.db, user_id, state.clock.now_ms(), 0).await?;
    }
    announce_if_changed(state, user_id).await
}

/// One round: beat, forget dead nodes, announce what time changed (away
/// after idling, offline after a node died).
pub async fn sweep(state: &AppState) -> DbResult<()> {
    let now = state.clock.now_ms();
    presence::beat(&state.db, &state.node_instance, now).await?;
    presence::expire_nodes(&state.db, live_since(state, now)).await?;
    for user in presence::announced_present(&state.db).await? {
        announce_if_changed(state, &user).await?;
    }
    Ok(())
}

/// This node's presence loop: runs until aborted.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.config.presence.heartbeat_secs);
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::presence::Record;
    use super::*;

    #[test]
    fn status_follows_sockets_activity_and_choice() {
        let mut r = Record {
            user_id: "u".into(),
            manual: None,
            last_activity_at: 1_000,
            last_status: "offline".into(),
            live_conns: 1,
        };
        assert_eq!(r.status(1_000 + 299_999, 300_000), PresenceStatus::Online);
        assert_eq!(r.status(1_000 + 300_000, 300_000), PresenceStatus::Away);
        r.manual = Some(Manual::Dnd);
        assert_eq!(r.status(2_000, 300_000), PresenceStatus::Dnd);
        r.manual = Some(Manual::Away);
        assert_eq!(r.status(2_000, 300_000), PresenceStatus::Away);
        r.live_conns = 0;
        assert_eq!(r.status(2_000, 300_000), PresenceStatus::Offline);
    }
}
