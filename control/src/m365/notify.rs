//! Teams activity notifications: who gets what, and the worker that sends
//! them, off the request path.
//!
//! A post or a ringing call writes its notifications in its own
//! transaction ([`db::m365_outbox`]): `mention` for each member named by
//! an @username, `direct_message` for the other members of a direct or
//! group channel, `call_ringing` for each person a direct or group call
//! rings — only people who signed in through the Teams tab, never the
//! author, never a bot. [`run`] (one per node) claims due rows and sends
//! each through [`Graph`], with the link that opens the post (or the call)
//! in the app's notification tab. A 429 or 5xx, a timeout or a refused
//! token is retried (after `Retry-After` when Graph names one, else with
//! doubling delays) up to `max_attempts`; any other 4xx is given up at
//! once. Rows outlive the process: a restart sends what was queued.
//!
//! With `preview = "none"` (the default) nothing of the message leaves
//! the site: the request says who, where and that there is something new.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use signaling::events::ChannelKind;

use super::graph::{ActivityNotification, Graph, GraphError, KeyValue, PreviewText, Topic};
use super::{ACTIVITY_TYPES, CALL_RINGING, M365Config, NOTIFICATION_ENTITY_ID, Preview};
use crate::AppState;
use crate::db::m365_outbox::{self, Pending};
use crate::db::{DbError, channels, posts, users};
use crate::oidc::http::HttpClient;

/// Notifications claimed at once by a node.
const BATCH: i64 = 16;
/// The longest wait between retries without a `Retry-After`.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;
/// What Teams shows at most of `previewText`.
pub const MAX_PREVIEW_CHARS: usize = 150;
/// The preview when the message itself may not be shown (or has no text).
pub const NO_PREVIEW_MESSAGE: &str = "New message";
pub const NO_PREVIEW_CALL: &str = "Incoming call";
/// `{place}` of a group channel, whose name lists its members.
const GROUP_PLACE: &str = "a group conversation";

/// `encodeURIComponent`'s set: what Teams expects in `context`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The link a notification opens: the app's notification tab, told which
/// post (`post_<id>`) or call (`call_<channel id>`) to show.
pub fn deep_link(cfg: &M365Config, sub_entity_id: &str) -> String {
    let context = serde_json::json!({ "subEntityId": sub_entity_id }).to_string();
    format!(
        "https://{}/l/entity/{}/{}?context={}",
        cfg.cloud.hosts().teams_host,
        utf8_percent_encode(cfg.app_id(), URI_COMPONENT),
        NOTIFICATION_ENTITY_ID,
        utf8_percent_encode(&context, URI_COMPONENT)
    )
}

/// `previewText` of a post under the operator's policy: with `short`, its
/// first `preview_chars` characters (never past 150, never inside a
/// character); with `none`, or a post of files alone, only that there is
/// a new message.
pub fn post_preview(cfg: &M365Config, message: &str) -> String {
    let n = &cfg.notifications;
    let text = message.trim();
    match n.preview {
        Preview::Short if !text.is_empty() => text
            .chars()
            .take(n.preview_chars.min(MAX_PREVIEW_CHARS))
            .collect(),
        _ => NO_PREVIEW_MESSAGE.into(),
    }
}

/// Sends until the task is dropped. Polls every `poll_ms` besides being
/// woken, so rows queued by other nodes and retries that come due go out.
pub async fn run(state: AppState) {
    let http = match HttpClient::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Teams notifications disabled: no HTTP client");
            return;
        }
    };
    let graph = Graph::new(&state.config.m365, http);
    let poll = Duration::from_millis(state.config.m365.notifications.poll_ms);
    loop {
        match deliver_due(&state, &graph).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Teams notification outbox"),
        }
        tokio::select! {
            _ = state.teams_notifications.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: claims what is due and sends it concurrently; returns how
/// many were claimed.
pub async fn deliver_due(state: &AppState, graph: &Graph) -> Result<usize, DbError> {
    let cfg = &state.config.m365.notifications;
    let now = state.clock.now_ms();
    // A token fetch and the send, each bounded by the timeout.
    let lease = cfg.timeout_ms as i64 * 2 + 1000;
    let batch = m365_outbox::claim(&state.db, now, lease, BATCH).await?;
    let n = batch.len();
    let jobs = batch.into_iter().map(|p| deliver(state, graph, p));
    for r in futures_util::future::join_all(jobs).await {
        r?;
    }
    Ok(n)
}

async fn deliver(state: &AppState, graph: &Graph, p: Pending) -> Result<(), DbError> {
    let cfg = &state.config.m365.notifications;
    let count = |outcome: &str| {
        state
            .metrics
            .teams_notifications
            .with_label_values(&[outcome])
            .inc()
    };
    match attempt(state, graph, &p).await {
        Ok(()) => {
            m365_outbox::done(&state.db, &p.id).await?;
            count("sent");
        }
        Err(GraphError::Final(why)) => {
            m365_outbox::attempt_failed(&state.db, &p.id, &why, None).await?;
            count("given_up");
            tracing::warn!(notification = %p.id, activity = %p.activity, error = %why, "Teams notification given up");
        }
        Err(GraphError::Retry { why, after_ms }) => {
            let made = p.attempts + 1;
            if made >= i64::from(cfg.max_attempts) {
                m365_outbox::attempt_failed(&state.db, &p.id, &why, None).await?;
                count("given_up");
                tracing::warn!(notification = %p.id, activity = %p.activity, error = %why, attempts = made, "Teams notification given up");
            } else {
                let backoff = after_ms.unwrap_or_else(|| {
                    (cfg.retry_base_ms as i64)
                        .saturating_mul(1 << (made - 1).min(20))
                        .min(MAX_BACKOFF_MS)
                });
                let at = state.clock.now_ms() + backoff;
                m365_outbox::attempt_failed(&state.db, &p.id, &why, Some(at)).await?;
                count("failed");
            }
        }
    }
    Ok(())
}

impl From<DbError> for GraphError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => GraphError::Final("post, channel or user is gone".into()),
            other => GraphError::Retry {
                why: other.to_string(),
                after_ms: None,
            },
        }
    }
}

async fn attempt(state: &AppState, graph: &Graph, p: &Pending) -> Result<(), GraphError> {
    let cfg = &state.config.m365;
    let activity = ACTIVITY_TYPES
        .iter()
        .find(|a| a.name == p.activity)
        .ok_or_else(|| GraphError::Final(format!("unknown activity {:?}", p.activity)))?;
    let Some((tenant, object_id)) = m365_outbox::teams_identity(&state.db, &p.user_id).await?
    else {
        return Err(GraphError::Final(
            "the recipient no longer signs in through Teams".into(),
        ));
    };
    let actor = users::get(&state.db, &p.actor_id).await?;
    let channel = channels::get(&state.db, &p.channel_id).await?;
    let (sub_entity, preview) = match (&p.post_id, &p.call_id) {
        (Some(post_id), _) => {
            let post = posts::get(&state.db, post_id).await?;
            if post.deleted {
                return Err(GraphError::Final("the post was deleted".into()));
            }
            (
                format!("post_{}", post.id),
                post_preview(cfg, &post.message),
            )
        }
        (None, Some(call_id)) if activity.name == CALL_RINGING.name => {
            if !m365_outbox::still_rings(&state.db, call_id, &p.user_id).await? {
                return Err(GraphError::Final("the call no longer rings".into()));
            }
            (format!("call_{}", channel.id), NO_PREVIEW_CALL.into())
        }
        _ => return Err(GraphError::Final("names neither a post nor a call".into())),
    };
    let place = match channel.kind {
        ChannelKind::Direct => cfg.app.short_name.clone(),
        ChannelKind::Group => GROUP_PLACE.into(),
        _ => channel.display_name.clone(),
    };
    let actor_name = if actor.display_name.trim().is_empty() {
        actor.username.clone()
    } else {
        actor.display_name.clone()
    };
    let body = ActivityNotification {
        topic: Topic {
            source: "text",
            value: place.clone(),
            web_url: deep_link(cfg, &sub_entity),
        },
        activity_type: activity.name.into(),
        preview_text: PreviewText { content: preview },
        template_parameters: vec![
            KeyValue {
                name: "actor".into(),
                value: actor_name,
            },
            KeyValue {
                name: "place".into(),
                value: place,
            },
        ],
    };
    graph
        .send_activity(state.clock.now_ms(), &tenant, &object_id, &body)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(preview: Preview, chars: usize) -> M365Config {
        let mut c = M365Config {
            client_id: "00000000-1111-2222-3333-444444444444".into(),
            ..M365Config::default()
        };
        c.notifications.preview = preview;
        c.notifications.preview_chars = chars;
        c
    }

    #[test]
    fn the_deep_link_names_the_notification_tab_and_the_post() {
        let c = cfg(Preview::None, 100);
        assert_eq!(
            deep_link(&c, "post_abc123"),
            "https://teams.microsoft.com/l/entity/00000000-1111-2222-3333-444444444444/\
             notification_preview?context=%7B%22subEntityId%22%3A%22post_abc123%22%7D"
        );
        let mut dod = c.clone();
        dod.cloud = super::super::Cloud::Dod;
        assert!(deep_link(&dod, "call_x").starts_with("https://dod.teams.microsoft.us/l/entity/"));
    }

    #[test]
    fn previews_follow_the_policy_and_cut_on_characters() {
        let secret = "Launch codes: ñandú 🚀 at dawn";
        assert_eq!(
            post_preview(&cfg(Preview::None, 100), secret),
            "New message"
        );
        assert_eq!(
            post_preview(&cfg(Preview::Short, 16), secret),
            "Launch codes: ña"
        );
        // The cut falls right after a four-byte character, not inside it.
        assert_eq!(
            post_preview(&cfg(Preview::Short, 21), secret),
            "Launch codes: ñandú 🚀"
        );
        let long = "é".repeat(400);
        assert_eq!(
            post_preview(&cfg(Preview::Short, 500), &long)
                .chars()
                .count(),
            150
        );
        assert_eq!(post_preview(&cfg(Preview::Short, 50), "  "), "New message");
    }
}
