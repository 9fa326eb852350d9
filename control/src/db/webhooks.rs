//! Incoming and outgoing webhooks. An incoming hook is found by the hash of
//! its secret; an outgoing hook's matches for a new post are written to the
//! outbox ([`super::outbox`]) in the post's own transaction.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{Db, DbError, DbResult, new_id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncomingWebhook {
    pub id: String,
    pub channel_id: String,
    pub creator_id: String,
    pub display_name: String,
    pub description: String,
    /// Shown instead of the creator's name unless a payload names another.
    pub username: String,
    pub icon_url: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const INCOMING: &str = "SELECT id, channel_id, creator_id, display_name, description, username,
        icon_url, created_at, updated_at FROM incoming_webhooks";

fn incoming(row: &AnyRow) -> DbResult<IncomingWebhook> {
    Ok(IncomingWebhook {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        creator_id: row.try_get("creator_id")?,
        display_name: row.try_get("display_name")?,
        description: row.try_get("description")?,
        username: row.try_get("username")?,
        icon_url: row.try_get("icon_url")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The changeable fields of an incoming hook.
#[derive(Debug, Clone, Default)]
pub struct IncomingFields {
    pub display_name: String,
    pub description: String,
    pub username: String,
    pub icon_url: String,
}

pub async fn create_incoming(
    db: &Db,
    channel_id: &str,
    creator_id: &str,
    f: &IncomingFields,
    secret_hash: &str,
    now: i64,
) -> DbResult<IncomingWebhook> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO incoming_webhooks (id, secret_hash, channel_id, creator_id, display_name,
             description, username, icon_url, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(secret_hash)
    .bind(channel_id)
    .bind(creator_id)
    .bind(&f.display_name)
    .bind(&f.description)
    .bind(&f.username)
    .bind(&f.icon_url)
    .bind(now)
    .execute(&db.pool)
    .await?;
    get_incoming(db, &id).await
}

pub async fn get_incoming(db: &Db, id: &str) -> DbResult<IncomingWebhook> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INCOMING} WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    incoming(&row)
}

/// The live hook whose secret hashes to `secret_hash`. The lookup is an
/// index probe on the hash, so its time says nothing about the secret.
pub async fn incoming_by_secret(db: &Db, secret_hash: &str) -> DbResult<IncomingWebhook> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INCOMING} WHERE secret_hash = $1 AND deleted_at IS NULL"
    )))
    .bind(secret_hash)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    incoming(&row)
}

pub async fn list_incoming(db: &Db, channel_id: &str) -> DbResult<Vec<IncomingWebhook>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INCOMING} WHERE channel_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
    )))
    .bind(channel_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(incoming).collect()
}

pub async fn update_incoming(
    db: &Db,
    id: &str,
    f: &IncomingFields,
    now: i64,
) -> DbResult<IncomingWebhook> {
    let r = sqlx::query(
        "UPDATE incoming_webhooks SET display_name = $2, description = $3, username = $4,
             icon_url = $5, updated_at = $6
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(&f.display_name)
    .bind(&f.description)
    .bind(&f.username)
    .bind(&f.icon_url)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    get_incoming(db, id).await
}

/// Replaces the secret: the old URL stops working at once.
pub async fn set_incoming_secret(db: &Db, id: &str, secret_hash: &str, now: i64) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE incoming_webhooks SET secret_hash = $2, updated_at = $3
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(secret_hash)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

pub async fn delete_incoming(db: &Db, id: &str, now: i64) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE incoming_webhooks SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerWhen {
    /// The post's first word is a trigger word.
    Exact,
    /// The post's first word starts with a trigger word.
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    Json,
    Form,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingWebhook {
    pub id: String,
    pub team_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    pub creator_id: String,
    pub display_name: String,
    pub trigger_words: Vec<String>,
    pub trigger_when: TriggerWhen,
    pub callback_urls: Vec<String>,
    pub content_type: ContentType,
    pub reply_in_thread: bool,
    /// Sent with every delivery so the receiver can tell it is us.
    pub token: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const OUTGOING: &str = "SELECT id, token, team_id, channel_id, creator_id, display_name,
        trigger_words, trigger_when, callback_urls, content_type, reply_in_thread, created_at,
        updated_at FROM outgoing_webhooks";

fn outgoing(row: &AnyRow) -> DbResult<OutgoingWebhook> {
    let list = |col: &str| -> DbResult<Vec<String>> {
        let s: String = row.try_get(col)?;
        serde_json::from_str(&s).map_err(|e| DbError::Corrupt(format!("{col}: {e}")))
    };
    let when: String = row.try_get("trigger_when")?;
    let ct: String = row.try_get("content_type")?;
    let reply: i64 = row.try_get("reply_in_thread")?;
    Ok(OutgoingWebhook {
        id: row.try_get("id")?,
        token: row.try_get("token")?,
        team_id: row.try_get("team_id")?,
        channel_id: row.try_get("channel_id")?,
        creator_id: row.try_get("creator_id")?,
        display_name: row.try_get("display_name")?,
        trigger_words: list("trigger_words")?,
        trigger_when: if when == "prefix" {
            TriggerWhen::Prefix
        } else {
            TriggerWhen::Exact
        },
        callback_urls: list("callback_urls")?,
        content_type: if ct == "form" {
            ContentType::Form
        } else {
            ContentType::Json
        },
        reply_in_thread: reply != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What a team admin sets on an outgoing hook (at creation and update).
pub struct OutgoingFields<'a> {
    pub channel_id: Option<&'a str>,
    pub display_name: &'a str,
    pub trigger_words: &'a [String],
    pub trigger_when: TriggerWhen,
    pub callback_urls: &'a [String],
    pub content_type: ContentType,
    pub reply_in_thread: bool,
}

impl OutgoingFields<'_> {
    fn trigger_when(&self) -> &'static str {
        match self.trigger_when {
            TriggerWhen::Exact => "exact",
            TriggerWhen::Prefix => "prefix",
        }
    }

    fn content_type(&self) -> &'static str {
        match self.content_type {
            ContentType::Json => "json",
            ContentType::Form => "form",
        }
    }
}

pub struct NewOutgoing<'a> {
    pub team_id: &'a str,
    pub creator_id: &'a str,
    pub token: &'a str,
    pub fields: OutgoingFields<'a>,
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub async fn create_outgoing(db: &Db, n: NewOutgoing<'_>, now: i64) -> DbResult<OutgoingWebhook> {
    let id = new_id();
    let f = &n.fields;
    sqlx::query(
        "INSERT INTO outgoing_webhooks (id, token, team_id, channel_id, creator_id, display_name,
             trigger_words, trigger_when, callback_urls, content_type, reply_in_thread,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(&id)
    .bind(n.token)
    .bind(n.team_id)
    .bind(f.channel_id)
    .bind(n.creator_id)
    .bind(f.display_name)
    .bind(json_list(f.trigger_words))
    .bind(f.trigger_when())
    .bind(json_list(f.callback_urls))
    .bind(f.content_type())
    .bind(i64::from(f.reply_in_thread))
    .bind(now)
    .execute(&db.pool)
    .await?;
    get_outgoing(db, &id).await
}

/// Replaces what a team admin sets; the team, creator and token stay.
pub async fn update_outgoing(
    db: &Db,
    id: &str,
    f: &OutgoingFields<'_>,
    now: i64,
) -> DbResult<OutgoingWebhook> {
    let r = sqlx::query(
        "UPDATE outgoing_webhooks SET channel_id = $2, display_name = $3, trigger_words = $4,
             trigger_when = $5, callback_urls = $6, content_type = $7, reply_in_thread = $8,
             updated_at = $9
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(f.channel_id)
    .bind(f.display_name)
    .bind(json_list(f.trigger_words))
    .bind(f.trigger_when())
    .bind(json_list(f.callback_urls))
    .bind(f.content_type())
    .bind(i64::from(f.reply_in_thread))
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    get_outgoing(db, id).await
}

pub async fn get_outgoing(db: &Db, id: &str) -> DbResult<OutgoingWebhook> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{OUTGOING} WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    outgoing(&row)
}

pub async fn list_outgoing(db: &Db, team_id: &str) -> DbResult<Vec<OutgoingWebhook>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{OUTGOING} WHERE team_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
    )))
    .bind(team_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(outgoing).collect()
}

pub async fn delete_outgoing(db: &Db, id: &str, now: i64) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE outgoing_webhooks SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// The trigger word `message` fires, if any: its first word equals one
/// (exact) or starts with one (prefix). Case matters, as in the chat
/// servers people know.
pub fn matching_trigger<'a>(
    message: &str,
    words: &'a [String],
    when: TriggerWhen,
) -> Option<&'a str> {
    let first = message.split_whitespace().next()?;
    words
        .iter()
        .find(|w| {
            !w.is_empty()
                && match when {
                    TriggerWhen::Exact => first == w.as_str(),
                    TriggerWhen::Prefix => first.starts_with(w.as_str()),
                }
        })
        .map(String::as_str)
}

/// Queues a delivery for every outgoing hook the new post fires, inside
/// the post's transaction: the post and its deliveries commit together.
/// Hooks listen to open channels of their team (one channel, or all).
pub async fn enqueue_matches(
    tx: &mut AnyConnection,
    post: &signaling::events::Post,
    now: i64,
) -> DbResult<usize> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{OUTGOING} WHERE deleted_at IS NULL
           AND team_id = (SELECT team_id FROM channels WHERE id = $1 AND kind = 'open')
           AND (channel_id IS NULL OR channel_id = $1)"
    )))
    .bind(&post.channel_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for row in &rows {
        let hook = outgoing(row)?;
        let Some(word) = matching_trigger(&post.message, &hook.trigger_words, hook.trigger_when)
        else {
            continue;
        };
        for url in &hook.callback_urls {
            sqlx::query(
                "INSERT INTO webhook_outbox (id, hook_id, post_id, url, trigger_word, state,
                     next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
            )
            .bind(new_id())
            .bind(&hook.id)
            .bind(&post.id)
            .bind(url)
            .bind(word)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            queued += 1;
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_match_the_first_word() {
        let words = vec!["#deploy".to_owned(), "build".to_owned()];
        assert_eq!(
            matching_trigger("#deploy now", &words, TriggerWhen::Exact),
            Some("#deploy")
        );
        assert_eq!(
            matching_trigger("  build", &words, TriggerWhen::Exact),
            Some("build")
        );
        assert_eq!(
            matching_trigger("now #deploy", &words, TriggerWhen::Exact),
            None
        );
        assert_eq!(matching_trigger("builds", &words, TriggerWhen::Exact), None);
        assert_eq!(
            matching_trigger("builds", &words, TriggerWhen::Prefix),
            Some("build")
        );
        assert_eq!(matching_trigger("Build", &words, TriggerWhen::Prefix), None);
        assert_eq!(matching_trigger("", &words, TriggerWhen::Prefix), None);
        assert_eq!(
            matching_trigger("x", &[String::new()], TriggerWhen::Prefix),
            None
        );
    }
}
