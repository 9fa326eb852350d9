//! Teams activity notifications waiting to be sent through Microsoft
//! Graph: written in the transaction of the post or the call that causes
//! them, claimed by a node for a lease, then marked done, retried later or
//! failed (as the webhook [`outbox`](super::outbox)). A node that dies
//! mid-send leaves its claim to expire; the row is sent again, never lost.
//!
//! Who gets one: people who signed in through the Teams tab (a row in
//! `m365_users`), members of the channel, never the author or caller,
//! never a bot, never a deleted or switched-off account.

use sqlx::{AnyConnection, Row as _};

use super::posts::Mentions;
use super::{Db, DbResult, new_id};

/// One claimed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    /// An [`ActivityType`](crate::m365::ActivityType)'s name.
    pub activity: String,
    pub user_id: String,
    pub actor_id: String,
    pub channel_id: String,
    pub post_id: Option<String>,
    pub call_id: Option<String>,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The members of `channel_id` but `author_id` a Teams notification may
/// reach; `username` narrows it to one person.
const RECIPIENTS: &str = "SELECT cm.user_id FROM channel_members cm
     JOIN m365_users mu ON mu.user_id = cm.user_id
     JOIN users u ON u.id = cm.user_id
     WHERE cm.channel_id = $1 AND cm.user_id <> $2
       AND u.deleted_at IS NULL AND u.disabled_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM bots b WHERE b.user_id = cm.user_id)";

async fn recipients(
    tx: &mut AnyConnection,
    channel_id: &str,
    author_id: &str,
    username: Option<&str>,
) -> DbResult<Vec<String>> {
    let rows = match username {
        None => {
            sqlx::query(RECIPIENTS)
                .bind(channel_id)
                .bind(author_id)
                .fetch_all(&mut *tx)
                .await?
        }
        Some(name) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{RECIPIENTS} AND u.username = $3"
            )))
            .bind(channel_id)
            .bind(author_id)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    rows.iter()
        .map(|r| Ok(r.try_get("user_id")?))
        .collect::<DbResult<_>>()
}

struct Row<'a> {
    activity: &'a str,
    user_id: &'a str,
    actor_id: &'a str,
    channel_id: &'a str,
    post_id: Option<&'a str>,
    call_id: Option<&'a str>,
}

async fn insert(tx: &mut AnyConnection, r: Row<'_>, now: i64) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO m365_outbox (id, activity, user_id, actor_id, channel_id, post_id, call_id,
             state, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
    )
    .bind(new_id())
    .bind(r.activity)
    .bind(r.user_id)
    .bind(r.actor_id)
    .bind(r.channel_id)
    .bind(r.post_id)
    .bind(r.call_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Queues what a new post raises, in its transaction: in a direct or group
/// channel every other member gets `direct_message`; elsewhere each member
/// named by an @username gets `mention` (one per person however often
/// named). Returns how many were queued.
pub async fn enqueue_post(
    tx: &mut AnyConnection,
    post: &signaling::events::Post,
    mentions: &Mentions,
    now: i64,
) -> DbResult<usize> {
    let kind: String = sqlx::query("SELECT kind FROM channels WHERE id = $1")
        .bind(&post.channel_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("kind")?;
    let (activity, users) = if matches!(kind.as_str(), "direct" | "group") {
        let users = recipients(tx, &post.channel_id, &post.user_id, None).await?;
        (crate::m365::DIRECT_MESSAGE.name, users)
    } else {
        let mut users = Vec::new();
        for name in &mentions.usernames {
            users.extend(recipients(tx, &post.channel_id, &post.user_id, Some(name)).await?);
        }
        (crate::m365::MENTION.name, users)
    };
    for u in &users {
        insert(
            tx,
            Row {
                activity,
                user_id: u,
                actor_id: &post.user_id,
                channel_id: &post.channel_id,
                post_id: Some(&post.id),
                call_id: None,
            },
            now,
        )
        .await?;
    }
    Ok(users.len())
}

/// Queues `call_ringing` for everyone the new call `call_id` rings, in the
/// transaction that starts it.
pub async fn enqueue_rings(
    tx: &mut AnyConnection,
    call_id: &str,
    channel_id: &str,
    caller_id: &str,
    now: i64,
) -> DbResult<usize> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{RECIPIENTS} AND EXISTS (SELECT 1 FROM call_rings r
             WHERE r.call_id = $3 AND r.user_id = cm.user_id AND r.ended_at IS NULL)"
    )))
    .bind(channel_id)
    .bind(caller_id)
    .bind(call_id)
    .fetch_all(&mut *tx)
    .await?;
    for r in &rows {
        let user: String = r.try_get("user_id")?;
        insert(
            tx,
            Row {
                activity: crate::m365::CALL_RINGING.name,
                user_id: &user,
                actor_id: caller_id,
                channel_id,
                post_id: None,
                call_id: Some(call_id),
            },
            now,
        )
        .await?;
    }
    Ok(rows.len())
}

/// Claims up to `limit` due notifications until `now + lease_ms`. The
/// outer WHERE repeats the due test so two nodes racing for a row on
/// PostgreSQL cannot both win it.
pub async fn claim(db: &Db, now: i64, lease_ms: i64, limit: i64) -> DbResult<Vec<Pending>> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(
        "UPDATE m365_outbox SET claimed_until = $2
         WHERE id IN (SELECT id FROM m365_outbox
                      WHERE state = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1
                      ORDER BY next_attempt_at LIMIT $3)
           AND state = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1
         RETURNING id, activity, user_id, actor_id, channel_id, post_id, call_id, attempts",
    )
    .bind(now)
    .bind(now + lease_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Pending {
                id: r.try_get("id")?,
                activity: r.try_get("activity")?,
                user_id: r.try_get("user_id")?,
                actor_id: r.try_get("actor_id")?,
                channel_id: r.try_get("channel_id")?,
                post_id: r.try_get("post_id")?,
                call_id: r.try_get("call_id")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

pub async fn done(db: &Db, id: &str) -> DbResult<()> {
    super::lease::done(db, "m365_outbox", id).await
}

/// Records a failed attempt: tried again at `retry_at`, or failed for good
/// when `retry_at` is None.
pub async fn attempt_failed(db: &Db, id: &str, error: &str, retry_at: Option<i64>) -> DbResult<()> {
    super::lease::attempt_failed(db, "m365_outbox", id, error, retry_at).await
}

/// Row counts by state, for tests and operators: (pending, done, failed).
pub async fn counts(db: &Db) -> DbResult<(i64, i64, i64)> {
    super::lease::counts(db, "m365_outbox").await
}

/// Whether `user_id`'s ring in `call_id` still rings: a call answered,
/// declined or over is not worth a Teams notification any more.
pub async fn still_rings(db: &Db, call_id: &str, user_id: &str) -> DbResult<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM call_rings WHERE call_id = $1 AND user_id = $2 AND ended_at IS NULL",
    )
    .bind(call_id)
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.is_some())
}

/// Where a Teams user is: (tenant, object id), or None if they never
/// signed in through the tab (or no longer are known there).
pub async fn teams_identity(db: &Db, user_id: &str) -> DbResult<Option<(String, String)>> {
    let row = sqlx::query("SELECT tenant, object_id FROM m365_users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| Ok((r.try_get("tenant")?, r.try_get("object_id")?)))
        .transpose()
}
