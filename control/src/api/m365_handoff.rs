//! "Sign in another way" from the Teams tab. The tab's frame is a third
//! party inside Teams, so it can neither show an identity provider's pages
//! nor use the site's own (`SameSite=Lax`) session cookie. The host opens
//! a window of ours instead, where the person signs in as on the login
//! page; that window then asks for a one-time code
//! (`POST /api/v1/m365/handoff`) and reports it to the tab through TeamsJS
//! `notifySuccess`; the tab trades the code for a session of its own
//! (`POST /api/v1/m365/handoff/redeem`) with the embedded cookies.
//!
//! A code is the secret of a session row made for nothing else: marked by
//! its user agent, alive [`CODE_LIFETIME_MS`], revoked on first use (the
//! revocation is the single-use check, so two redeems cannot both win).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Client, CookieSite, account_disabled, start_session_for};
use super::json::Json;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::auth::tokens::{hash_secret, random_secret};
use crate::db::sessions::{self, NewSession};
use crate::error::AppError;

/// Long enough for the host to relay the code, short enough that one
/// seen in a log is useless.
pub const CODE_LIFETIME_MS: i64 = 60_000;
/// The user agent of a code's session row: only such rows are redeemable.
const HANDOFF_AGENT: &str = "m365 tab handoff";

#[derive(Debug, Serialize)]
pub struct Handoff {
    pub code: String,
    pub expires_at: i64,
}

fn enabled(state: &AppState) -> Result<(), AppError> {
    if state.config.m365.enabled {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

fn rejected(why: &str) -> AppError {
    AppError::refused(
        StatusCode::UNAUTHORIZED,
        "m365_handoff_rejected",
        format!("the sign-in code is {why}: sign in another way again"),
    )
}

/// `POST /api/v1/m365/handoff`: a code for the signed-in caller.
pub async fn create(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
) -> Result<(StatusCode, Json<Handoff>), AppError> {
    enabled(&state)?;
    let now = state.clock.now_ms();
    let code = random_secret("");
    let expires_at = now + CODE_LIFETIME_MS;
    sessions::create(
        &state.db,
        NewSession {
            user_id: user.id(),
            token_hash: &hash_secret(&code),
            csrf_token: &random_secret(""),
            expires_at,
            ip: &client.ip,
            user_agent: HANDOFF_AGENT,
        },
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Handoff { code, expires_at })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    pub code: String,
}

/// `POST /api/v1/m365/handoff/redeem`: the code for a session whose
/// cookies the tab's frame keeps; answered as the password login is.
pub async fn redeem(
    State(state): State<AppState>,
    client: Client,
    Json(req): Json<Redeem>,
) -> Result<Response, AppError> {
    enabled(&state)?;
    let now = state.clock.now_ms();
    let row = sessions::by_token_hash(&state.db, &hash_secret(&req.code))
        .await?
        .filter(|s| s.user_agent == HANDOFF_AGENT)
        .ok_or_else(|| rejected("unknown"))?;
    if row.revoked_at.is_some() {
        return Err(rejected("used"));
    }
    if row.expires_at <= now {
        return Err(rejected("expired"));
    }
    sessions::revoke(&state.db, &row.user_id, &row.id, now)
        .await
        .map_err(|_| rejected("used"))?;
    let user = crate::db::users::get(&state.db, &row.user_id).await?;
    if user.disabled_at.is_some() {
        return Err(account_disabled());
    }
    let (login, cookies) =
        start_session_for(&state, &client, user, "m365 handoff", CookieSite::Embedded).await?;
    let mut resp = Json(login).into_response();
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}
