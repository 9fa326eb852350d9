//! File metadata. The bytes live in the object store; a row is written
//! only after its objects are stored, and a post takes its files in the
//! transaction that creates it, so no committed row or post ever names a
//! missing object. Objects without a row (a crash between the store and
//! the insert) are found and deleted by `files::cleanup`.

use std::collections::HashMap;

use signaling::events::FileInfo;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{Db, DbError, DbResult};

const COLUMNS: &str = "f.id, f.uploader_id, f.channel_id, f.post_id, f.name, f.mime_type, \
     f.size_bytes, f.storage_key, f.thumbnail_key, f.preview_key, f.width, f.height, \
     f.created_at, f.deleted_at";

/// A file's row: what clients see and where its objects are.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub info: FileInfo,
    pub storage_key: String,
    pub thumbnail_key: Option<String>,
    pub preview_key: Option<String>,
    /// The file or its post is deleted: it is not served.
    pub gone: bool,
}

pub(crate) fn file_row(row: &AnyRow) -> DbResult<FileRow> {
    let thumbnail_key: Option<String> = row.try_get("thumbnail_key")?;
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    let post_deleted_at: Option<i64> = row.try_get("post_deleted_at").unwrap_or(None);
    Ok(FileRow {
        info: FileInfo {
            id: row.try_get("id")?,
            channel_id: row.try_get("channel_id")?,
            user_id: row.try_get("uploader_id")?,
            post_id: row.try_get("post_id")?,
            name: row.try_get("name")?,
            mime_type: row.try_get("mime_type")?,
            size: row.try_get("size_bytes")?,
            width: row.try_get("width")?,
            height: row.try_get("height")?,
            has_thumbnail: thumbnail_key.is_some(),
            created_at: row.try_get("created_at")?,
        },
        storage_key: row.try_get("storage_key")?,
        thumbnail_key,
        preview_key: row.try_get("preview_key")?,
        gone: deleted_at.is_some() || post_deleted_at.is_some(),
    })
}

/// A new upload, its objects already stored.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub info: FileInfo,
    pub storage_key: String,
    pub thumbnail_key: Option<String>,
    pub preview_key: Option<String>,
}

/// Records one request's uploads, all or none.
pub async fn insert(db: &Db, files: &[NewFile]) -> DbResult<()> {
    let mut tx = db.begin_write().await?;
    for f in files {
        let i = &f.info;
        sqlx::query(
            "INSERT INTO files (id, uploader_id, channel_id, name, mime_type, size_bytes,
                 storage_key, thumbnail_key, preview_key, width, height, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&i.id)
        .bind(&i.user_id)
        .bind(&i.channel_id)
        .bind(&i.name)
        .bind(&i.mime_type)
        .bind(i.size)
        .bind(&f.storage_key)
        .bind(f.thumbnail_key.as_deref())
        .bind(f.preview_key.as_deref())
        .bind(i.width)
        .bind(i.height)
        .bind(i.created_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A file by id, with whether its post is deleted.
pub async fn get(db: &Db, id: &str) -> DbResult<FileRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, p.deleted_at AS post_deleted_at
         FROM files f LEFT JOIN posts p ON p.id = f.post_id WHERE f.id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DbError::NotFound)?;
    file_row(&row)
}

/// Files by id (those that exist), with whether their post is deleted,
/// for checking a post's `file_ids`.
pub async fn by_ids(db: &Db, ids: &[String]) -> DbResult<Vec<FileRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS}, p.deleted_at AS post_deleted_at
         FROM files f LEFT JOIN posts p ON p.id = f.post_id WHERE f.id IN ({})",
        placeholders(1, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(&db.pool).await?.iter().map(file_row).collect()
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gives `file_ids` to a new post, inside its transaction. Each must be
/// `uploader`'s, in `channel_id`, not deleted and not attached yet; the
/// conditional update makes a file attach to one post only, even when two
/// posts race for it (and against the cleanup job deleting it).
pub async fn attach_in(
    conn: &mut AnyConnection,
    post_id: &str,
    file_ids: &[String],
    uploader: &str,
    channel_id: &str,
) -> DbResult<()> {
    for (position, id) in (0_i64..).zip(file_ids) {
        let r = sqlx::query(
            "UPDATE files SET post_id = $1, post_position = $5
             WHERE id = $2 AND uploader_id = $3 AND channel_id = $4
               AND post_id IS NULL AND deleted_at IS NULL",
        )
        .bind(post_id)
        .bind(id)
        .bind(uploader)
        .bind(channel_id)
        .bind(position)
        .execute(&mut *conn)
        .await?;
        if r.rows_affected() != 1 {
            return Err(DbError::Conflict("file_already_attached"));
        }
    }
    Ok(())
}

/// The files of each post in `post_ids`, in the order the post gave them.
pub async fn for_posts(
    conn: &mut AnyConnection,
    post_ids: &[&str],
) -> DbResult<HashMap<String, Vec<FileInfo>>> {
    let mut out: HashMap<String, Vec<FileInfo>> = HashMap::new();
    // Bounded statements: a page is at most a few hundred posts.
    for chunk in post_ids.chunks(200) {
        let sql = format!(
            "SELECT {COLUMNS} FROM files f
             WHERE f.post_id IN ({}) AND f.deleted_at IS NULL
             ORDER BY f.post_position, f.created_at, f.id",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let f = file_row(&row)?;
            if let Some(p) = f.info.post_id.clone() {
                out.entry(p).or_default().push(f.info);
            }
        }
    }
    Ok(out)
}

/// Deletes up to `limit` uploads never attached to a post and created
/// before `created_before`; returns each one's object keys, which the
/// caller deletes next (a crash in between leaves orphans for the next run).
pub async fn delete_unattached(
    db: &Db,
    created_before: i64,
    limit: i64,
) -> DbResult<Vec<Vec<String>>> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query(
        // The outer `post_id IS NULL` is re-checked on a row that a post
        // attached meanwhile (PostgreSQL re-evaluates it on the new
        // version), so an attached file is never deleted.
        "DELETE FROM files WHERE post_id IS NULL AND id IN (
             SELECT id FROM files WHERE post_id IS NULL AND created_at < $1
             ORDER BY created_at LIMIT $2)
         RETURNING storage_key, thumbnail_key, preview_key",
    )
    .bind(created_before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(keys_of).collect()
}

fn keys_of(r: &AnyRow) -> DbResult<Vec<String>> {
    let mut keys = vec![r.try_get::<String, _>("storage_key")?];
    for col in ["thumbnail_key", "preview_key"] {
        if let Some(k) = r.try_get::<Option<String>, _>(col)? {
            keys.push(k);
        }
    }
    Ok(keys)
}

/// Every object key a row names.
pub async fn all_keys(db: &Db) -> DbResult<Vec<String>> {
    let rows = sqlx::query("SELECT storage_key, thumbnail_key, preview_key FROM files")
        .fetch_all(&db.pool)
        .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in &rows {
        keys.extend(keys_of(r)?);
    }
    Ok(keys)
}
