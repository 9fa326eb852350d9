//! Presence records shared by every node: each node's heartbeat, the
//! sockets each node holds, and each user's manual status, last activity
//! and last announced status.

use signaling::events::PresenceStatus;
use sqlx::Row as _;

use super::{Db, DbResult};

/// A status the user chose, over the automatic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manual {
    Dnd,
    Away,
}

impl Manual {
    pub fn as_str(self) -> &'static str {
        match self {
            Manual::Dnd => "dnd",
            Manual::Away => "away",
        }
    }

    pub fn parse(s: &str) -> Option<Manual> {
        match s {
            "dnd" => Some(Manual::Dnd),
            "away" => Some(Manual::Away),
            _ => None,
        }
    }
}

pub fn status_str(s: PresenceStatus) -> &'static str {
    match s {
        PresenceStatus::Online => "online",
        PresenceStatus::Away => "away",
        PresenceStatus::Dnd => "dnd",
        PresenceStatus::Offline => "offline",
    }
}

/// What decides a user's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub user_id: String,
    pub manual: Option<Manual>,
    pub last_activity_at: i64,
    pub last_status: String,
    /// Sockets on nodes whose heartbeat is fresh.
    pub live_conns: i64,
}

impl Record {
    /// The status these facts give at `now`.
    pub fn status(&self, now: i64, away_after_ms: i64) -> PresenceStatus {
        if self.live_conns == 0 {
            return PresenceStatus::Offline;
        }
        match self.manual {
            Some(Manual::Dnd) => PresenceStatus::Dnd,
            Some(Manual::Away) => PresenceStatus::Away,
            None if now - self.last_activity_at >= away_after_ms => PresenceStatus::Away,
            None => PresenceStatus::Online,
        }
    }
}

/// Writes this node's heartbeat, never moving it back: a sweep that read
/// the clock before another one wrote could otherwise make a live node look
/// dead to everyone who reads in between.
pub async fn beat(db: &Db, node_id: &str, now: i64) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO presence_nodes (node_id, heartbeat_at) VALUES ($1, $2)
         ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
         WHERE presence_nodes.heartbeat_at < excluded.heartbeat_at",
    )
    .bind(node_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Forgets nodes silent since `cutoff`, and their sockets. Returns the
/// users who had sockets there.
pub async fn expire_nodes(db: &Db, cutoff: i64) -> DbResult<Vec<String>> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(
        "DELETE FROM presence_conns WHERE node_id IN
           (SELECT node_id FROM presence_nodes WHERE heartbeat_at < $1)
         RETURNING user_id",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM presence_nodes WHERE heartbeat_at < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut users = rows
        .iter()
        .map(|r| r.try_get::<String, _>("user_id"))
        .collect::<Result<Vec<_>, _>>()?;
    users.sort();
    users.dedup();
    Ok(users)
}

/// A socket opened: it counts for its user while its node beats.
pub async fn add_conn(
    db: &Db,
    conn_id: &str,
    user_id: &str,
    node_id: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO presence_conns (conn_id, user_id, node_id, connected_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(conn_id)
    .bind(user_id)
    .bind(node_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn remove_conn(db: &Db, conn_id: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM presence_conns WHERE conn_id = $1")
        .bind(conn_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Records activity at `now`, unless some was recorded less than
/// `coarse_ms` ago (a write per keystroke would be waste). Returns
/// whether it wrote.
pub async fn touch(db: &Db, user_id: &str, now: i64, coarse_ms: i64) -> DbResult<bool> {
    let r = sqlx::query(
        "INSERT INTO user_status (user_id, last_activity_at) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET last_activity_at = excluded.last_activity_at
         WHERE user_status.last_activity_at < $3",
    )
    .bind(user_id)
    .bind(now)
    .bind(now - coarse_ms)
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn set_manual(db: &Db, user_id: &str, manual: Option<Manual>) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO user_status (user_id, manual) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET manual = excluded.manual",
    )
    .bind(user_id)
    .bind(manual.map(Manual::as_str))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The records of `user_ids` that have one (users never seen have none:
/// they are offline).
pub async fn records(db: &Db, user_ids: &[String], live_since: i64) -> DbResult<Vec<Record>> {
    let mut out = Vec::with_capacity(user_ids.len());
    for id in user_ids {
        let row = sqlx::query(
            "SELECT s.user_id, s.manual, s.last_activity_at, s.last_status,
                    (SELECT COUNT(*) FROM presence_conns c
                       JOIN presence_nodes n ON n.node_id = c.node_id
                      WHERE c.user_id = s.user_id AND n.heartbeat_at >= $2) AS live
             FROM user_status s WHERE s.user_id = $1",
        )
        .bind(id)
        .bind(live_since)
        .fetch_optional(&db.pool)
        .await?;
        if let Some(row) = row {
            let manual: Option<String> = row.try_get("manual")?;
            out.push(Record {
                user_id: row.try_get("user_id")?,
                manual: manual.as_deref().and_then(Manual::parse),
                last_activity_at: row.try_get("last_activity_at")?,
                last_status: row.try_get("last_status")?,
                live_conns: row.try_get("live")?,
            });
        }
    }
    Ok(out)
}

/// Users whose last announced status is not offline: the ones a sweep
/// must look at.
pub async fn announced_present(db: &Db) -> DbResult<Vec<String>> {
    let rows = sqlx::query("SELECT user_id FROM user_status WHERE last_status <> 'offline'")
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>("user_id"))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Moves the announced status from `old` to `new`; false when another
/// node got there first (then it announces, not us).
pub async fn claim_change(db: &Db, user_id: &str, old: &str, new: &str) -> DbResult<bool> {
    let r = sqlx::query(
        "UPDATE user_status SET last_status = $3 WHERE user_id = $1 AND last_status = $2",
    )
    .bind(user_id)
    .bind(old)
    .bind(new)
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The user and everyone who shares a channel with them.
pub async fn contacts(db: &Db, user_id: &str) -> DbResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT b.user_id FROM channel_members a
           JOIN channel_members b ON b.channel_id = a.channel_id
           JOIN channels c ON c.id = a.channel_id AND c.deleted_at IS NULL
          WHERE a.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get::<String, _>("user_id"))
        .collect::<Result<Vec<_>, _>>()?;
    if !ids.iter().any(|u| u == user_id) {
        ids.push(user_id.to_owned());
    }
    Ok(ids)
}
