//! Login, logout, the current user, their sessions and access tokens.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::tokens::{hash_secret, random_secret};
use crate::auth::{CurrentUser, PAT_PREFIX, SESSION_COOKIE, password};
use crate::db::sessions::{self, AccessToken, NewSession, Session};
use crate::db::users::{self, User};
use crate::error::AppError;

/// The client's address and user agent, for audit records and rate limits.
/// The address is the TCP peer; behind a proxy that is the proxy (use its
/// own rate limits, or teach this extractor a trusted-proxy list).
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        Ok(Client { ip, user_agent })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize)]
pub struct LoginResponse {
    pub user: User,
    pub session_id: String,
    /// Echo in `X-CSRF-Token` on every cookie-authenticated write.
    pub csrf_token: String,
    pub expires_at: i64,
}

pub fn session_cookie(state: &AppState, value: &str, max_age_secs: u64) -> HeaderValue {
    site_session_cookie(state, CookieSite::FirstParty, value, max_age_secs)
}

/// Where a session's cookies are sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSite {
    /// Our own pages, at the top level: `SameSite=Lax` (`Secure` as
    /// configured).
    FirstParty,
    /// Our pages inside another site's frame (the Teams tab): browsers
    /// send no `Lax` cookie to a third-party iframe, so `SameSite=None`,
    /// which requires `Secure`, and `Partitioned` so the cookie lives
    /// only under the embedding site.
    Embedded,
}

impl CookieSite {
    fn attributes(self, state: &AppState) -> &'static str {
        match self {
            CookieSite::FirstParty if state.config.auth.cookie_secure => "; SameSite=Lax; Secure",
            CookieSite::FirstParty => "; SameSite=Lax",
            CookieSite::Embedded => "; SameSite=None; Secure; Partitioned",
        }
    }
}

fn site_session_cookie(
    state: &AppState,
    site: CookieSite,
    value: &str,
    max_age_secs: u64,
) -> HeaderValue {
    let attrs = site.attributes(state);
    let v = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; Max-Age={max_age_secs}{attrs}");
    // Built from a hex token and fixed text: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<LoginRequest>,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let username = req.username.trim().to_ascii_lowercase();
    let actor = Actor {
        user_id: "",
        username: &username,
        ip: &client.ip,
    };
    if let Err(wait) = state.login_limiter.check(&client.ip, now) {
        state
            .metrics
            .logins
            .with_label_values(&["rate_limited"])
            .inc();
        audit::record("login", &actor, "rate_limited", "");
        return Err(AppError::RateLimited(wait));
    }
    if req.password.len() > password::MAX_PASSWORD_BYTES {
        return Err(AppError::InvalidCredentials);
    }
    let creds = users::by_username(&state.db, &username).await?;
    let Some(creds) = creds else {
        let pw = req.password;
        let _ = tokio::task::spawn_blocking(move || password::verify_dummy(&pw)).await;
        state.metrics.logins.with_label_values(&["failure"]).inc();
        audit::record("login", &actor, "failure", "unknown user");
        return Err(AppError::InvalidCredentials);
    };
    let actor = Actor {
        user_id: &creds.user.id,
        ..actor
    };
    if creds.locked_until.is_some_and(|t| t > now) {
        state.metrics.logins.with_label_values(&["locked"]).inc();
        audit::record("login", &actor, "locked", "");
        return Err(AppError::Locked);
    }
    let ok = match creds.password_hash.clone() {
        Some(h) => {
            let pw = req.password;
            tokio::task::spawn_blocking(move || password::verify(&pw, &h))
                .await
                .map_err(AppError::internal)?
        }
        None => false,
    };
    if !ok {
        let lock_until = now + state.config.auth.lockout_secs as i64 * 1000;
        let locked = users::record_failure(
            &state.db,
            &creds.user.id,
            state.config.auth.lockout_attempts,
            lock_until,
        )
        .await?;
        state.metrics.logins.with_label_values(&["failure"]).inc();
        audit::record("login", &actor, "failure", "wrong password");
        if locked {
            audit::record(
                "account_locked",
                &actor,
                "success",
                "repeated failed logins",
            );
        }
        return Err(AppError::InvalidCredentials);
    }
    if creds.disabled {
        state.metrics.logins.with_label_values(&["disabled"]).inc();
        audit::record("login", &actor, "disabled", "");
        return Err(account_disabled());
    }
    users::record_success(&state.db, &creds.user.id).await?;
    let (login, cookies) = start_session(&state, &client, creds.user, "password").await?;
    let mut resp = Json(login).into_response();
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

pub fn account_disabled() -> AppError {
    AppError::refused(
        StatusCode::FORBIDDEN,
        "account_disabled",
        "this account is disabled",
    )
}

/// The cookie that hands a browser its CSRF token when the login is a
/// redirect (single sign-on) rather than a JSON answer: readable by our own
/// pages' scripts (not HttpOnly), never sent as a credential. Writes still
/// need the value in `X-CSRF-Token`, which another site cannot read.
pub const CSRF_COOKIE: &str = "enclave_csrf";

/// Opens a session for `user` (any login method): records it, audits it,
/// and returns the login answer with the cookies to set (the session
/// cookie first).
pub async fn start_session(
    state: &AppState,
    client: &Client,
    user: User,
    method: &str,
) -> Result<(LoginResponse, Vec<HeaderValue>), AppError> {
    start_session_for(state, client, user, method, CookieSite::FirstParty).await
}

/// [`start_session`] with cookies for `site`.
pub async fn start_session_for(
    state: &AppState,
    client: &Client,
    user: User,
    method: &str,
    site: CookieSite,
) -> Result<(LoginResponse, Vec<HeaderValue>), AppError> {
    let now = state.clock.now_ms();
    let token = random_secret("");
    let csrf = random_secret("");
    let lifetime = state.config.auth.absolute_lifetime_secs;
    let s = sessions::create(
        &state.db,
        NewSession {
            user_id: &user.id,
            token_hash: &hash_secret(&token),
            csrf_token: &csrf,
            expires_at: now + lifetime as i64 * 1000,
            ip: &client.ip,
            user_agent: &client.user_agent,
        },
        now,
    )
    .await?;
    state.metrics.logins.with_label_values(&["success"]).inc();
    audit::record(
        "login",
        &Actor {
            user_id: &user.id,
            username: &user.username,
            ip: &client.ip,
        },
        "success",
        &format!("{method}, session {}", s.id),
    );
    let cookies = vec![
        site_session_cookie(state, site, &token, lifetime),
        site_plain_cookie(state, site, CSRF_COOKIE, &csrf, "/", lifetime),
    ];
    Ok((
        LoginResponse {
            user,
            session_id: s.id,
            csrf_token: csrf,
            expires_at: s.expires_at,
        },
        cookies,
    ))
}

/// A `SameSite=Lax` cookie scripts may read (not HttpOnly).
pub fn plain_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: u64,
) -> HeaderValue {
    site_plain_cookie(
        state,
        CookieSite::FirstParty,
        name,
        value,
        path,
        max_age_secs,
    )
}

fn site_plain_cookie(
    state: &AppState,
    site: CookieSite,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: u64,
) -> HeaderValue {
    let attrs = site.attributes(state);
    let v = format!("{name}={value}; Path={path}; Max-Age={max_age_secs}{attrs}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    let Some(id) = user.via.session_id() else {
        return Err(AppError::BadRequest(
            "an access token has no session to log out of; revoke the token instead".into(),
        ));
    };
    sessions::revoke(&state.db, user.id(), id, now).await?;
    audit::record(
        "logout",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("session {id}"),
    );
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    resp.headers_mut().append(
        header::SET_COOKIE,
        plain_cookie(&state, CSRF_COOKIE, "", "/", 0),
    );
    // A session opened in the Teams tab has its cookies in the embedding
    // site's partition: only cookies with the same attributes clear them.
    let embedded = CookieSite::Embedded;
    for c in [
        site_session_cookie(&state, embedded, "", 0),
        site_plain_cookie(&state, embedded, CSRF_COOKIE, "", "/", 0),
    ] {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

pub async fn me(user: CurrentUser) -> Json<User> {
    Json(user.user)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the password and ends every session of the user (the client
/// logs in again with the new one).
pub async fn change_password(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Json(req): Json<PasswordChange>,
) -> Result<StatusCode, AppError> {
    let actor = Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    };
    let creds = users::by_username(&state.db, &user.user.username)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let current = req.current_password;
    let ok = match creds.password_hash {
        Some(h) if current.len() <= password::MAX_PASSWORD_BYTES => {
            tokio::task::spawn_blocking(move || password::verify(&current, &h))
                .await
                .map_err(AppError::internal)?
        }
        _ => false,
    };
    if !ok {
        audit::record(
            "password_change",
            &actor,
            "failure",
            "wrong current password",
        );
        return Err(AppError::InvalidCredentials);
    }
    password::check_policy(&state.config.auth, &user.user.username, &req.new_password)
        .map_err(|p| AppError::BadRequest(p.join("; ")))?;
    let new = req.new_password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::Internal)?;
    users::set_password(&state.db, user.id(), &hash).await?;
    let n = sessions::revoke_all(&state.db, user.id(), state.clock.now_ms()).await?;
    state.hub.close_user(user.id());
    audit::record(
        "password_change",
        &actor,
        "success",
        &format!("{n} session(s) ended"),
    );
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_sessions(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Session>>, AppError> {
    let now = state.clock.now_ms();
    let idle = state.config.auth.idle_timeout_secs as i64 * 1000;
    let mut list = sessions::list_live(&state.db, Some(user.id()), now).await?;
    list.retain(|s| now - s.last_seen_at < idle);
    Ok(Json(list))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    sessions::revoke(&state.db, user.id(), &id, state.clock.now_ms()).await?;
    state.hub.close_session(&id);
    audit::record(
        "session_revoke",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("session {id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
}

#[derive(Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: AccessToken,
    /// Shown once; only its hash is kept.
    pub token: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Json(req): Json<NewToken>,
) -> Result<Response, AppError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(AppError::BadRequest(
            "name must be 1 to 64 characters".into(),
        ));
    }
    if user.is_guest() {
        return Err(AppError::Forbidden("guests cannot create access tokens"));
    }
    let token = random_secret(PAT_PREFIX);
    let info = sessions::create_token(
        &state.db,
        user.id(),
        name,
        &hash_secret(&token),
        state.clock.now_ms(),
    )
    .await?;
    audit::record(
        "token_create",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("token {} ({name})", info.id),
    );
    Ok(created(CreatedToken { info, token }))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<AccessToken>>, AppError> {
    Ok(Json(sessions::list_tokens(&state.db, user.id()).await?))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    sessions::revoke_token(&state.db, user.id(), &id, state.clock.now_ms()).await?;
    audit::record(
        "token_revoke",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("token {id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}
