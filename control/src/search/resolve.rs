//! Filters that name people and channels, turned into ids.
//!
//! `in:` only ever resolves to channels the searcher is a member of, and
//! says the same thing for a channel that does not exist as for one they
//! are not in, so a search cannot be used to learn what channels exist.

use sqlx::Row as _;

use super::query::ChannelRef;
use crate::db::{Db, DbError, users};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A filter names nothing the searcher can use; the text says which.
    #[error("{0}")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// User ids for `from:` usernames; every name must exist.
pub async fn authors(db: &Db, usernames: &[String]) -> Result<Vec<String>, ResolveError> {
    let mut ids = Vec::with_capacity(usernames.len());
    for name in usernames {
        ids.push(user_id(db, name, "from").await?);
    }
    Ok(ids)
}

async fn user_id(db: &Db, name: &str, filter: &str) -> Result<String, ResolveError> {
    users::ids_by_username(db, &[name])
        .await?
        .pop()
        .map(|(_, id)| id)
        .ok_or_else(|| ResolveError::Unknown(format!("{filter}:{name} names no user")))
}

/// Channel ids for `in:` values, among `user_id`'s channels (of `team_id`
/// and direct/group ones, when a team is given). A name may match a
/// channel in each of several teams; all of them count.
pub async fn channels(
    db: &Db,
    user_id: &str,
    team_id: Option<&str>,
    refs: &[ChannelRef],
) -> Result<Vec<String>, ResolveError> {
    let mut ids = Vec::new();
    for r in refs {
        let found: Vec<String> = match r {
            ChannelRef::Name(name) => {
                let rows = sqlx::query(
                    "SELECT c.id FROM channels c
                     JOIN channel_members m ON m.channel_id = c.id AND m.user_id = $1
                     WHERE c.deleted_at IS NULL AND (c.id = $2 OR c.name = $2)
                       AND ($3 = '' OR c.team_id = $3 OR c.team_id IS NULL)",
                )
                .bind(user_id)
                .bind(name)
                .bind(team_id.unwrap_or(""))
                .fetch_all(&db.pool)
                .await
                .map_err(DbError::from)?;
                rows.iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()
                    .map_err(DbError::from)?
            }
            ChannelRef::Direct(username) => {
                let other = user_id_or(db, username).await?;
                // The direct channel whose members are the two of them
                // (only the searcher, for a note to self).
                let rows = sqlx::query(
                    "SELECT c.id FROM channels c
                     JOIN channel_members a ON a.channel_id = c.id AND a.user_id = $1
                     JOIN channel_members b ON b.channel_id = c.id AND b.user_id = $2
                     WHERE c.kind = 'direct' AND c.deleted_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM channel_members o
                                       WHERE o.channel_id = c.id AND o.user_id <> $1 AND o.user_id <> $2)",
                )
                .bind(user_id)
                .bind(other.as_deref().unwrap_or(""))
                .fetch_all(&db.pool)
                .await
                .map_err(DbError::from)?;
                rows.iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()
                    .map_err(DbError::from)?
            }
        };
        if found.is_empty() {
            return Err(ResolveError::Unknown(match r {
                ChannelRef::Name(n) => format!("in:{n} names no channel you are a member of"),
                ChannelRef::Direct(u) => {
                    format!("in:@{u} names no direct channel of yours")
                }
            }));
        }
        ids.extend(found);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// A user's id, or None: for `in:@name` an unknown user and a user without
/// a direct channel with the searcher get the same answer.
async fn user_id_or(db: &Db, name: &str) -> Result<Option<String>, ResolveError> {
    Ok(users::ids_by_username(db, &[name])
        .await?
        .pop()
        .map(|(_, id)| id))
}
