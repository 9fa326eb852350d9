//! [`CurrentUser`]: the authenticated user of a request.
//!
//! Accepted credentials, in order:
//! 1. `Authorization: Bearer enp_…` — a personal access token.
//! 2. `Authorization: Bearer <session token>` — a session, for non-browser
//!    clients that logged in (no CSRF check: a browser never sends it on
//!    its own).
//! 3. `Authorization: Bearer enj_…` — an offloader job's bot, acting for
//!    one call only (its join, its captions, its results, the WebSocket);
//!    see [`job_route`].
//! 4. The `enclave_session` cookie — a browser session. Writes (any method
//!    but GET, HEAD, OPTIONS) must echo the session's CSRF token in
//!    `X-CSRF-Token`; `SameSite=Lax` alone would let a same-site page post.
//!
//! The account must be enabled: a disabled one is refused whatever the
//! credential (disabling ends its sessions and tokens too; this check
//! covers one that raced it).
//!
//! A session is alive while not revoked, younger than its absolute lifetime
//! and used within the idle timeout. Use is recorded at most every
//! [`TOUCH_EVERY_MS`] to spare the database a write per request, so the idle
//! timeout can end up to that much early, never late.

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;

use super::tokens::{hash_secret, secrets_equal};
use super::{CSRF_HEADER, JOB_TOKEN_PREFIX, PAT_PREFIX, SESSION_COOKIE};
use crate::AppState;
use crate::db::users::{SystemRole, User};
use crate::db::{call_jobs, sessions, users};
use crate::error::AppError;

/// How often a session's or token's last use is written.
pub const TOUCH_EVERY_MS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVia {
    Cookie {
        session_id: String,
    },
    BearerSession {
        session_id: String,
    },
    AccessToken {
        token_id: String,
    },
    /// An offloader job's bot, for the job's call only.
    CallJob {
        job_id: String,
        call_id: String,
    },
}

impl AuthVia {
    pub fn session_id(&self) -> Option<&str> {
        match self {
            AuthVia::Cookie { session_id } | AuthVia::BearerSession { session_id } => {
                Some(session_id)
            }
            AuthVia::AccessToken { .. } | AuthVia::CallJob { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub via: AuthVia,
}

impl CurrentUser {
    pub fn id(&self) -> &str {
        &self.user.id
    }

    pub fn is_admin(&self) -> bool {
        self.user.system_role == SystemRole::Admin
    }

    pub fn is_guest(&self) -> bool {
        self.user.system_role == SystemRole::Guest
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let now = state.clock.now_ms();
        if let Some(token) = bearer(parts) {
            if token.starts_with(JOB_TOKEN_PREFIX) {
                let job = call_jobs::by_token_hash(&state.db, &hash_secret(token))
                    .await?
                    .ok_or(AppError::Unauthenticated)?;
                let stopped = job
                    .stopped_at
                    .is_some_and(|at| now - at >= RESULTS_GRACE_MS);
                if stopped || !job_route(parts.uri.path(), &job.call_id, job.stopped_at.is_some()) {
                    return Err(AppError::Forbidden(
                        "a job credential reaches only its own call's bot routes",
                    ));
                }
                let user = live_user(state, call_jobs::BOT_USER_ID).await?;
                return Ok(CurrentUser {
                    user,
                    via: AuthVia::CallJob {
                        job_id: job.id,
                        call_id: job.call_id,
                    },
                });
            }
            if token.starts_with(PAT_PREFIX) {
                let t = sessions::token_by_hash(&state.db, &hash_secret(token))
                    .await?
                    .filter(|t| t.revoked_at.is_none())
                    .ok_or(AppError::Unauthenticated)?;
                if t.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY_MS) {
                    sessions::touch_token(&state.db, &t.id, now).await?;
                }
                let user = live_user(state, &t.user_id).await?;
                return Ok(CurrentUser {
                    user,
                    via: AuthVia::AccessToken { token_id: t.id },
                });
            }
            let s = live_session(state, token, now).await?;
            let user = live_user(state, &s.user_id).await?;
            return Ok(CurrentUser {
                user,
                via: AuthVia::BearerSession { session_id: s.id },
            });
        }
        let token = cookie(parts, SESSION_COOKIE).ok_or(AppError::Unauthenticated)?;
        let s = live_session(state, token, now).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !secrets_equal(sent, &s.csrf_token) {
                return Err(AppError::Csrf);
            }
        }
        let user = live_user(state, &s.user_id).await?;
        Ok(CurrentUser {
            user,
            via: AuthVia::Cookie { session_id: s.id },
        })
    }
}

/// How long after its job stopped a bot may still hand back results
/// (composing and transcribing a long call takes a while).
pub const RESULTS_GRACE_MS: i64 = 24 * 3600 * 1000;

/// The routes a job's bot credential reaches: its call's bot routes and
/// the WebSocket (for negotiation) while the job runs; once it stopped,
/// only reading the call (to learn that) and handing back results.
/// `path` may or may not carry `/api/v1`.
pub fn job_route(path: &str, call_id: &str, stopped: bool) -> bool {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    // Reading the call's view is how a bot learns it was stopped.
    if path == format!("/calls/{call_id}/results") || path == format!("/calls/{call_id}/bot") {
        return true;
    }
    !stopped && (path == "/websocket" || path == format!("/calls/{call_id}/captions"))
}

async fn live_session(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<sessions::Session, AppError> {
    let s = sessions::by_token_hash(&state.db, &hash_secret(token))
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let idle_ms = state.config.auth.idle_timeout_secs as i64 * 1000;
    if s.revoked_at.is_some() || now >= s.expires_at || now - s.last_seen_at >= idle_ms {
        return Err(AppError::Unauthenticated);
    }
    if now - s.last_seen_at >= TOUCH_EVERY_MS {
        sessions::touch(&state.db, &s.id, now).await?;
    }
    Ok(s)
}

/// The account behind a credential, if it still may act: not deleted and
/// not switched off.
async fn live_user(state: &AppState, id: &str) -> Result<User, AppError> {
    match users::get_enabled(&state.db, id).await {
        Ok(u) => Ok(u),
        Err(crate::db::DbError::NotFound) => Err(AppError::Unauthenticated),
        Err(e) => Err(e.into()),
    }
}

/// Whether the credential a long-lived connection (a WebSocket) was opened
/// with still stands: the session not revoked nor past its lifetime, the
/// access token not revoked, the account enabled. Sockets ask this now and
/// then, so a revocation or a disable made on another node reaches them.
pub async fn still_valid(state: &AppState, user: &CurrentUser) -> Result<bool, AppError> {
    let now = state.clock.now_ms();
    let credential = match &user.via {
        AuthVia::Cookie { session_id } | AuthVia::BearerSession { session_id } => {
            match sessions::get(&state.db, session_id).await {
                Ok(s) => s.revoked_at.is_none() && now < s.expires_at,
                Err(crate::db::DbError::NotFound) => false,
                Err(e) => return Err(e.into()),
            }
        }
        AuthVia::AccessToken { token_id } => sessions::token_revoked(&state.db, token_id)
            .await?
            .is_some_and(|revoked| !revoked),
        AuthVia::CallJob { job_id, .. } => match call_jobs::get(&state.db, job_id).await {
            Ok(j) => j.stopped_at.is_none(),
            Err(crate::db::DbError::NotFound) => false,
            Err(e) => return Err(e.into()),
        },
    };
    if !credential {
        return Ok(false);
    }
    match users::get_enabled(&state.db, user.id()).await {
        Ok(_) => Ok(true),
        Err(crate::db::DbError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
