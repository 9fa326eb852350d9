//! Outgoing webhook deliveries, off the request path.
//!
//! A post that fires a hook commits together with its outbox rows
//! ([`db::webhooks::enqueue_matches`]); [`run`] (one per node) claims due
//! rows, POSTs each to its callback URL with a timeout, posts a `{"text"}`
//! answer back into the channel, and marks the row done. A failure is
//! retried with doubling delays until `integrations.max_attempts`, then
//! given up and counted. Rows outlive the process, so a restart resumes
//! where it stopped; a delivery cut off mid-flight is repeated after its
//! claim expires, and the answer post carries the row's id as its pending
//! id, so a repeat never posts it twice.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, Request, header};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::AppState;
use crate::api::webhooks::callback_allowed;
use crate::db::outbox::{self, Delivery};
use crate::db::posts::{self, NewPost, parse_mentions};
use crate::db::webhooks::{self, ContentType};
use crate::db::{DbError, channels, teams, users};
use crate::oidc::http::HttpClient;

/// Deliveries claimed at once by a node.
const BATCH: i64 = 16;
/// The longest wait between retries.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// What the receiver gets (the field names chat integrations expect).
#[derive(Debug, Serialize)]
pub struct Outgoing {
    pub token: String,
    pub team_id: String,
    pub team_domain: String,
    pub channel_id: String,
    pub channel_name: String,
    pub timestamp: i64,
    pub user_id: String,
    pub user_name: String,
    pub post_id: String,
    pub text: String,
    pub trigger_word: String,
}

/// What a receiver may answer.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_url: Option<String>,
    /// "comment" answers in the post's thread.
    #[serde(default)]
    response_type: Option<String>,
}

/// Wakes the worker when a post may have queued deliveries.
#[derive(Debug, Default)]
pub struct Wake(Notify);

impl Wake {
    pub fn new() -> Arc<Self> {
        Arc::new(Wake(Notify::new()))
    }

    pub fn notify(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`notify`](Self::notify) (or at once if one
    /// came since the last wait).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// Delivers until the task is dropped. Polls every
/// `integrations.poll_ms` besides being woken, so rows queued by other
/// nodes and retries that come due are picked up.
pub async fn run(state: AppState) {
    let client = match HttpClient::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries disabled: no HTTP client");
            return;
        }
    };
    let poll = Duration::from_millis(state.config.integrations.poll_ms);
    loop {
        match deliver_due(&state, &client).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook outbox"),
        }
        tokio::select! {
            _ = state.deliveries.0.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: claims what is due and delivers it concurrently.
pub async fn deliver_due(state: &AppState, client: &HttpClient) -> Result<usize, DbError> {
    let cfg = &state.config.integrations;
    let now = state.clock.now_ms();
    let lease = cfg.timeout_ms as i64 * 2 + 1000;
    let batch = outbox::claim(&state.db, now, lease, BATCH).await?;
    let n = batch.len();
    let jobs = batch.into_iter().map(|d| deliver(state, client, d));
    for r in futures_util::future::join_all(jobs).await {
        r?;
    }
    Ok(n)
}

async fn deliver(state: &AppState, client: &HttpClient, d: Delivery) -> Result<(), DbError> {
    let cfg = &state.config.integrations;
    match attempt(state, client, &d).await {
        Ok(()) => {
            outbox::done(&state.db, &d.id).await?;
            state
                .metrics
                .webhook_deliveries
                .with_label_values(&["ok"])
                .inc();
        }
        Err(Failure::Final(why)) => {
            outbox::attempt_failed(&state.db, &d.id, &why, None).await?;
            state
                .metrics
                .webhook_deliveries
                .with_label_values(&["failed"])
                .inc();
            tracing::warn!(delivery = %d.id, hook = %d.hook_id, error = %why, "webhook given up");
        }
        Err(Failure::Retry(why)) => {
            let made = d.attempts + 1;
            if made >= i64::from(cfg.max_attempts) {
                outbox::attempt_failed(&state.db, &d.id, &why, None).await?;
                state
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(delivery = %d.id, hook = %d.hook_id, error = %why, attempts = made, "webhook given up");
            } else {
                let backoff = (cfg.retry_base_ms as i64).saturating_mul(1 << (made - 1).min(20));
                let at = state.clock.now_ms() + backoff.min(MAX_BACKOFF_MS);
                outbox::attempt_failed(&state.db, &d.id, &why, Some(at)).await?;
                state
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&["retry"])
                    .inc();
            }
        }
    }
    Ok(())
}

enum Failure {
    /// Worth trying again (receiver down, timeout, 5xx, 429).
    Retry(String),
    /// Never worth repeating (hook deleted, host no longer allowed, 4xx).
    Final(String),
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => Failure::Final("post, channel or hook is gone".into()),
            other => Failure::Retry(other.to_string()),
        }
    }
}

async fn attempt(state: &AppState, client: &HttpClient, d: &Delivery) -> Result<(), Failure> {
    let cfg = &state.config.integrations;
    let hook = webhooks::get_outgoing(&state.db, &d.hook_id).await?;
    // The hook may have been updated since the post queued this.
    if !hook.callback_urls.contains(&d.url) {
        return Err(Failure::Final("the hook no longer names this URL".into()));
    }
    // The allow-list is checked again: it may have shrunk since creation.
    callback_allowed(&d.url, &cfg.allowed_hosts).map_err(|e| Failure::Final(e.to_string()))?;
    let post = posts::get(&state.db, &d.post_id).await?;
    if post.deleted {
        return Err(Failure::Final("the post was deleted".into()));
    }
    let ch = channels::get(&state.db, &post.channel_id).await?;
    let team = teams::get(&state.db, &hook.team_id).await?;
    let author = users::get(&state.db, &post.user_id).await?;
    let body = Outgoing {
        token: hook.token.clone(),
        team_id: team.id,
        team_domain: team.name,
        channel_id: ch.id.clone(),
        channel_name: ch.name,
        timestamp: post.created_at,
        user_id: author.id,
        user_name: author.username,
        post_id: post.id.clone(),
        text: post.message.clone(),
        trigger_word: d.trigger_word.clone(),
    };
    let (ct, bytes) = match hook.content_type {
        ContentType::Json => (
            "application/json",
            serde_json::to_vec(&body).map_err(|e| Failure::Final(e.to_string()))?,
        ),
        ContentType::Form => (
            "application/x-www-form-urlencoded",
            serde_urlencoded::to_string(&body)
                .map_err(|e| Failure::Final(e.to_string()))?
                .into_bytes(),
        ),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(&d.url)
        .header(header::CONTENT_TYPE, ct)
        .header(header::ACCEPT, "application/json")
        .body(bytes)
        .map_err(|e| Failure::Final(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_millis(cfg.timeout_ms), client.send(req))
        .await
        .map_err(|_| Failure::Retry("timed out".into()))?
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let status = resp.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Failure::Retry(format!("receiver answered {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(format!("receiver answered {status}")));
    }
    let answer: Answer = if resp.body().iter().all(u8::is_ascii_whitespace) {
        Answer::default()
    } else {
        // A body that is not our JSON is no answer, not a failure.
        serde_json::from_slice(resp.body()).unwrap_or_default()
    };
    if answer.text.trim().is_empty() {
        return Ok(());
    }
    let root = (hook.reply_in_thread || answer.response_type.as_deref() == Some("comment"))
        .then(|| post.root_id.clone().unwrap_or_else(|| post.id.clone()));
    let text: String = answer
        .text
        .chars()
        .take(state.config.limits.max_post_chars)
        .collect();
    let clean = |s: Option<String>, max: usize| {
        s.map(|s| s.trim().chars().take(max).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    let icon = clean(answer.icon_url, 512)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let pending = format!("outbox-{}", d.id);
    let res = posts::create(
        &state.db,
        NewPost {
            channel_id: &post.channel_id,
            user_id: &hook.creator_id,
            root_id: root.as_deref(),
            message: &text,
            pending_id: Some(&pending),
            from_webhook: true,
            override_username: clean(answer.username, 64).as_deref(),
            override_icon_url: icon.as_deref(),
            file_ids: &[],
            notify_teams: false,
        },
        &parse_mentions(&text, crate::api::posts::MAX_MENTIONS),
        state.clock.now_ms(),
    )
    .await;
    match res {
        Ok(posts::Created::New(..)) => {
            state.announce();
            state.metrics.posts_created.inc();
            Ok(())
        }
        Ok(posts::Created::Existing(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
