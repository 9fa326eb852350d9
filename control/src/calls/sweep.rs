//! The calls' timers, on every node: rings that nobody answered, and
//! participants whose media closed and who did not come back.

use std::time::Duration;

use signaling::call::LeaveReason;

use crate::AppState;
use crate::db::DbResult;
use crate::db::calls;

/// Runs until aborted.
pub async fn run(state: AppState) {
    let every = Duration::from_millis(state.config.calls.sweep_ms);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = once(&state).await {
            tracing::warn!(error = %e, "calls sweep failed");
        }
    }
}

/// One round; returns how many rings and sessions it ended. Any node may
/// run it at any time: each ring ends once, and a node only acts for the
/// sessions it owns.
pub async fn once(state: &AppState) -> DbResult<usize> {
    let now = state.clock.now_ms();
    let c = &state.config.calls;
    let mut n =
        calls::expire_rings(&state.db, now - c.ring_timeout_secs as i64 * 1000, now).await?;
    let grace = c.reconnect_grace_secs as i64 * 1000;
    for s in calls::lost_before(&state.db, &state.node_instance, now - grace).await? {
        // A client whose socket is still here gets longer to offer again;
        // one that never does must not stay in the call for ever.
        let lost_for = now - s.media_lost_at.unwrap_or(now);
        if state.hub.has_user(&s.participant.user_id) && lost_for < 4 * grace {
            continue;
        }
        match super::join::leave(
            state,
            s.call_id.as_str(),
            s.participant.session_id.as_str(),
            LeaveReason::Disconnected,
        )
        .await
        {
            Ok(()) => n += 1,
            Err(e) => tracing::debug!(error = %e, "a lost session could not leave"),
        }
    }
    if n > 0 {
        state.announce();
    }
    Ok(n)
}
