//! Managing incoming and outgoing webhooks.
//!
//! Who may do what:
//! - Incoming: any member (not a guest) of an open or private channel
//!   creates one for that channel. A hook is listed, changed, given a new
//!   secret and deleted by its creator and by those who manage the channel
//!   (channel admins, team admins, system admins). Anyone else gets 404.
//! - Outgoing: team admins (and system admins) only, since a hook sends
//!   the team's messages out of the server. Callback URLs must name a host
//!   on `integrations.allowed_hosts`, so a hook cannot be pointed at
//!   arbitrary hosts inside the operator's network.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use signaling::events::ChannelKind;

use super::access::{can_manage_channel, member_channel, team_role};
use super::auth::Client;
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::CurrentUser;
use crate::auth::tokens::{hash_secret, random_secret};
use crate::db::channels;
use crate::db::teams::TeamRole;
use crate::db::webhooks::{
    self, ContentType, IncomingFields, IncomingWebhook, NewOutgoing, OutgoingFields,
    OutgoingWebhook, TriggerWhen,
};
use crate::error::AppError;

/// The path an incoming hook is posted to; the secret follows.
pub const HOOK_PATH: &str = "/hooks/";
const SECRET_PREFIX: &str = "whk_";
const MAX_TRIGGER_WORDS: usize = 16;
const MAX_CALLBACKS: usize = 8;

fn actor<'a>(user: &'a CurrentUser, client: &'a Client) -> Actor<'a> {
    Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    }
}

fn check_len(field: &str, v: &str, max: usize) -> Result<(), AppError> {
    if v.chars().count() > max {
        return Err(AppError::BadRequest(format!(
            "{field} is at most {max} characters"
        )));
    }
    Ok(())
}

/// An http(s) URL, or empty.
pub fn check_icon_url(v: &str) -> Result<(), AppError> {
    check_len("icon_url", v, 512)?;
    if v.is_empty() || v.starts_with("https://") || v.starts_with("http://") {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "icon_url must be an http or https URL".into(),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingRequest {
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub icon_url: String,
}

impl IncomingRequest {
    fn fields(self) -> Result<IncomingFields, AppError> {
        let display_name = self.display_name.trim().to_owned();
        if display_name.is_empty() {
            return Err(AppError::BadRequest("display_name is required".into()));
        }
        check_len("display_name", &display_name, 64)?;
        check_len("description", &self.description, 500)?;
        check_len("username", &self.username, 64)?;
        check_icon_url(&self.icon_url)?;
        Ok(IncomingFields {
            display_name,
            description: self.description,
            username: self.username.trim().to_owned(),
            icon_url: self.icon_url,
        })
    }
}

/// An incoming hook with its URL; the secret is shown only when made.
#[derive(Serialize)]
pub struct IncomingWithSecret {
    #[serde(flatten)]
    pub hook: IncomingWebhook,
    /// The path to post to: `/hooks/<secret>`. Shown once.
    pub url: String,
}

fn with_secret(hook: IncomingWebhook, secret: &str) -> IncomingWithSecret {
    IncomingWithSecret {
        hook,
        url: format!("{HOOK_PATH}{secret}"),
    }
}

pub async fn create_incoming(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(channel_id): Path<String>,
    Json(req): Json<IncomingRequest>,
) -> Result<Response, AppError> {
    let (ch, _) = member_channel(&state, &user, &channel_id).await?;
    if user.is_guest() {
        return Err(AppError::Forbidden("guests cannot create webhooks"));
    }
    if !matches!(ch.kind, ChannelKind::Open | ChannelKind::Private) {
        return Err(AppError::BadRequest(
            "webhooks post into open or private channels only".into(),
        ));
    }
    let fields = req.fields()?;
    let secret = random_secret(SECRET_PREFIX);
    let hook = webhooks::create_incoming(
        &state.db,
        &channel_id,
        user.id(),
        &fields,
        &hash_secret(&secret),
        state.clock.now_ms(),
    )
    .await?;
    audit::record(
        "incoming_webhook_create",
        &actor(&user, &client),
        "success",
        &format!("hook {} into channel {channel_id}", hook.id),
    );
    Ok(created(with_secret(hook, &secret)))
}

pub async fn list_incoming(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(channel_id): Path<String>,
) -> Result<Json<Vec<IncomingWebhook>>, AppError> {
    let (ch, m) = member_channel(&state, &user, &channel_id).await?;
    let all = can_manage_channel(&state, &user, &ch, &m).await?;
    let mut list = webhooks::list_incoming(&state.db, &channel_id).await?;
    if !all {
        list.retain(|h| h.creator_id == user.id());
    }
    Ok(Json(list))
}

/// The hook if the caller may manage it; 404 otherwise.
async fn managed_incoming(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> Result<IncomingWebhook, AppError> {
    let hook = webhooks::get_incoming(&state.db, id).await?;
    let (ch, m) = member_channel(state, user, &hook.channel_id)
        .await
        .map_err(|_| AppError::NotFound)?;
    if hook.creator_id == user.id() || can_manage_channel(state, user, &ch, &m).await? {
        Ok(hook)
    } else {
        Err(AppError::NotFound)
    }
}

pub async fn get_incoming(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<IncomingWebhook>, AppError> {
    Ok(Json(managed_incoming(&state, &user, &id).await?))
}

pub async fn update_incoming(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<IncomingRequest>,
) -> Result<Json<IncomingWebhook>, AppError> {
    managed_incoming(&state, &user, &id).await?;
    let fields = req.fields()?;
    let hook = webhooks::update_incoming(&state.db, &id, &fields, state.clock.now_ms()).await?;
    audit::record(
        "incoming_webhook_update",
        &actor(&user, &client),
        "success",
        &format!("hook {id} into channel {}", hook.channel_id),
    );
    Ok(Json(hook))
}

/// A new secret; the old URL stops working at once.
pub async fn regenerate_secret(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<IncomingWithSecret>, AppError> {
    managed_incoming(&state, &user, &id).await?;
    let secret = random_secret(SECRET_PREFIX);
    webhooks::set_incoming_secret(&state.db, &id, &hash_secret(&secret), state.clock.now_ms())
        .await?;
    audit::record(
        "incoming_webhook_secret",
        &actor(&user, &client),
        "success",
        &format!("hook {id}"),
    );
    let hook = webhooks::get_incoming(&state.db, &id).await?;
    Ok(Json(with_secret(hook, &secret)))
}

pub async fn delete_incoming(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    managed_incoming(&state, &user, &id).await?;
    webhooks::delete_incoming(&state.db, &id, state.clock.now_ms()).await?;
    audit::record(
        "incoming_webhook_delete",
        &actor(&user, &client),
        "success",
        &format!("hook {id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingRequest {
    pub display_name: String,
    pub trigger_words: Vec<String>,
    #[serde(default = "exact")]
    pub trigger_when: TriggerWhen,
    pub callback_urls: Vec<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default = "json_body")]
    pub content_type: ContentType,
    #[serde(default)]
    pub reply_in_thread: bool,
}

fn exact() -> TriggerWhen {
    TriggerWhen::Exact
}

fn json_body() -> ContentType {
    ContentType::Json
}

/// Whether `url` is http(s) to a host on the allow-list. Entries are
/// `host` (any port) or `host:port`, compared without case.
pub fn callback_allowed(url: &str, allowed: &[String]) -> Result<(), AppError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| AppError::BadRequest(format!("{url:?} is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(AppError::BadRequest(format!(
            "{url:?}: callback URLs are http or https"
        )));
    }
    let Some(host) = uri.host() else {
        return Err(AppError::BadRequest(format!("{url:?} names no host")));
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(AppError::BadRequest(format!(
            "{url:?}: callback URLs carry no user info"
        )));
    }
    let host = host.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let with_port = format!("{host}:{port}");
    let ok = allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || a == with_port
    });
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid(
            "callback_host_not_allowed",
            format!(
                "{host} is not on the server's list of webhook hosts (integrations.allowed_hosts)"
            ),
        ))
    }
}

async fn require_team_admin(
    state: &AppState,
    user: &CurrentUser,
    team_id: &str,
) -> Result<(), AppError> {
    if team_role(state, user, team_id).await? != TeamRole::Admin {
        return Err(AppError::Forbidden(
            "only team admins manage outgoing webhooks",
        ));
    }
    Ok(())
}

/// Checks a create or update request for a hook of `team_id`.
async fn check_outgoing<'a>(
    state: &AppState,
    team_id: &str,
    req: &'a OutgoingRequest,
) -> Result<OutgoingFields<'a>, AppError> {
    let display_name = req.display_name.trim();
    if display_name.is_empty() {
        return Err(AppError::BadRequest("display_name is required".into()));
    }
    check_len("display_name", display_name, 64)?;
    if req.trigger_words.is_empty() || req.trigger_words.len() > MAX_TRIGGER_WORDS {
        return Err(AppError::BadRequest(format!(
            "trigger_words holds 1 to {MAX_TRIGGER_WORDS} words"
        )));
    }
    for w in &req.trigger_words {
        if w.is_empty() || w.chars().count() > 64 || w.chars().any(char::is_whitespace) {
            return Err(AppError::BadRequest(
                "each trigger word is 1 to 64 characters without spaces".into(),
            ));
        }
    }
    if req.callback_urls.is_empty() || req.callback_urls.len() > MAX_CALLBACKS {
        return Err(AppError::BadRequest(format!(
            "callback_urls holds 1 to {MAX_CALLBACKS} URLs"
        )));
    }
    for url in &req.callback_urls {
        check_len("a callback URL", url, 1024)?;
        callback_allowed(url, &state.config.integrations.allowed_hosts)?;
    }
    if let Some(ch) = &req.channel_id {
        let c = channels::get(&state.db, ch).await.ok();
        if !c.is_some_and(|c| c.team_id.as_deref() == Some(team_id) && c.kind == ChannelKind::Open)
        {
            return Err(AppError::BadRequest(
                "channel_id must name an open channel of this team".into(),
            ));
        }
    }
    Ok(OutgoingFields {
        channel_id: req.channel_id.as_deref(),
        display_name,
        trigger_words: &req.trigger_words,
        trigger_when: req.trigger_when,
        callback_urls: &req.callback_urls,
        content_type: req.content_type,
        reply_in_thread: req.reply_in_thread,
    })
}

pub async fn create_outgoing(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(team_id): Path<String>,
    Json(req): Json<OutgoingRequest>,
) -> Result<Response, AppError> {
    require_team_admin(&state, &user, &team_id).await?;
    let fields = check_outgoing(&state, &team_id, &req).await?;
    let token = random_secret("");
    let hook = webhooks::create_outgoing(
        &state.db,
        NewOutgoing {
            team_id: &team_id,
            creator_id: user.id(),
            token: &token,
            fields,
        },
        state.clock.now_ms(),
    )
    .await?;
    audit::record(
        "outgoing_webhook_create",
        &actor(&user, &client),
        "success",
        &format!(
            "hook {} in team {team_id} to {}",
            hook.id,
            hook.callback_urls.join(" ")
        ),
    );
    Ok(created(hook))
}

/// Replaces a hook's settings (the whole request, as at creation: callback
/// URLs are checked against the allow-list again). Queued deliveries to a
/// URL the hook no longer names are dropped when their turn comes.
pub async fn update_outgoing(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
    Json(req): Json<OutgoingRequest>,
) -> Result<Json<OutgoingWebhook>, AppError> {
    let old = managed_outgoing(&state, &user, &id).await?;
    let fields = check_outgoing(&state, &old.team_id, &req).await?;
    let hook = webhooks::update_outgoing(&state.db, &id, &fields, state.clock.now_ms()).await?;
    audit::record(
        "outgoing_webhook_update",
        &actor(&user, &client),
        "success",
        &format!(
            "hook {id} in team {} to {} (was {}); triggers {}",
            hook.team_id,
            hook.callback_urls.join(" "),
            old.callback_urls.join(" "),
            hook.trigger_words.join(" ")
        ),
    );
    Ok(Json(hook))
}

pub async fn list_outgoing(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(team_id): Path<String>,
) -> Result<Json<Vec<OutgoingWebhook>>, AppError> {
    require_team_admin(&state, &user, &team_id).await?;
    Ok(Json(webhooks::list_outgoing(&state.db, &team_id).await?))
}

async fn managed_outgoing(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> Result<OutgoingWebhook, AppError> {
    let hook = webhooks::get_outgoing(&state.db, id).await?;
    match team_role(state, user, &hook.team_id).await {
        Ok(TeamRole::Admin) => Ok(hook),
        _ => Err(AppError::NotFound),
    }
}

pub async fn get_outgoing(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OutgoingWebhook>, AppError> {
    Ok(Json(managed_outgoing(&state, &user, &id).await?))
}

pub async fn delete_outgoing(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    managed_outgoing(&state, &user, &id).await?;
    webhooks::delete_outgoing(&state.db, &id, state.clock.now_ms()).await?;
    audit::record(
        "outgoing_webhook_delete",
        &actor(&user, &client),
        "success",
        &format!("hook {id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_hosts_are_checked_against_the_list() {
        let list = vec!["hooks.example.org".to_owned(), "127.0.0.1:9000".to_owned()];
        assert!(callback_allowed("https://hooks.example.org/x", &list).is_ok());
        assert!(callback_allowed("http://HOOKS.example.org:8080/x", &list).is_ok());
        assert!(callback_allowed("http://127.0.0.1:9000/in", &list).is_ok());
        for bad in [
            "http://127.0.0.1:9001/in",
            "http://127.0.0.1/in",
            "http://169.254.169.254/latest",
            "http://hooks.example.org.evil.test/",
        ] {
            let e = callback_allowed(bad, &list).unwrap_err();
            assert_eq!(e.code(), "callback_host_not_allowed", "{bad}");
        }
        for bad in [
            "ftp://hooks.example.org/",
            "not a url",
            "http://u:p@hooks.example.org/",
        ] {
            assert_eq!(
                callback_allowed(bad, &list).unwrap_err().code(),
                "bad_request",
                "{bad}"
            );
        }
    }
}
