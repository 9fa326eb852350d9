//! Calls in channels: who is in which call on which rtcd node, host
//! controls, ringing, and the relay of media negotiation between a
//! client's control WebSocket and the call's rtcd node.
//!
//! State lives in the database ([`crate::db::calls`]): a call and its
//! node, each session with the control node instance that speaks to rtcd
//! for it (`owner`, the node holding the client's socket) and the media
//! state control asked rtcd to enforce. rtcd sends a session's events to
//! the control connection that last spoke for it, so only a session's
//! owner ever sends rtcd anything about that session:
//!
//! - the node that handles the join adds the session ([`join`]);
//! - the node where the client's socket sends signals takes it over
//!   ([`relay`]);
//! - mute, camera, screen and removal are durable events; each node's
//!   dispatcher hands them to [`effects`], which applies those of the
//!   sessions this node owns. A host on one node muting a participant on
//!   another therefore works through the event log, and nothing is lost
//!   if a wake-up is.
//!
//! rtcd's own events ([`media`]) come to the owner: answers and
//! candidates go to the client's socket here, connection states become
//! durable changes, voice activity an ephemeral message to the call.
//! [`sweep`] ends rings that time out and sessions that did not come back.
//! [`failover`] moves the calls of a media node that went down.

pub mod config;
pub mod effects;
pub mod failover;
pub mod ice;
pub mod jobs;
pub mod join;
pub mod media;
pub mod relay;
pub mod sweep;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use signaling::ids::{CallId, SessionId};

pub use config::CallsConfig;

use crate::AppState;
use crate::auth::ratelimit::RateLimiter;
use crate::db::DbError;
use crate::error::AppError;

/// A session this node speaks for.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub call_id: CallId,
    pub user_id: String,
    /// The socket that last signalled for it; its signals go there.
    pub conn: Option<String>,
}

/// This node's part of the calls: the sessions it owns and the limits it
/// counts.
pub struct Calls {
    local: Mutex<HashMap<SessionId, LocalSession>>,
    pub reactions: RateLimiter,
}

impl Calls {
    pub fn new(config: &CallsConfig) -> Self {
        Calls {
            local: Mutex::new(HashMap::new()),
            reactions: RateLimiter::per_minute(config.reactions_per_minute),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, LocalSession>> {
        // Every critical section is one insert, remove or read.
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn own(&self, session: SessionId, s: LocalSession) {
        self.map().insert(session, s);
    }

    pub fn local(&self, session: &SessionId) -> Option<LocalSession> {
        self.map().get(session).cloned()
    }

    pub fn forget(&self, session: &SessionId) {
        self.map().remove(session);
    }

    pub fn forget_call(&self, call: &CallId) {
        self.map().retain(|_, s| &s.call_id != call);
    }

    /// Sessions this node owns (for tests and metrics).
    pub fn owned(&self) -> usize {
        self.map().len()
    }
}

/// Words a refusal from [`crate::db::calls`] for the client.
pub fn refusal(e: DbError) -> AppError {
    match e {
        DbError::Conflict("call_ended") => {
            AppError::refused(StatusCode::CONFLICT, "call_ended", "the call has ended")
        }
        DbError::Conflict("call_full") => AppError::refused(
            StatusCode::CONFLICT,
            "call_full",
            "the call has as many participants as it may have",
        ),
        DbError::Conflict("removed_from_call") => AppError::refused(
            StatusCode::FORBIDDEN,
            "removed_from_call",
            "a host removed you from this call; you cannot join it again",
        ),
        DbError::Conflict("screen_share_taken") => AppError::refused(
            StatusCode::CONFLICT,
            "screen_share_taken",
            "someone else shares their screen; one share at a time",
        ),
        DbError::Conflict("not_ringing") => AppError::refused(
            StatusCode::CONFLICT,
            "not_ringing",
            "this call is not ringing for you",
        ),
        DbError::Conflict("session_not_found") => AppError::refused(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no such session is in this call",
        ),
        other => other.into(),
    }
}

/// Starts this node's calls work: rtcd's events and the sweep. Runs
/// until aborted.
pub async fn run(state: AppState) {
    tokio::join!(
        media::run(state.clone()),
        sweep::run(state.clone()),
        failover::run(state)
    );
}
