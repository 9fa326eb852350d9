//! Jobs control asked an offloader to run for a call, and the per-job
//! credential their bots act with (see migration 0010).

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Db, DbError, DbResult, is_unique_violation};

/// The account every job's bot acts as (created by migration 0010).
pub const BOT_USER_ID: &str = "calls-recorder";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallJob {
    pub id: String,
    pub call_id: String,
    /// `recording`, `transcription` or `captions`.
    pub kind: String,
    pub started_by: String,
    pub created_at: i64,
    pub offloader_job: Option<String>,
    pub session_id: Option<String>,
    pub stopped_at: Option<i64>,
}

const COLUMNS: &str =
    "id, call_id, kind, started_by, created_at, offloader_job, session_id, stopped_at";

fn row(r: &AnyRow) -> DbResult<CallJob> {
    Ok(CallJob {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        kind: r.try_get("kind")?,
        started_by: r.try_get("started_by")?,
        created_at: r.try_get("created_at")?,
        offloader_job: r.try_get("offloader_job")?,
        session_id: r.try_get("session_id")?,
        stopped_at: r.try_get("stopped_at")?,
    })
}

/// A new job of `kind` for the call. `Conflict("already_running")` when
/// one of that kind already runs for it.
pub async fn create(db: &Db, job: &CallJob, token_hash: &str) -> DbResult<()> {
    let r = sqlx::query(
        "INSERT INTO call_jobs (id, call_id, kind, token_hash, started_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&job.id)
    .bind(&job.call_id)
    .bind(&job.kind)
    .bind(token_hash)
    .bind(&job.started_by)
    .bind(job.created_at)
    .execute(&db.pool)
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(DbError::Conflict("already_running")),
        Err(e) => Err(e.into()),
    }
}

/// Records the offloader's id for the job once it accepted it.
pub async fn set_offloader_job(db: &Db, id: &str, offloader_job: &str) -> DbResult<()> {
    sqlx::query("UPDATE call_jobs SET offloader_job = $2 WHERE id = $1")
        .bind(id)
        .bind(offloader_job)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Records the bot's session once it joined.
pub async fn set_session(db: &Db, id: &str, session_id: &str) -> DbResult<()> {
    sqlx::query("UPDATE call_jobs SET session_id = $2 WHERE id = $1")
        .bind(id)
        .bind(session_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Marks the job stopped: its kind may run again for the call. Its token
/// keeps working for handing back results until `revoke`.
pub async fn stop(db: &Db, id: &str, now: i64) -> DbResult<bool> {
    let n =
        sqlx::query("UPDATE call_jobs SET stopped_at = $2 WHERE id = $1 AND stopped_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&db.pool)
            .await?
            .rows_affected();
    Ok(n == 1)
}

/// The job a bot credential belongs to.
pub async fn by_token_hash(db: &Db, token_hash: &str) -> DbResult<Option<CallJob>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM call_jobs WHERE token_hash = $1"
    )))
    .bind(token_hash)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

pub async fn get(db: &Db, id: &str) -> DbResult<CallJob> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM call_jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(row)
    .transpose()?
    .ok_or(DbError::NotFound)
}

/// The jobs of a call still running, oldest first.
pub async fn running(db: &Db, call_id: &str) -> DbResult<Vec<CallJob>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM call_jobs WHERE call_id = $1 AND stopped_at IS NULL
         ORDER BY created_at, id"
    )))
    .bind(call_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(row).collect()
}
