//! The replay log: every durable event, in commit order.
//!
//! Writers append inside the transaction that makes the change, so an event
//! exists exactly when its change does. Sequence numbers follow commit
//! order, so a reader that has seen seq n has seen everything below it,
//! which is what replay by "last seq" relies on:
//!
//! - SQLite has one writer at a time: the insert numbers the event.
//! - PostgreSQL writers append to `events_pending` and commit in parallel
//!   (their fsyncs are shared). Readers first run the sequencer
//!   ([`settle`]): under a transaction-scoped advisory lock it moves every
//!   committed pending event into `events`, numbering them, and commits.
//!   Only the sequencer numbers events and only one runs at a time, so
//!   numbers are handed out in commit order. Every read entry point
//!   ([`latest_seq`], [`since`]) settles first, so a reader sees every
//!   event whose change committed before the read, as before.
//!
//! Earlier, PostgreSQL appenders took the advisory lock themselves and held
//! it to their commit: every write of the whole server waited for the one
//! before it, fsync included, and posting stalled near 160 posts/s.
//!
//! Who may read an event ([`Scope`]) is decided when it is dispatched.

use signaling::events::Event;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Backend, Db, DbError, DbResult};

/// An arbitrary constant naming the events lock among advisory locks
/// (held by the sequencer only).
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

/// Appends `event` within the caller's transaction. Its seq is given
/// when it is committed and settled (on SQLite at once), so none is
/// returned.
pub async fn append(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: Scope<'_>,
    event: &Event,
    now: i64,
) -> DbResult<()> {
    let (channel, team, user) = match scope {
        Scope::Channel(c) => (Some(c), None, None),
        Scope::Team(t) => (None, Some(t), None),
        Scope::User(u) => (None, None, Some(u)),
    };
    let payload = serde_json::to_string(event)
        .map_err(|e| DbError::Corrupt(format!("event does not encode: {e}")))?;
    let sql = match backend {
        Backend::Sqlite => {
            "INSERT INTO events (kind, channel_id, team_id, user_id, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)"
        }
        Backend::Postgres => {
            "INSERT INTO events_pending (kind, channel_id, team_id, user_id, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)"
        }
    };
    sqlx::query(sql)
        .bind(event.kind())
        .bind(channel)
        .bind(team)
        .bind(user)
        .bind(payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// PostgreSQL: numbers every committed pending event (see the module
/// docs); returns how many. SQLite: nothing to do.
pub async fn settle(db: &Db) -> DbResult<u64> {
    if db.backend == Backend::Sqlite {
        return Ok(0);
    }
    let moved: i64 = sqlx::query("SELECT enclave_sequence_events($1) AS moved")
        .bind(EVENTS_LOCK)
        .fetch_one(&db.pool)
        .await?
        .try_get("moved")?;
    Ok(moved.max(0) as u64)
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

/// The newest seq, 0 when there is none. Settles first.
pub async fn latest_seq(db: &Db) -> DbResult<i64> {
    settle(db).await?;
    Ok(
        sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
            .fetch_one(&db.pool)
            .await?
            .try_get("seq")?,
    )
}

/// Up to `limit` events after `after`, oldest first. Settles first.
pub async fn since(db: &Db, after: i64, limit: i64) -> DbResult<Vec<StoredEvent>> {
    settle(db).await?;
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
