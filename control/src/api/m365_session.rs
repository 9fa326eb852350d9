//! `POST /api/v1/m365/session`: the Teams tab trades the SSO token Teams
//! gave it (`getAuthToken`) for an Enclave session.
//!
//! The token comes in the `Authorization: Bearer` header or the JSON body,
//! never in the URL (a `token` or `access_token` query parameter is
//! refused without being read: URLs end up in logs and histories). It is
//! checked by [`crate::m365::token`] against the tenant keys
//! ([`crate::m365::jwks`]); the person it names is bound, looked up and
//! provisioned exactly as an OpenID Connect sign-in through Entra does
//! (identity `tid:<tid>:<oid>`), recorded in `m365_users`, and a session
//! opens as for a password login, with cookies that a third-party iframe
//! is sent (`SameSite=None; Secure; Partitioned`). Every refusal names its
//! reason and is audited with it.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::auth::{Client, CookieSite, account_disabled, start_session_for};
use super::json::Json;
use super::oidc::provision;
use crate::AppState;
use crate::audit::{self, Actor};
use crate::config::Provisioning;
use crate::db::{identities, m365_users};
use crate::error::AppError;
use crate::m365::jwks::KeysError;
use crate::m365::token::{Rejection, Rules, SsoIdentity};

/// The Microsoft hosts a tab runs in, as TeamsJS names them
/// (`app.getContext().app.host.name`).
pub const HOSTS: [&str; 7] = [
    "Teams",
    "TeamsModern",
    "Outlook",
    "OutlookWin32",
    "Office",
    "Orange",
    "Places",
];
/// The host recorded when the request names none.
pub const DEFAULT_HOST: &str = "Teams";
/// Query parameters that would carry a token in the URL.
const URL_TOKEN_PARAMS: [&str; 3] = ["token", "access_token", "id_token"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The SSO token, when not in the `Authorization` header.
    #[serde(default)]
    pub token: Option<String>,
    /// The Microsoft host the tab runs in.
    #[serde(default)]
    pub host: Option<String>,
}

fn anon(client: &Client) -> Actor<'_> {
    Actor {
        user_id: "",
        username: "",
        ip: &client.ip,
    }
}

pub async fn session(
    State(state): State<AppState>,
    client: Client,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return AppError::PayloadTooLarge.into_response();
        }
        Err(r) => return AppError::BadRequest(r.body_text()).into_response(),
    };
    match exchange(&state, &client, &parts, &body).await {
        Ok(r) => r,
        Err((e, reason)) => {
            if let Some(reason) = reason {
                state.metrics.logins.with_label_values(&["failure"]).inc();
                audit::record(
                    "login",
                    &anon(&client),
                    "refused",
                    &format!("m365 {reason}: {e}"),
                );
            }
            e.into_response()
        }
    }
}

/// A refusal, and the reason code to audit it under (`None`: not a
/// sign-in attempt, e.g. Teams sign-in is off).
type Refusal = (AppError, Option<&'static str>);

fn audited(e: AppError) -> Refusal {
    let code = e.code();
    (e, Some(code))
}

fn rejected(r: &Rejection) -> Refusal {
    (
        AppError::refused(
            StatusCode::UNAUTHORIZED,
            "m365_token_rejected",
            format!("{}: {r}", r.reason()),
        ),
        Some(r.reason()),
    )
}

fn keys_unavailable(e: &KeysError) -> Refusal {
    tracing::warn!(error = %e, "Teams sign-in keys unavailable");
    audited(AppError::refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "m365_keys_unavailable",
        "the tenant signing keys cannot be read; try again shortly",
    ))
}

async fn exchange(
    state: &AppState,
    client: &Client,
    parts: &Parts,
    body: &[u8],
) -> Result<Response, Refusal> {
    let m365 = &state.config.m365;
    let keys_cache = match (&state.m365_keys, m365.enabled) {
        (Some(k), true) => k.clone(),
        _ => {
            return Err((
                AppError::refused(
                    StatusCode::NOT_FOUND,
                    "m365_disabled",
                    "sign-in from Microsoft Teams is not enabled here",
                ),
                None,
            ));
        }
    };
    let now = state.clock.now_ms();
    if let Err(wait) = state.login_limiter.check(&client.ip, now) {
        state
            .metrics
            .logins
            .with_label_values(&["rate_limited"])
            .inc();
        audit::record("login", &anon(client), "rate_limited", "m365");
        return Err((AppError::RateLimited(wait), None));
    }
    // Names only: the value is never read, logged or checked.
    let in_url = parts.uri.query().is_some_and(|q| {
        openidconnect::url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, _)| URL_TOKEN_PARAMS.contains(&k.as_ref()))
    });
    if in_url {
        return Err(audited(AppError::refused(
            StatusCode::BAD_REQUEST,
            "m365_token_in_url",
            "send the token in the Authorization header or the JSON body, never in the URL",
        )));
    }
    let req = parse_body(parts, body).map_err(audited)?;
    let token = pick_token(parts, req.token).map_err(audited)?;
    let host = req.host.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    if !HOSTS.contains(&host.as_str()) {
        return Err(audited(AppError::refused(
            StatusCode::BAD_REQUEST,
            "m365_unknown_host",
            format!("host must be one of {}", HOSTS.join(", ")),
        )));
    }

    let rules = Rules::new(m365);
    let now_secs = now.div_euclid(1000);
    let keys = keys_cache
        .current(now)
        .await
        .map_err(|e| keys_unavailable(&e))?;
    let identity = match rules.validate(&token, &keys, now_secs) {
        Err(Rejection::UnknownKey(kid)) => {
            match keys_cache
                .refetch(now, &keys)
                .await
                .map_err(|e| keys_unavailable(&e))?
            {
                Some(newer) => rules.validate(&token, &newer, now_secs),
                None => Err(Rejection::UnknownKey(kid)),
            }
        }
        other => other,
    }
    .map_err(|r| rejected(&r))?;

    let user = bind(state, client, &identity).await?;
    m365_users::record_sign_in(
        &state.db,
        &user.id,
        &identity.tenant,
        &identity.oid,
        &host,
        now,
    )
    .await
    .map_err(|e| (AppError::from(e), None))?;
    let method = format!(
        "m365 {} ({host}, v{})",
        identity.external().account_key(),
        match identity.version {
            crate::m365::token::Version::V1 => "1",
            crate::m365::token::Version::V2 => "2",
        }
    );
    let (login, cookies) = start_session_for(state, client, user, &method, CookieSite::Embedded)
        .await
        .map_err(|e| (e, None))?;
    let mut resp = Json(login).into_response();
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

fn parse_body(parts: &Parts, body: &[u8]) -> Result<SessionRequest, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SessionRequest {
            token: None,
            host: None,
        });
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(AppError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| AppError::InvalidJson(e.to_string()))
}

/// The token from the header or the body; both, or neither, is refused.
fn pick_token(parts: &Parts, in_body: Option<String>) -> Result<String, AppError> {
    let in_header = match parts.headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().unwrap_or("");
            match v.split_once(' ') {
                Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(t.trim().to_owned())
                }
                _ => {
                    return Err(AppError::refused(
                        StatusCode::BAD_REQUEST,
                        "m365_token_missing",
                        "the Authorization header must be `Bearer <token>`",
                    ));
                }
            }
        }
    };
    match (in_header, in_body) {
        (Some(_), Some(_)) => Err(AppError::refused(
            StatusCode::BAD_REQUEST,
            "m365_token_ambiguous",
            "send the token once: in the Authorization header or in the body",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(AppError::refused(
            StatusCode::BAD_REQUEST,
            "m365_token_missing",
            "no token: send the Teams SSO token as `Authorization: Bearer <token>` or {\"token\": ...}",
        )),
    }
}

/// The account `identity` is bound to, as an Entra OpenID Connect sign-in
/// finds it; a first sign-in provisions one (or is refused, per
/// `[m365] provisioning`).
async fn bind(
    state: &AppState,
    client: &Client,
    identity: &SsoIdentity,
) -> Result<crate::db::users::User, Refusal> {
    let db_err = |e: crate::db::DbError| (AppError::from(e), None);
    let mut external = identity.external();
    let key = external.account_key();
    let now = state.clock.now_ms();
    let display: Option<String> = identity
        .name
        .clone()
        .or_else(|| identity.username.clone())
        .map(|n| n.chars().take(128).collect());
    match identities::user_for(&state.db, &key)
        .await
        .map_err(db_err)?
    {
        Some((_, true)) => Err(audited(account_disabled())),
        Some((user, false)) => {
            // Access tokens rarely carry `email`: keep the one the account
            // has rather than erase it.
            if external.email.is_none() {
                external.email = user.email.clone();
            }
            identities::record_login(&state.db, &user.id, &external, display.as_deref(), now)
                .await
                .map_err(db_err)?;
            crate::db::users::get(&state.db, &user.id)
                .await
                .map_err(db_err)
        }
        None if state.config.m365.provisioning == Provisioning::Refuse => {
            Err(audited(AppError::refused(
                StatusCode::FORBIDDEN,
                "m365_unknown_user",
                format!("{key} has no account here and accounts are not created on sign-in"),
            )))
        }
        None => provision(
            state,
            client,
            &external,
            display.as_deref().unwrap_or(""),
            now,
            " from Microsoft 365",
        )
        .await
        .map_err(db_err),
    }
}
