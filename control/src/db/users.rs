//! Users and their login state.

use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Db, DbError, DbResult, is_unique_violation, new_id};

/// A user's place in the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemRole {
    /// Manages users, teams and the server.
    Admin,
    User,
    /// Sees only the channels they are added to; creates no team or channel.
    Guest,
}

impl SystemRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::Admin => "admin",
            SystemRole::User => "user",
            SystemRole::Guest => "guest",
        }
    }

    pub fn parse(s: &str) -> Option<SystemRole> {
        Some(match s {
            "admin" => SystemRole::Admin,
            "user" => SystemRole::User,
            "guest" => SystemRole::Guest,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub display_name: String,
    pub system_role: SystemRole,
    pub created_at: i64,
    /// When an operator switched the account off (no login of any kind,
    /// every session and token ended); absent while it is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
}

/// What login needs besides the user.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<String>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    /// Switched off by an operator: no login of any kind.
    pub disabled: bool,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub display_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub role: SystemRole,
}

fn user(row: &AnyRow) -> DbResult<User> {
    let role: String = row.try_get("system_role")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        system_role: SystemRole::parse(&role)
            .ok_or_else(|| DbError::Corrupt(format!("system_role {role:?}")))?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

/// Usernames: 3 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
/// They are what @mentions match, so the alphabet is narrow on purpose.
pub fn check_username(name: &str) -> Result<(), &'static str> {
    let ok_len = (3..=64).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_start = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(
            "usernames are 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        )
    }
}

pub async fn create(db: &Db, new: NewUser<'_>, now: i64) -> DbResult<User> {
    let id = new_id();
    let res = sqlx::query(
        "INSERT INTO users (id, username, email, display_name, password_hash, system_role, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(new.username)
    .bind(new.email)
    .bind(new.display_name)
    .bind(new.password_hash)
    .bind(new.role.as_str())
    .bind(now)
    .execute(&db.pool)
    .await;
    match res {
        Ok(_) => get(db, &id).await,
        Err(e) if is_unique_violation(&e) => Err(DbError::Conflict("username_taken")),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &Db, id: &str) -> DbResult<User> {
    let row = sqlx::query(
        "SELECT id, username, email, display_name, system_role, created_at, disabled_at
         FROM users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    user(&row)
}

/// The user behind a live credential: NotFound when the account is
/// deleted or switched off, so a session or token that outlived a
/// disable (a login racing it, another node) still lets nobody in.
pub async fn get_enabled(db: &Db, id: &str) -> DbResult<User> {
    let u = get(db, id).await?;
    if u.disabled_at.is_some() {
        return Err(DbError::NotFound);
    }
    Ok(u)
}

/// What switching an account off ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Disabled {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
}

/// Switches an account off, or on again. Off: in one transaction the
/// account is marked (the first time stays recorded), every live session
/// ends and every access token is revoked. On: the mark goes; nothing
/// ended comes back (the user logs in again, tokens are minted anew).
pub async fn set_disabled(db: &Db, id: &str, disabled: bool, now: i64) -> DbResult<Disabled> {
    let mut tx = db.begin_write().await?;
    let r = if disabled {
        sqlx::query(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $2)
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
    } else {
        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?
    };
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    let mut ended = Disabled {
        sessions_ended: 0,
        tokens_revoked: 0,
    };
    if disabled {
        ended.sessions_ended = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        ended.tokens_revoked = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(ended)
}

pub async fn by_username(db: &Db, username: &str) -> DbResult<Option<Credentials>> {
    let row = sqlx::query(
        "SELECT id, username, email, display_name, system_role, created_at,
                disabled_at, password_hash, failed_logins, locked_until
         FROM users WHERE username = $1 AND deleted_at IS NULL",
    )
    .bind(username)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(Credentials {
            user: user(&row)?,
            password_hash: row.try_get("password_hash")?,
            failed_logins: row.try_get("failed_logins")?,
            locked_until: row.try_get("locked_until")?,
            disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        })
    })
    .transpose()
}

pub async fn list(db: &Db) -> DbResult<Vec<User>> {
    let rows = sqlx::query(
        "SELECT id, username, email, display_name, system_role, created_at, disabled_at
         FROM users WHERE deleted_at IS NULL ORDER BY username",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(user).collect()
}

/// People's accounts (the calls' bot account, which every database has
/// from its migrations, is not one): none means a first run.
pub async fn count(db: &Db) -> DbResult<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM users WHERE id <> $1")
            .bind(super::call_jobs::BOT_USER_ID)
            .fetch_one(&db.pool)
            .await?
            .try_get("n")?,
    )
}

/// Counts a failed login; at `threshold` consecutive failures the account
/// locks until `lock_until` and the count starts again. Returns whether
/// this failure locked it.
pub async fn record_failure(db: &Db, id: &str, threshold: u32, lock_until: i64) -> DbResult<bool> {
    let n: i64 = sqlx::query(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await?
    .try_get("failed_logins")?;
    if n >= i64::from(threshold) {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $2 WHERE id = $1")
            .bind(id)
            .bind(lock_until)
            .execute(&db.pool)
            .await?;
        return Ok(true);
    }
    Ok(false)
}

pub async fn record_success(db: &Db, id: &str) -> DbResult<()> {
    sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Sets a new password hash and lifts any lockout.
pub async fn set_password(db: &Db, id: &str, hash: &str) -> DbResult<()> {
    let r = sqlx::query(
        "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(hash)
    .execute(&db.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// Users among `usernames` (any order, unknown names ignored).
pub async fn ids_by_username(db: &Db, usernames: &[&str]) -> DbResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in usernames {
        if let Some(row) =
            sqlx::query("SELECT id FROM users WHERE username = $1 AND deleted_at IS NULL")
                .bind(*name)
                .fetch_optional(&db.pool)
                .await?
        {
            out.push(((*name).to_owned(), row.try_get("id")?));
        }
    }
    Ok(out)
}

/// What a people search looks for, and on whose behalf.
pub struct Lookup<'a> {
    /// Lower-case text that a username, a display name or a word of the
    /// display name starts with.
    pub prefix: &'a str,
    /// Who asks: they find only the people they may see.
    pub caller: &'a str,
    /// System admins see every account.
    pub caller_is_admin: bool,
    /// Only members of this team.
    pub team_id: Option<&'a str>,
    pub limit: i64,
}

/// `%` and `_` are LIKE's wildcards and `\` its escape (both databases
/// take `ESCAPE '\'`): a typed `_` means an underscore.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Enabled accounts matching `l.prefix` (case-insensitive; SQLite folds
/// ASCII letters only) that the caller may see: people who share a team
/// with them, where the caller is not a team guest, or who share any
/// channel (direct and group messages included) with them; system admins
/// see everyone. The calls' recorder is no one to talk to. An exact
/// username comes first, then usernames in order.
pub async fn search(db: &Db, l: Lookup<'_>) -> DbResult<Vec<User>> {
    let p = like_escaped(l.prefix);
    let sql = format!(
        "SELECT u.id, u.username, u.email, u.display_name, u.system_role, u.created_at, u.disabled_at
         FROM users u
         WHERE u.deleted_at IS NULL AND u.disabled_at IS NULL AND u.id <> $1
           AND (LOWER(u.username) LIKE $2 ESCAPE '\\'
                OR LOWER(u.display_name) LIKE $2 ESCAPE '\\'
                OR LOWER(u.display_name) LIKE $3 ESCAPE '\\')
           AND ($4 = 1 OR u.id = $5
                OR EXISTS (SELECT 1 FROM team_members mine
                           JOIN team_members theirs ON theirs.team_id = mine.team_id
                           JOIN teams t ON t.id = mine.team_id AND t.deleted_at IS NULL
                           WHERE mine.user_id = $5 AND mine.role <> 'guest' AND theirs.user_id = u.id)
                OR EXISTS (SELECT 1 FROM channel_members mine
                           JOIN channel_members theirs ON theirs.channel_id = mine.channel_id
                           JOIN channels c ON c.id = mine.channel_id AND c.deleted_at IS NULL
                           WHERE mine.user_id = $5 AND theirs.user_id = u.id))
           {team}
         ORDER BY CASE WHEN LOWER(u.username) = $6 THEN 0 ELSE 1 END, u.username
         LIMIT $7",
        team = if l.team_id.is_some() {
            "AND EXISTS (SELECT 1 FROM team_members tm WHERE tm.team_id = $8 AND tm.user_id = u.id)"
        } else {
            ""
        },
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(super::call_jobs::BOT_USER_ID)
        .bind(format!("{p}%"))
        .bind(format!("% {p}%"))
        .bind(i64::from(l.caller_is_admin))
        .bind(l.caller)
        .bind(l.prefix)
        .bind(l.limit);
    if let Some(team) = l.team_id {
        q = q.bind(team);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(user).collect()
}
