//! Posts, threads, edits, soft deletes, reactions and pins. Every change
//! writes its event in the same transaction.

use serde::Serialize;
use signaling::events::{Event, Post, Reaction};
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::events::{self, Scope};
use super::{Db, DbError, DbResult, is_unique_violation, new_id};

pub(crate) fn post(row: &AnyRow) -> DbResult<Post> {
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    let deleted = deleted_at.is_some();
    let pinned: i64 = row.try_get("is_pinned")?;
    Ok(Post {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        user_id: row.try_get("user_id")?,
        root_id: row.try_get("root_id")?,
        // A deleted post keeps its text in the database (retention and
        // compliance exports decide its fate), never on the wire.
        message: if deleted {
            String::new()
        } else {
            row.try_get("message")?
        },
        pending_id: row.try_get("pending_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted,
        pinned: pinned != 0,
        reply_count: row.try_get("reply_count")?,
        from_bot: row.try_get::<i64, _>("from_bot")? != 0,
        override_username: row.try_get("override_username")?,
        override_icon_url: row.try_get("override_icon_url")?,
        files: Vec::new(),
    })
}

/// Who a new post notifies, beyond making the channel unread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    /// @channel, @all or @here: every member but the author.
    pub channel_wide: bool,
    /// @username, lower case, without duplicates.
    pub usernames: Vec<String>,
}

/// Finds @mentions in a message: `@` at the start or after a character
/// that cannot be part of a username, followed by a username. Trailing
/// dots are punctuation ("thanks @bob.").
pub fn parse_mentions(message: &str, max: usize) -> Mentions {
    let mut m = Mentions::default();
    let bytes = message.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' && (i == 0 || !is_name(bytes[i - 1])) {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && is_name(bytes[end]) {
                end += 1;
            }
            let name = message[start..end]
                .trim_end_matches('.')
                .to_ascii_lowercase();
            match name.as_str() {
                "" => {}
                "channel" | "all" | "here" => m.channel_wide = true,
                _ => {
                    if !m.usernames.contains(&name) && m.usernames.len() < max {
                        m.usernames.push(name);
                    }
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    m
}

#[derive(Debug, Clone, Default)]
pub struct NewPost<'a> {
    pub channel_id: &'a str,
    pub user_id: &'a str,
    pub root_id: Option<&'a str>,
    pub message: &'a str,
    pub pending_id: Option<&'a str>,
    /// Made by an incoming webhook or an outgoing webhook's answer (posts
    /// by bot accounts are marked without it).
    pub from_webhook: bool,
    pub override_username: Option<&'a str>,
    pub override_icon_url: Option<&'a str>,
    /// Uploads of the author in this channel, not yet attached (checked by
    /// the caller; re-checked here under the transaction).
    pub file_ids: &'a [String],
    /// Queue Teams activity notifications for it (`[m365.notifications]`
    /// on, and a post a person or bot made through the API).
    pub notify_teams: bool,
}

/// Fills in each live post's files.
async fn with_files(conn: &mut AnyConnection, posts: &mut [Post]) -> DbResult<()> {
    let ids: Vec<&str> = posts
        .iter()
        .filter(|p| !p.deleted)
        .map(|p| p.id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut files = super::files::for_posts(conn, &ids).await?;
    for p in posts.iter_mut() {
        if let Some(f) = files.remove(&p.id) {
            p.files = f;
        }
    }
    Ok(())
}

/// Fills in the files of posts read elsewhere (search results).
pub(crate) async fn fill_files(db: &Db, posts: &mut [Post]) -> DbResult<()> {
    with_files(&mut *db.pool.acquire().await?, posts).await
}

async fn posts_with_files(conn: &mut AnyConnection, rows: &[AnyRow]) -> DbResult<Vec<Post>> {
    let mut posts = rows.iter().map(post).collect::<DbResult<Vec<_>>>()?;
    with_files(conn, &mut posts).await?;
    Ok(posts)
}

async fn get_in(conn: &mut AnyConnection, id: &str) -> DbResult<Post> {
    let row = sqlx::query(
        "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
         FROM posts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(DbError::NotFound)?;
    let mut p = [post(&row)?];
    with_files(conn, &mut p).await?;
    let [p] = p;
    Ok(p)
}

/// A post, deleted or not.
pub async fn get(db: &Db, id: &str) -> DbResult<Post> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// The post `user_id` made with this pending id, if any.
pub async fn by_pending(db: &Db, user_id: &str, pending_id: &str) -> DbResult<Option<Post>> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query(
        "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
         FROM posts WHERE user_id = $1 AND pending_id = $2",
    )
    .bind(user_id)
    .bind(pending_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(Some(posts_with_files(&mut conn, &[row]).await?.remove(0))),
        None => Ok(None),
    }
}

/// What [`create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new post.
    New(Post),
    /// A retry: the post made earlier with the same pending id.
    Existing(Post),
}

/// Creates a post, or returns the one made earlier with the same
/// `pending_id` by the same author (`Conflict("pending_id_reused")` if that
/// one is in another channel). Counts it unread for the other members,
/// counts mentions, bumps the thread, marks the channel read for the
/// author and emits `post_created`, all in one transaction.
pub async fn create(db: &Db, new: NewPost<'_>, mentions: &Mentions, now: i64) -> DbResult<Created> {
    if let Some(pid) = new.pending_id
        && let Some(p) = by_pending(db, new.user_id, pid).await?
    {
        return existing(p, new.channel_id);
    }
    let mut tx = db.begin_write().await?;
    match insert_in(&mut tx, db.backend, &new, mentions, now).await {
        Ok(p) => {
            tx.commit().await?;
            Ok(Created::New(p))
        }
        Err(DbError::Sqlx(e)) if is_unique_violation(&e) => {
            // A concurrent retry won the race: answer with its post.
            drop(tx);
            let pid = new.pending_id.unwrap_or_default();
            let p = by_pending(db, new.user_id, pid)
                .await?
                .ok_or(DbError::Conflict("pending_id_reused"))?;
            existing(p, new.channel_id)
        }
        Err(e) => Err(e),
    }
}

/// The work of [`create`] inside the caller's transaction (calls make
/// their post in the transaction that starts the call). A duplicate
/// pending id fails with the unique violation.
pub(crate) async fn insert_in(
    tx: &mut AnyConnection,
    backend: super::Backend,
    new: &NewPost<'_>,
    mentions: &Mentions,
    now: i64,
) -> DbResult<Post> {
    let id = new_id();
    // A reply to a reply joins the same thread.
    let root_id = match new.root_id {
        None => None,
        Some(r) => {
            let root = get_in(tx, r).await?;
            if root.channel_id != new.channel_id || root.deleted {
                return Err(DbError::NotFound);
            }
            Some(root.root_id.unwrap_or(root.id))
        }
    };
    // Posts of a channel get strictly increasing times (a post in the same
    // millisecond as the last one is stamped a millisecond later), so
    // "newest first" and thread order are total and stable on both
    // databases. Updating the channel row first also serialises posting
    // per channel.
    let created_at: i64 = sqlx::query(
        "UPDATE channels SET total_msg_count = total_msg_count + 1,
             last_post_at = CASE WHEN last_post_at >= $2 THEN last_post_at + 1 ELSE $2 END
         WHERE id = $1 RETURNING last_post_at",
    )
    .bind(new.channel_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("last_post_at")?;
    sqlx::query(
        "INSERT INTO posts (id, channel_id, user_id, root_id, message, pending_id, created_at,
             updated_at, from_bot, override_username, override_icon_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7,
             CASE WHEN $8 = 1 OR EXISTS (SELECT 1 FROM bots WHERE user_id = $3) THEN 1 ELSE 0 END,
             $9, $10)",
    )
    .bind(&id)
    .bind(new.channel_id)
    .bind(new.user_id)
    .bind(root_id.as_deref())
    .bind(new.message)
    .bind(new.pending_id)
    .bind(created_at)
    .bind(i64::from(new.from_webhook))
    .bind(new.override_username)
    .bind(new.override_icon_url)
    .execute(&mut *tx)
    .await?;
    super::files::attach_in(tx, &id, new.file_ids, new.user_id, new.channel_id).await?;
    if let Some(root) = &root_id {
        sqlx::query("UPDATE posts SET reply_count = reply_count + 1 WHERE id = $1")
            .bind(root)
            .execute(&mut *tx)
            .await?;
    }
    if mentions.channel_wide {
        sqlx::query(
            "UPDATE channel_members SET mention_count = mention_count + 1
             WHERE channel_id = $1 AND user_id <> $2",
        )
        .bind(new.channel_id)
        .bind(new.user_id)
        .execute(&mut *tx)
        .await?;
    } else {
        for name in &mentions.usernames {
            sqlx::query(
                "UPDATE channel_members SET mention_count = mention_count + 1
                 WHERE channel_id = $1 AND user_id <> $2
                   AND user_id = (SELECT id FROM users WHERE username = $3)",
            )
            .bind(new.channel_id)
            .bind(new.user_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE channel_members SET last_viewed_at = $3, mention_count = 0,
             msg_count_read = (SELECT total_msg_count FROM channels WHERE id = $1)
         WHERE channel_id = $1 AND user_id = $2",
    )
    .bind(new.channel_id)
    .bind(new.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let p = get_in(tx, &id).await?;
    events::append(
        tx,
        backend,
        Scope::Channel(new.channel_id),
        &Event::PostCreated { post: p.clone() },
        now,
    )
    .await?;
    // Posts by bots and webhooks fire no outgoing webhook: an answer
    // must not trigger its own hook again.
    if !p.from_bot {
        super::webhooks::enqueue_matches(tx, &p, now).await?;
    }
    if new.notify_teams {
        super::m365_outbox::enqueue_post(tx, &p, mentions, now).await?;
    }
    Ok(p)
}

fn existing(p: Post, channel_id: &str) -> DbResult<Created> {
    if p.channel_id == channel_id {
        Ok(Created::Existing(p))
    } else {
        Err(DbError::Conflict("pending_id_reused"))
    }
}

/// Replaces a post's text, keeping the old one in its history.
pub async fn edit(db: &Db, id: &str, message: &str, now: i64) -> DbResult<Post> {
    let mut tx = db.begin_write().await?;
    let p = edit_in(&mut tx, db.backend, id, message, now).await?;
    tx.commit().await?;
    Ok(p)
}

/// [`edit`] inside the caller's transaction.
pub(crate) async fn edit_in(
    tx: &mut AnyConnection,
    backend: super::Backend,
    id: &str,
    message: &str,
    now: i64,
) -> DbResult<Post> {
    // Stamp first: this locks the row (concurrent edits queue up) and makes
    // a post's edit times strictly increasing, so history order is total.
    let at: i64 = sqlx::query(
        "UPDATE posts SET edited_at = CASE WHEN edited_at >= $2 THEN edited_at + 1 ELSE $2 END
         WHERE id = $1 AND deleted_at IS NULL RETURNING edited_at",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DbError::NotFound)?
    .try_get("edited_at")?;
    let old = get_in(tx, id).await?;
    sqlx::query(
        "INSERT INTO post_edits (id, post_id, message, replaced_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(new_id())
    .bind(id)
    .bind(&old.message)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE posts SET message = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(message)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    let p = get_in(tx, id).await?;
    events::append(
        tx,
        backend,
        Scope::Channel(&p.channel_id),
        &Event::PostEdited { post: p.clone() },
        now,
    )
    .await?;
    Ok(p)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edit {
    pub message: String,
    /// When this text was replaced by the next one.
    pub replaced_at: i64,
}

/// Earlier texts of a post, oldest first.
pub async fn history(db: &Db, id: &str) -> DbResult<Vec<Edit>> {
    let rows = sqlx::query(
        "SELECT message, replaced_at FROM post_edits WHERE post_id = $1 ORDER BY replaced_at, id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Edit {
                message: r.try_get("message")?,
                replaced_at: r.try_get("replaced_at")?,
            })
        })
        .collect()
}

/// Soft-deletes a post: it stays in the database and in its thread.
pub async fn delete(db: &Db, id: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let p = get_in(&mut tx, id).await?;
    if p.deleted {
        return Err(DbError::NotFound);
    }
    sqlx::query("UPDATE posts SET deleted_at = $2, updated_at = $2, is_pinned = 0 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if let Some(root) = &p.root_id {
        sqlx::query(
            "UPDATE posts SET reply_count = reply_count - 1 WHERE id = $1 AND reply_count > 0",
        )
        .bind(root)
        .execute(&mut *tx)
        .await?;
    }
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(&p.channel_id),
        &Event::PostDeleted {
            post_id: p.id.clone(),
            channel_id: p.channel_id.clone(),
            root_id: p.root_id.clone(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A page of a channel's posts (roots and replies), newest first, before
/// the post `before` if given. Deleted posts are left out.
pub async fn list(
    db: &Db,
    channel_id: &str,
    before: Option<&Post>,
    limit: i64,
) -> DbResult<Vec<Post>> {
    let rows = match before {
        None => {
            sqlx::query(
                "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
                 FROM posts WHERE channel_id = $1 AND deleted_at IS NULL
                 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(channel_id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
        Some(b) => {
            sqlx::query(
                "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
                 FROM posts WHERE channel_id = $1 AND deleted_at IS NULL
                   AND (created_at < $2 OR (created_at = $2 AND id < $3))
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(channel_id)
            .bind(b.created_at)
            .bind(&b.id)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
    };
    posts_with_files(&mut *db.pool.acquire().await?, &rows).await
}

/// A thread: its root, then the replies oldest first (deleted ones left out).
pub async fn thread(db: &Db, root_id: &str) -> DbResult<Vec<Post>> {
    let rows = sqlx::query(
        "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
         FROM posts WHERE (id = $1 OR root_id = $1) AND (deleted_at IS NULL OR id = $1)
         ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END, created_at, id",
    )
    .bind(root_id)
    .fetch_all(&db.pool)
    .await?;
    posts_with_files(&mut *db.pool.acquire().await?, &rows).await
}

/// Adds a reaction; false if the user had already reacted so.
pub async fn react(db: &Db, p: &Post, user_id: &str, emoji: &str, now: i64) -> DbResult<bool> {
    let mut tx = db.begin_write().await?;
    let r = sqlx::query(
        "INSERT INTO reactions (post_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(&p.id)
    .bind(user_id)
    .bind(emoji)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    let reaction = Reaction {
        post_id: p.id.clone(),
        user_id: user_id.into(),
        emoji: emoji.into(),
        created_at: now,
    };
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(&p.channel_id),
        &Event::ReactionAdded {
            reaction,
            channel_id: p.channel_id.clone(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn unreact(db: &Db, p: &Post, user_id: &str, emoji: &str, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "DELETE FROM reactions WHERE post_id = $1 AND user_id = $2 AND emoji = $3 RETURNING created_at",
    )
    .bind(&p.id)
    .bind(user_id)
    .bind(emoji)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DbError::NotFound)?;
    let reaction = Reaction {
        post_id: p.id.clone(),
        user_id: user_id.into(),
        emoji: emoji.into(),
        created_at: row.try_get("created_at")?,
    };
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(&p.channel_id),
        &Event::ReactionRemoved {
            reaction,
            channel_id: p.channel_id.clone(),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn reactions(db: &Db, post_id: &str) -> DbResult<Vec<Reaction>> {
    let rows = sqlx::query(
        "SELECT post_id, user_id, emoji, created_at FROM reactions WHERE post_id = $1
         ORDER BY created_at, user_id, emoji",
    )
    .bind(post_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Reaction {
                post_id: r.try_get("post_id")?,
                user_id: r.try_get("user_id")?,
                emoji: r.try_get("emoji")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Pins or unpins; a no-op (no event) when nothing changes.
pub async fn set_pinned(db: &Db, p: &Post, pinned: bool, now: i64) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    let r = sqlx::query(
        "UPDATE posts SET is_pinned = $2 WHERE id = $1 AND is_pinned <> $2 AND deleted_at IS NULL",
    )
    .bind(&p.id)
    .bind(i64::from(pinned))
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(());
    }
    events::append(
        &mut tx,
        db.backend,
        Scope::Channel(&p.channel_id),
        &Event::PostPinned {
            post_id: p.id.clone(),
            channel_id: p.channel_id.clone(),
            pinned,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn pinned(db: &Db, channel_id: &str) -> DbResult<Vec<Post>> {
    let rows = sqlx::query(
        "SELECT id, channel_id, user_id, root_id, message, pending_id, created_at, updated_at, edited_at, deleted_at, is_pinned, reply_count,
                from_bot, override_username, override_icon_url
         FROM posts WHERE channel_id = $1 AND is_pinned = 1 AND deleted_at IS NULL
         ORDER BY created_at DESC, id DESC",
    )
    .bind(channel_id)
    .fetch_all(&db.pool)
    .await?;
    posts_with_files(&mut *db.pool.acquire().await?, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_where_a_person_would_see_them() {
        let m = parse_mentions("hi @Alice and @bob. mail a@b.c, @alice again; @here", 10);
        assert!(m.channel_wide);
        assert_eq!(m.usernames, vec!["alice", "bob"]);
        let m = parse_mentions("no mentions, just email x@y.z and a lone @", 10);
        assert_eq!(m, Mentions::default());
        assert_eq!(parse_mentions("@a @b @c", 2).usernames.len(), 2);
    }
}
