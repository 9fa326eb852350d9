//! Teams and team membership.

use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use signaling::events::Event;

use super::events::{self, Scope};
use super::{Db, DbError, DbResult, is_unique_violation, new_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    /// Manages the team's members and channels.
    Admin,
    Member,
    /// Sees only the channels they are added to.
    Guest,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
            TeamRole::Guest => "guest",
        }
    }

    pub fn parse(s: &str) -> Option<TeamRole> {
        Some(match s {
            "admin" => TeamRole::Admin,
            "member" => TeamRole::Member,
            "guest" => TeamRole::Guest,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub created_at: i64,
}

fn team(row: &AnyRow) -> DbResult<Team> {
    Ok(Team {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Creates a team with `creator` as its admin.
pub async fn create(
    db: &Db,
    name: &str,
    display_name: &str,
    creator: &str,
    now: i64,
) -> DbResult<Team> {
    let id = new_id();
    let mut tx = db.begin_write().await?;
    let res = sqlx::query(
        "INSERT INTO teams (id, name, display_name, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(name)
    .bind(display_name)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(DbError::Conflict("team_name_taken")),
        Err(e) => return Err(e.into()),
    }
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, 'admin', $3)",
    )
    .bind(&id)
    .bind(creator)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get(db, &id).await
}

pub async fn get(db: &Db, id: &str) -> DbResult<Team> {
    let row = sqlx::query(
        "SELECT id, name, display_name, created_at FROM teams WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    team(&row)
}

pub async fn list_for_user(db: &Db, user_id: &str) -> DbResult<Vec<Team>> {
    let rows = sqlx::query(
        "SELECT t.id, t.name, t.display_name, t.created_at
         FROM teams t JOIN team_members m ON m.team_id = t.id
         WHERE m.user_id = $1 AND t.deleted_at IS NULL ORDER BY t.name",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(team).collect()
}

pub async fn role(db: &Db, team_id: &str, user_id: &str) -> DbResult<Option<TeamRole>> {
    let row = sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let r: String = row.try_get("role")?;
            TeamRole::parse(&r)
                .map(Some)
                .ok_or_else(|| DbError::Corrupt(format!("team role {r:?}")))
        }
    }
}

/// Adds a member, or changes the role of one already there.
pub async fn set_member(
    db: &Db,
    team_id: &str,
    user_id: &str,
    role: TeamRole,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(team_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Removes a member from the team and from every channel of the team;
/// `member_left` goes to each of those channels and to the user, as when
/// they leave a channel themselves (every node's dispatcher also learns
/// from it that the channel's members changed).
pub async fn remove_member(db: &Db, team_id: &str, user_id: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let left: Vec<String> = sqlx::query(
        "DELETE FROM channel_members WHERE user_id = $2
         AND channel_id IN (SELECT id FROM channels WHERE team_id = $1)
         RETURNING channel_id",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| r.try_get("channel_id"))
    .collect::<Result<_, _>>()?;
    let r = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    for channel_id in &left {
        let ev = Event::MemberLeft {
            channel_id: channel_id.clone(),
            user_id: user_id.into(),
        };
        events::append(&mut tx, db.backend, Scope::Channel(channel_id), &ev, now).await?;
        events::append(&mut tx, db.backend, Scope::User(user_id), &ev, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn member_ids(db: &Db, team_id: &str) -> DbResult<Vec<String>> {
    let rows = sqlx::query("SELECT user_id FROM team_members WHERE team_id = $1")
        .bind(team_id)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| r.try_get("user_id").map_err(DbError::from))
        .collect()
}
