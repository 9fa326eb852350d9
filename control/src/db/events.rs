//! The replay log: every durable event, in commit order.
//!
//! Writers append inside the transaction that makes the change, so an event
//! exists exactly when its change does. Sequence numbers are handed out in
//! commit order: SQLite has one writer at a time, and on PostgreSQL
//! appenders take a transaction-scoped advisory lock first, so no
//! transaction can commit seq n+1 while seq n is still uncommitted. A
//! reader that has seen seq n has therefore seen everything below it,
//! which is what replay by "last seq" relies on. The price is that event
//! writes are serialised; they are short (one insert at the end of the
//! transaction), and a sharded log is the path if that ever binds.

use signaling::events::Event;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Backend, Db, DbError, DbResult};

/// An arbitrary constant naming the events lock among advisory locks.
const EVENTS_LOCK: i64 = 0x656e_636c_6576;

/// Who may read an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Current members of the channel.
    Channel(&'a str),
    /// Current members of the team.
    Team(&'a str),
    /// That user only (all their connections).
    User(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub channel_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub event: Event,
    pub created_at: i64,
}

/// Appends `event` within the caller's transaction; returns its seq.
pub async fn append(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: Scope<'_>,
    event: &Event,
    now: i64,
) -> DbResult<i64> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EVENTS_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let (channel, team, user) = match scope {
        Scope::Channel(c) => (Some(c), None, None),
        Scope::Team(t) => (None, Some(t), None),
        Scope::User(u) => (None, None, Some(u)),
    };
    let payload = serde_json::to_string(event)
        .map_err(|e| DbError::Corrupt(format!("event does not encode: {e}")))?;
    let seq: i64 = sqlx::query(
        "INSERT INTO events (kind, channel_id, team_id, user_id, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(event.kind())
    .bind(channel)
    .bind(team)
    .bind(user)
    .bind(payload)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?
    .try_get("seq")?;
    Ok(seq)
}

fn stored(row: &AnyRow) -> DbResult<StoredEvent> {
    let payload: String = row.try_get("payload")?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        channel_id: row.try_get("channel_id")?,
        team_id: row.try_get("team_id")?,
        user_id: row.try_get("user_id")?,
        event: serde_json::from_str(&payload)
            .map_err(|e| DbError::Corrupt(format!("event payload: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

/// The newest seq, 0 when there is none.
pub async fn latest_seq(db: &Db) -> DbResult<i64> {
    Ok(
        sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
            .fetch_one(&db.pool)
            .await?
            .try_get("seq")?,
    )
}

/// Up to `limit` events after `after`, oldest first.
pub async fn since(db: &Db, after: i64, limit: i64) -> DbResult<Vec<StoredEvent>> {
    let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(stored).collect()
}

/// The event with this seq, if it is still kept.
pub async fn get(db: &Db, seq: i64) -> DbResult<Option<StoredEvent>> {
    sqlx::query("SELECT * FROM events WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(stored)
        .transpose()
}

/// Deletes events older than `before` (ms), always keeping the newest one
/// so that [`latest_seq`] never goes back. Returns how many.
pub async fn prune(db: &Db, before: i64) -> DbResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM events WHERE created_at < $1 AND seq < (SELECT MAX(seq) FROM events)",
    )
    .bind(before)
    .execute(&db.pool)
    .await?
    .rows_affected())
}
