//! The outgoing-webhook outbox: deliveries written with their post, claimed
//! by a node for a lease, then marked done, retried later or failed. A node
//! that dies mid-delivery leaves its claim to expire, and another node (or
//! itself after a restart) takes the row again: a delivery may be repeated,
//! never lost.

use sqlx::Row as _;

use super::{Db, DbResult};

/// One claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub hook_id: String,
    pub post_id: String,
    pub url: String,
    pub trigger_word: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// Claims up to `limit` due deliveries until `now + lease_ms`. The outer
/// WHERE repeats the due test so two nodes racing for a row on PostgreSQL
/// cannot both win it (the second sees the first's claim after the lock).
pub async fn claim(db: &Db, now: i64, lease_ms: i64, limit: i64) -> DbResult<Vec<Delivery>> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(
        "UPDATE webhook_outbox SET claimed_until = $2
         WHERE id IN (SELECT id FROM webhook_outbox
                      WHERE state = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1
                      ORDER BY next_attempt_at LIMIT $3)
           AND state = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1
         RETURNING id, hook_id, post_id, url, trigger_word, attempts",
    )
    .bind(now)
    .bind(now + lease_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                hook_id: r.try_get("hook_id")?,
                post_id: r.try_get("post_id")?,
                url: r.try_get("url")?,
                trigger_word: r.try_get("trigger_word")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

pub async fn done(db: &Db, id: &str) -> DbResult<()> {
    super::lease::done(db, "webhook_outbox", id).await
}

/// Records a failed attempt: tried again at `retry_at`, or failed for good
/// when `retry_at` is None.
pub async fn attempt_failed(db: &Db, id: &str, error: &str, retry_at: Option<i64>) -> DbResult<()> {
    super::lease::attempt_failed(db, "webhook_outbox", id, error, retry_at).await
}

/// Row counts by state, for tests and operators: (pending, done, failed).
pub async fn counts(db: &Db) -> DbResult<(i64, i64, i64)> {
    super::lease::counts(db, "webhook_outbox").await
}
