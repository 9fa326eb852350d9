//! `m365_users`: who signed in from the Teams (or Outlook) tab, under
//! which Entra tenant and object id, and from which host. Graph
//! notifications go to these people.

use sqlx::Row as _;

use super::{Db, DbResult};

/// A person's row: where their Teams notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M365User {
    pub user_id: String,
    pub tenant: String,
    pub object_id: String,
    pub host: String,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// Records a sign-in from the tab: a first one adds the row, later ones
/// move `last_seen_at` and the host.
pub async fn record_sign_in(
    db: &Db,
    user_id: &str,
    tenant: &str,
    object_id: &str,
    host: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO m365_users (user_id, tenant, object_id, host, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (user_id) DO UPDATE SET tenant = excluded.tenant,
             object_id = excluded.object_id, host = excluded.host,
             last_seen_at = excluded.last_seen_at",
    )
    .bind(user_id)
    .bind(tenant)
    .bind(object_id)
    .bind(host)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub async fn get(db: &Db, user_id: &str) -> DbResult<Option<M365User>> {
    let row = sqlx::query(
        "SELECT user_id, tenant, object_id, host, first_seen_at, last_seen_at
         FROM m365_users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(M365User {
        user_id: r.try_get("user_id")?,
        tenant: r.try_get("tenant")?,
        object_id: r.try_get("object_id")?,
        host: r.try_get("host")?,
        first_seen_at: r.try_get("first_seen_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    }))
}
