//! Accounts bound to an OpenID Connect identity, and the logins in flight
//! between the redirect to the provider and its callback.

use async_trait::async_trait;
use sqlx::Row as _;

use super::users::{self, SystemRole, User};
use super::{Db, DbError, DbResult, is_unique_violation, new_id};
use crate::auth::tokens::hash_secret;
use crate::oidc::{ExternalIdentity, LoginStateStore, PendingLogin, StateStoreError};

/// The local account an identity is bound to, and whether it is switched off.
pub async fn user_for(db: &Db, account_key: &str) -> DbResult<Option<(User, bool)>> {
    let row = sqlx::query(
        "SELECT i.user_id, u.disabled_at FROM identities i JOIN users u ON u.id = i.user_id
         WHERE i.account_key = $1",
    )
    .bind(account_key)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user_id: String = row.try_get("user_id")?;
    let disabled: Option<i64> = row.try_get("disabled_at")?;
    match users::get(db, &user_id).await {
        Ok(u) => Ok(Some((u, disabled.is_some()))),
        // A deleted account stays bound: the identity must not get a new one.
        Err(DbError::NotFound) => Ok(Some((deleted_user(&user_id), true))),
        Err(e) => Err(e),
    }
}

fn deleted_user(id: &str) -> User {
    User {
        id: id.to_owned(),
        username: String::new(),
        email: None,
        display_name: String::new(),
        system_role: SystemRole::User,
        created_at: 0,
        disabled_at: None,
    }
}

/// Records a login: the email and display name follow the provider (they
/// are the user's to change there); the username stays, it is what
/// mentions use.
pub async fn record_login(
    db: &Db,
    user_id: &str,
    identity: &ExternalIdentity,
    display_name: Option<&str>,
    now: i64,
) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE identities SET email = $2, last_login_at = $3 WHERE account_key = $1")
        .bind(identity.account_key())
        .bind(identity.email.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE users SET email = $2, display_name = COALESCE($3, display_name) WHERE id = $1",
    )
    .bind(user_id)
    .bind(identity.email.as_deref())
    .bind(display_name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates an account (no password) for a first sign-in and binds the
/// identity to it in one transaction. The username is `wanted`, or
/// `wanted` with a number when that is taken. Two first sign-ins of one
/// identity at once yield one account: the loser finds the winner's.
pub async fn provision(
    db: &Db,
    identity: &ExternalIdentity,
    wanted: &str,
    display_name: &str,
    now: i64,
) -> DbResult<User> {
    let key = identity.account_key();
    for attempt in 0..20u32 {
        let username = if attempt == 0 {
            wanted.to_owned()
        } else {
            let suffix = if attempt < 10 {
                attempt.to_string()
            } else {
                new_id()[..6].to_owned()
            };
            let base: String = wanted.chars().take(64 - suffix.len() - 1).collect();
            format!("{base}-{suffix}")
        };
        let id = new_id();
        let mut tx = db.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO users (id, username, email, display_name, password_hash, system_role, created_at)
             VALUES ($1, $2, $3, $4, NULL, 'user', $5)",
        )
        .bind(&id)
        .bind(&username)
        .bind(identity.email.as_deref())
        .bind(display_name)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let r = sqlx::query(
            "INSERT INTO identities (account_key, user_id, issuer, tenant, subject, email, created_at, last_login_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&key)
        .bind(&id)
        .bind(&identity.issuer)
        .bind(identity.tenant.as_deref())
        .bind(&identity.subject)
        .bind(identity.email.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {
                tx.commit().await?;
                return users::get(db, &id).await;
            }
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return match user_for(db, &key).await? {
                    Some((u, _)) => Ok(u),
                    None => Err(DbError::Conflict("identity_taken")),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(DbError::Conflict("username_taken"))
}

/// Logins in flight, in the database: any node finishes what another
/// started, and `take` deletes the row it returns, so a replayed callback
/// finds nothing.
pub struct DbLoginStates {
    db: Db,
    ttl_secs: u64,
}

impl DbLoginStates {
    pub fn new(db: Db, ttl_secs: u64) -> Self {
        DbLoginStates { db, ttl_secs }
    }
}

fn store_err(e: sqlx::Error) -> StateStoreError {
    StateStoreError(e.to_string())
}

#[async_trait]
impl LoginStateStore for DbLoginStates {
    async fn put(&self, state: &str, login: PendingLogin) -> Result<(), StateStoreError> {
        // Abandoned logins go as new ones arrive.
        let cutoff = login.created_at.saturating_sub(self.ttl_secs) as i64;
        sqlx::query("DELETE FROM oidc_logins WHERE created_at < $1")
            .bind(cutoff)
            .execute(&self.db.pool)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, nonce, pkce_verifier, return_to, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(state))
        .bind(&login.nonce)
        .bind(&login.pkce_verifier)
        .bind(login.return_to.as_deref())
        .bind(login.created_at as i64)
        .execute(&self.db.pool)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn take(&self, state: &str) -> Result<Option<PendingLogin>, StateStoreError> {
        let row = sqlx::query(
            "DELETE FROM oidc_logins WHERE state_hash = $1
             RETURNING nonce, pkce_verifier, return_to, created_at",
        )
        .bind(hash_secret(state))
        .fetch_optional(&self.db.pool)
        .await
        .map_err(store_err)?;
        row.map(|r| {
            let created_at: i64 = r.try_get("created_at")?;
            Ok(PendingLogin {
                nonce: r.try_get("nonce")?,
                pkce_verifier: r.try_get("pkce_verifier")?,
                return_to: r.try_get("return_to")?,
                created_at: u64::try_from(created_at).unwrap_or(0),
            })
        })
        .transpose()
        .map_err(store_err)
    }
}
