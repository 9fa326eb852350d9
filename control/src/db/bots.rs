//! Bot accounts: a user row without a password (so it cannot log in) and
//! a `bots` row naming its owner. A bot acts through access tokens;
//! disabling it revokes them all in the same transaction and marks its
//! user row disabled, as for any account.
//!
//! Bots are disabled, never deleted (as in the chat servers people know):
//! their posts keep an author, their username stays taken so old mentions
//! and exports never point at a newcomer, and an owner can switch one back
//! on. The same holds for people's accounts ([`super::users::set_disabled`]).

use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::users::SystemRole;
use super::{Db, DbError, DbResult, is_unique_violation, new_id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bot {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub description: String,
    pub owner_id: String,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
}

const SELECT: &str = "SELECT b.user_id, u.username, u.display_name, b.description, b.owner_id,
        b.created_at, b.disabled_at
     FROM bots b JOIN users u ON u.id = b.user_id";

fn bot(row: &AnyRow) -> DbResult<Bot> {
    Ok(Bot {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        description: row.try_get("description")?,
        owner_id: row.try_get("owner_id")?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

pub struct NewBot<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub description: &'a str,
    pub owner_id: &'a str,
}

/// Creates the bot's user (role `user`, no password) and its bot row.
pub async fn create(db: &Db, new: NewBot<'_>, now: i64) -> DbResult<Bot> {
    let id = new_id();
    let mut tx = db.begin_write().await?;
    let res = sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, system_role, created_at)
         VALUES ($1, $2, $3, NULL, $4, $5)",
    )
    .bind(&id)
    .bind(new.username)
    .bind(new.display_name)
    .bind(SystemRole::User.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match res {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(DbError::Conflict("username_taken")),
        Err(e) => return Err(e.into()),
    }
    sqlx::query(
        "INSERT INTO bots (user_id, owner_id, description, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(new.owner_id)
    .bind(new.description)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get(db, &id).await
}

pub async fn get(db: &Db, user_id: &str) -> DbResult<Bot> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE b.user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    bot(&row)
}

/// All bots, or those `owner_id` owns.
pub async fn list(db: &Db, owner_id: Option<&str>) -> DbResult<Vec<Bot>> {
    let rows = match owner_id {
        Some(o) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE b.owner_id = $1 ORDER BY u.username"
            )))
            .bind(o)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY u.username")))
                .fetch_all(&db.pool)
                .await?
        }
    };
    rows.iter().map(bot).collect()
}

pub async fn is_bot(db: &Db, user_id: &str) -> DbResult<bool> {
    Ok(sqlx::query("SELECT 1 AS one FROM bots WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?
        .is_some())
}

/// Disables (revoking every token of the bot) or enables it. Returns the
/// number of tokens revoked.
pub async fn set_disabled(db: &Db, user_id: &str, disabled: bool, now: i64) -> DbResult<u64> {
    let mut tx = db.begin_write().await?;
    let r = sqlx::query("UPDATE bots SET disabled_at = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(disabled.then_some(now))
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    // The bot's user row carries the same mark, so the one check every
    // request makes ([`super::users::get_enabled`]) covers bots too.
    sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
        .bind(user_id)
        .bind(disabled.then_some(now))
        .execute(&mut *tx)
        .await?;
    let mut revoked = 0;
    if disabled {
        revoked = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(revoked)
}
