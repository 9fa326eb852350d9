//! Channels, channel membership and per-member read state.

use serde::Serialize;
use signaling::events::{Channel, ChannelKind, Event};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::events::{self, Scope};
use super::{Db, DbError, DbResult, is_unique_violation, new_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelRole {
    /// Manages the channel (rename, remove members, pin for others).
    Admin,
    Member,
}

impl ChannelRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelRole::Admin => "admin",
            ChannelRole::Member => "member",
        }
    }

    fn parse(s: &str) -> Option<ChannelRole> {
        match s {
            "admin" => Some(ChannelRole::Admin),
            "member" => Some(ChannelRole::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub channel_id: String,
    pub user_id: String,
    pub role: ChannelRole,
    pub last_viewed_at: i64,
    pub msg_count_read: i64,
    pub mention_count: i64,
}

/// Unread state of one channel for one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unread {
    pub channel_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    pub unread_count: i64,
    pub mention_count: i64,
}

pub struct NewChannel<'a> {
    pub team_id: Option<&'a str>,
    pub kind: ChannelKind,
    pub name: &'a str,
    pub display_name: &'a str,
    pub purpose: &'a str,
}

fn channel(row: &AnyRow) -> DbResult<Channel> {
    let kind: String = row.try_get("kind")?;
    Ok(Channel {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        kind: ChannelKind::parse(&kind)
            .ok_or_else(|| DbError::Corrupt(format!("channel kind {kind:?}")))?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        purpose: row.try_get("purpose")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        last_post_at: row.try_get("last_post_at")?,
        total_msg_count: row.try_get("total_msg_count")?,
    })
}

fn membership(row: &AnyRow) -> DbResult<Membership> {
    let role: String = row.try_get("role")?;
    Ok(Membership {
        channel_id: row.try_get("channel_id")?,
        user_id: row.try_get("user_id")?,
        role: ChannelRole::parse(&role)
            .ok_or_else(|| DbError::Corrupt(format!("channel role {role:?}")))?,
        last_viewed_at: row.try_get("last_viewed_at")?,
        msg_count_read: row.try_get("msg_count_read")?,
        mention_count: row.try_get("mention_count")?,
    })
}

/// Channel names: 1 to 64 of `a-z 0-9 _ -`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err("channel names are 1 to 64 characters of a-z, 0-9, '_' and '-'")
    }
}

/// Creates a channel with `members` (the first one its admin) and emits
/// `channel_created` to them. For direct and group channels whose name
/// already exists (the same people), returns the existing channel.
pub async fn create(
    db: &Db,
    new: NewChannel<'_>,
    members: &[&str],
    now: i64,
) -> DbResult<(Channel, bool)> {
    let creator = *members.first().ok_or(DbError::Conflict("no_members"))?;
    let id = new_id();
    let mut tx = db.begin_write().await?;
    let res = sqlx::query(
        "INSERT INTO channels (id, team_id, kind, name, display_name, purpose, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(new.team_id)
    .bind(new.kind.as_str())
    .bind(new.name)
    .bind(new.display_name)
    .bind(new.purpose)
    .bind(creator)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            if new.team_id.is_none() {
                let row = sqlx::query(
                    "SELECT c.id, c.team_id, c.kind, c.name, c.display_name, c.purpose, c.created_by, c.created_at, c.last_post_at, c.total_msg_count
                     FROM channels c WHERE c.team_id IS NULL AND c.name = $1",
                )
                .bind(new.name)
                .fetch_one(&db.pool)
                .await?;
                return Ok((channel(&row)?, false));
            }
            return Err(DbError::Conflict("channel_name_taken"));
        }
        Err(e) => return Err(e.into()),
    }
    for (i, user) in members.iter().enumerate() {
        let role = if i == 0 && matches!(new.kind, ChannelKind::Open | ChannelKind::Private) {
            ChannelRole::Admin
        } else {
            ChannelRole::Member
        };
        sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, created_at, last_viewed_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(*user)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let ch = get_in(&mut tx, &id).await?;
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(&id),
        &Event::ChannelCreated {
            channel: ch.clone(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((ch, true))
}

async fn get_in(conn: &mut sqlx::AnyConnection, id: &str) -> DbResult<Channel> {
    let row = sqlx::query(
        "SELECT c.id, c.team_id, c.kind, c.name, c.display_name, c.purpose, c.created_by, c.created_at, c.last_post_at, c.total_msg_count
         FROM channels c WHERE c.id = $1 AND c.deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(DbError::NotFound)?;
    channel(&row)
}

pub async fn get(db: &Db, id: &str) -> DbResult<Channel> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

pub async fn membership_of(
    db: &Db,
    channel_id: &str,
    user_id: &str,
) -> DbResult<Option<Membership>> {
    sqlx::query("SELECT * FROM channel_members WHERE channel_id = $1 AND user_id = $2")
        .bind(channel_id)
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(membership)
        .transpose()
}

/// Adds a member (no-op if already one) and emits `member_joined`.
/// Returns false if they were already a member.
pub async fn add_member(db: &Db, channel_id: &str, user_id: &str, now: i64) -> DbResult<bool> {
    let mut tx = db.begin_write().await?;
    // A new member starts with everything already posted counted as read.
    let r = sqlx::query(
        "INSERT INTO channel_members (channel_id, user_id, role, created_at, last_viewed_at, msg_count_read)
         SELECT $1, $2, 'member', $3, $3, total_msg_count FROM channels WHERE id = $1
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(channel_id),
        &Event::MemberJoined {
            channel_id: channel_id.into(),
            user_id: user_id.into(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Removes a member; `member_left` goes to the channel and to the user.
pub async fn remove_member(db: &Db, channel_id: &str, user_id: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let r = sqlx::query("DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2")
        .bind(channel_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    let ev = Event::MemberLeft {
        channel_id: channel_id.into(),
        user_id: user_id.into(),
    };
    events::append(&mut tx, db.backend, Scope::Channel(channel_id), &ev, now).await?;
    events::append(&mut tx, db.backend, Scope::User(user_id), &ev, now).await?;
    tx.commit().await?;
    Ok(())
}

/// The team's open channels and the private ones `user_id` is in.
pub async fn list_for_team(db: &Db, team_id: &str, user_id: &str) -> DbResult<Vec<Channel>> {
    let rows = sqlx::query(
        "SELECT c.id, c.team_id, c.kind, c.name, c.display_name, c.purpose, c.created_by, c.created_at, c.last_post_at, c.total_msg_count
         FROM channels c
         WHERE c.team_id = $1 AND c.deleted_at IS NULL
           AND (c.kind = 'open' OR EXISTS (
                SELECT 1 FROM channel_members m WHERE m.channel_id = c.id AND m.user_id = $2))
         ORDER BY c.name",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(channel).collect()
}

/// Every channel `user_id` is a member of (all teams, DMs, groups).
pub async fn list_mine(db: &Db, user_id: &str) -> DbResult<Vec<Channel>> {
    let rows = sqlx::query(
        "SELECT c.id, c.team_id, c.kind, c.name, c.display_name, c.purpose, c.created_by, c.created_at, c.last_post_at, c.total_msg_count
         FROM channels c JOIN channel_members m ON m.channel_id = c.id
         WHERE m.user_id = $1 AND c.deleted_at IS NULL ORDER BY c.last_post_at DESC, c.name",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(channel).collect()
}

pub async fn member_ids(db: &Db, channel_id: &str) -> DbResult<Vec<String>> {
    let rows =
        sqlx::query("SELECT user_id FROM channel_members WHERE channel_id = $1 ORDER BY user_id")
            .bind(channel_id)
            .fetch_all(&db.pool)
            .await?;
    rows.iter()
        .map(|r| r.try_get("user_id").map_err(DbError::from))
        .collect()
}

/// Unread and mention counts of every channel the user is in.
pub async fn unreads(db: &Db, user_id: &str) -> DbResult<Vec<Unread>> {
    let rows = sqlx::query(
        "SELECT c.id, c.team_id, c.total_msg_count - m.msg_count_read AS unread, m.mention_count
         FROM channels c JOIN channel_members m ON m.channel_id = c.id
         WHERE m.user_id = $1 AND c.deleted_at IS NULL ORDER BY c.id",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unread {
                channel_id: r.try_get("id")?,
                team_id: r.try_get("team_id")?,
                unread_count: r.try_get("unread")?,
                mention_count: r.try_get("mention_count")?,
            })
        })
        .collect()
}

/// Marks everything in the channel read for the user; tells their other
/// clients with `channel_viewed`.
pub async fn mark_viewed(db: &Db, channel_id: &str, user_id: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let r = sqlx::query(
        "UPDATE channel_members SET last_viewed_at = $3, mention_count = 0,
             msg_count_read = (SELECT total_msg_count FROM channels WHERE id = $1)
         WHERE channel_id = $1 AND user_id = $2",
    )
    .bind(channel_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    events::append(
        &mut tx,
        db.backend,
        Scope::User(user_id),
        &Event::ChannelViewed {
            channel_id: channel_id.into(),
            user_id: user_id.into(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
