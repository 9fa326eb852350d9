//! The states every outbox table shares: a row is `pending` until a node
//! claims it for a lease, then `done`, due again later, or `failed` for
//! good. The tables differ in what a row carries, not in how it moves, so
//! the moves are written once here.
//!
//! `table` is always one of the crate's own table names, never input.

use sqlx::Row as _;

use super::{Db, DbResult};

pub(crate) async fn done(db: &Db, table: &'static str, id: &str) -> DbResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET state = 'done', attempts = attempts + 1 WHERE id = $1"
    )))
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: due again at `retry_at`, or failed for good
/// when `retry_at` is None.
pub(crate) async fn attempt_failed(
    db: &Db,
    table: &'static str,
    id: &str,
    error: &str,
    retry_at: Option<i64>,
) -> DbResult<()> {
    let (state, at) = match retry_at {
        Some(at) => ("pending", at),
        None => ("failed", 0),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET state = $2, attempts = attempts + 1, last_error = $3,
             next_attempt_at = CASE WHEN $4 > 0 THEN $4 ELSE next_attempt_at END,
             claimed_until = 0
         WHERE id = $1"
    )))
    .bind(id)
    .bind(state)
    .bind(error)
    .bind(at)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Row counts by state: (pending, done, failed).
pub(crate) async fn counts(db: &Db, table: &'static str) -> DbResult<(i64, i64, i64)> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT
            COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS p,
            COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS d,
            COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS f
         FROM {table}"
    )))
    .fetch_one(&db.pool)
    .await?;
    Ok((row.try_get("p")?, row.try_get("d")?, row.try_get("f")?))
}
