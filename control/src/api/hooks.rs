//! `POST /hooks/{secret}`: an incoming webhook posts into its channel.
//!
//! Accepts what Mattermost-style senders send: a JSON body
//! `{"text", "username"?, "icon_url"?}` (other fields are ignored), or
//! `application/x-www-form-urlencoded` with that JSON in `payload=`.
//! Checks, in order: size (413), secret (404; looked up by its SHA-256),
//! rate per hook (429), content type (415), payload (400), and then the
//! post is made as the hook's creator, marked as coming from a bot, with
//! the name and icon the payload or the hook asks for.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::posts::check_message;
use super::webhooks::check_icon_url;
use crate::AppState;
use crate::auth::tokens::hash_secret;
use crate::db::DbError;
use crate::db::posts::{self, Created, NewPost, parse_mentions};
use crate::db::webhooks;
use crate::error::AppError;

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_url: Option<String>,
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Payload, AppError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json: Vec<u8> = match mime.as_str() {
        "application/json" => body.to_vec(),
        "application/x-www-form-urlencoded" => {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| AppError::Invalid("invalid_payload", format!("form body: {e}")))?;
            form.into_iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.into_bytes())
                .ok_or_else(|| {
                    AppError::Invalid("invalid_payload", "the form has no payload field".into())
                })?
        }
        _ => {
            return Err(AppError::UnsupportedMediaType);
        }
    };
    serde_json::from_slice(&json).map_err(|e| AppError::InvalidJson(e.to_string()))
}

pub async fn incoming(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, &'static str), AppError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
        _ => AppError::BadRequest(r.body_text()),
    })?;
    let cfg = &state.config.integrations;
    if body.len() > cfg.max_payload_bytes {
        return Err(AppError::PayloadTooLarge);
    }
    let hook = match webhooks::incoming_by_secret(&state.db, &hash_secret(&secret)).await {
        Ok(h) => h,
        Err(DbError::NotFound) => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let now = state.clock.now_ms();
    state
        .hook_limiter
        .check(&hook.id, now)
        .map_err(AppError::RateLimited)?;
    let p = parse(&headers, &body)?;
    let text = p.text.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(AppError::Invalid(
            "invalid_payload",
            "text is required".into(),
        ));
    }
    check_message(&state, &text)?;
    let username = p.username.unwrap_or(hook.username);
    if username.chars().count() > 64 {
        return Err(AppError::Invalid(
            "invalid_payload",
            "username is at most 64 characters".into(),
        ));
    }
    let icon_url = p.icon_url.unwrap_or(hook.icon_url);
    check_icon_url(&icon_url).map_err(|e| AppError::Invalid("invalid_payload", e.to_string()))?;
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let res = posts::create(
        &state.db,
        NewPost {
            channel_id: &hook.channel_id,
            user_id: &hook.creator_id,
            message: &text,
            from_webhook: true,
            override_username: nonempty(&username).as_deref(),
            override_icon_url: nonempty(&icon_url).as_deref(),
            ..Default::default()
        },
        &parse_mentions(&text, super::posts::MAX_MENTIONS),
        now,
    )
    .await?;
    if let Created::New(..) = res {
        state.announce();
        state.metrics.posts_created.inc();
    }
    Ok((StatusCode::OK, "ok"))
}
