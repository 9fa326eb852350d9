//! Server-side sessions (browser logins) and personal access tokens. Only
//! SHA-256 hashes of the secrets are stored: a copy of the database does not
//! log anyone in.

use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Db, DbError, DbResult, new_id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    #[serde(skip)]
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    pub ip: String,
    pub user_agent: String,
}

pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub token_hash: &'a str,
    pub csrf_token: &'a str,
    pub expires_at: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

fn session(row: &AnyRow) -> DbResult<Session> {
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

pub async fn create(db: &Db, new: NewSession<'_>, now: i64) -> DbResult<Session> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(new.token_hash)
    .bind(new.user_id)
    .bind(new.csrf_token)
    .bind(now)
    .bind(new.expires_at)
    .bind(new.ip)
    .bind(new.user_agent)
    .execute(&db.pool)
    .await?;
    get(db, &id).await
}

pub async fn get(db: &Db, id: &str) -> DbResult<Session> {
    let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(DbError::NotFound)?;
    session(&row)
}

pub async fn by_token_hash(db: &Db, hash: &str) -> DbResult<Option<Session>> {
    sqlx::query("SELECT * FROM sessions WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(session)
        .transpose()
}

pub async fn touch(db: &Db, id: &str, now: i64) -> DbResult<()> {
    sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
        .bind(id)
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Revokes one of `user_id`'s sessions. NotFound if it is not theirs.
pub async fn revoke(db: &Db, user_id: &str, id: &str, now: i64) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// Revokes every session of a user (password reset). Returns how many.
pub async fn revoke_all(db: &Db, user_id: &str, now: i64) -> DbResult<u64> {
    Ok(
        sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&db.pool)
        .await?
        .rows_affected(),
    )
}

/// Sessions not revoked and not past their absolute lifetime (idle ones
/// included: the caller knows the idle timeout). `user_id` None: everyone's.
pub async fn list_live(db: &Db, user_id: Option<&str>, now: i64) -> DbResult<Vec<Session>> {
    let rows = match user_id {
        Some(u) => {
            sqlx::query(
                "SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
                 ORDER BY created_at",
            )
            .bind(u)
            .bind(now)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT * FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 ORDER BY created_at",
            )
            .bind(now)
            .fetch_all(&db.pool)
            .await?
        }
    };
    rows.iter().map(session).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

fn token(row: &AnyRow) -> DbResult<AccessToken> {
    Ok(AccessToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub async fn create_token(
    db: &Db,
    user_id: &str,
    name: &str,
    token_hash: &str,
    now: i64,
) -> DbResult<AccessToken> {
    let id = new_id();
    let row = sqlx::query(
        "INSERT INTO access_tokens (id, token_hash, user_id, name, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(&id)
    .bind(token_hash)
    .bind(user_id)
    .bind(name)
    .bind(now)
    .fetch_one(&db.pool)
    .await?;
    token(&row)
}

pub async fn token_by_hash(db: &Db, hash: &str) -> DbResult<Option<AccessToken>> {
    sqlx::query("SELECT * FROM access_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(token)
        .transpose()
}

/// Whether token `id` is revoked; None when there is no such token.
pub async fn token_revoked(db: &Db, id: &str) -> DbResult<Option<bool>> {
    Ok(
        sqlx::query("SELECT revoked_at FROM access_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
            .map(|row| row.try_get::<Option<i64>, _>("revoked_at"))
            .transpose()?
            .map(|r| r.is_some()),
    )
}

pub async fn touch_token(db: &Db, id: &str, now: i64) -> DbResult<()> {
    sqlx::query("UPDATE access_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn list_tokens(db: &Db, user_id: &str) -> DbResult<Vec<AccessToken>> {
    let rows = sqlx::query(
        "SELECT * FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(token).collect()
}

pub async fn revoke_token(db: &Db, user_id: &str, id: &str, now: i64) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE access_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}
