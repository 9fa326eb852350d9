//! File names as a search source. A file is found once it is shared in a
//! post, for as long as neither the file nor that post is deleted: an
//! upload not yet posted is a draft of its uploader's.

use serde::Serialize;
use sqlx::Row as _;

use super::query::Query;
use super::{ChannelInfo, Page, Results, Scope, Source, channel_info};
use crate::db::{Db, DbResult};

const FILES: Source = Source {
    key: "file",
    table: "files",
    fts: "file_fts",
    author: "uploader_id",
    columns: "t.id, t.channel_id, t.uploader_id, t.post_id, t.name, t.mime_type, t.size_bytes, t.created_at, COALESCE(p.root_id, p.id) AS thread_root_id",
    joins: "JOIN posts p ON p.id = t.post_id",
    visible: " AND p.deleted_at IS NULL",
};

/// A file's metadata, and where to open the post that shared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub created_at: i64,
    pub uploader_id: String,
    pub channel_id: String,
    pub post_id: String,
    /// The thread the post belongs to (its root, or the post itself).
    pub thread_root_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileHit {
    pub file: FileInfo,
    pub channel: ChannelInfo,
}

pub async fn search(db: &Db, q: &Query, scope: &Scope, page: Page) -> DbResult<Results<FileHit>> {
    let (rows, has_more) = FILES.search(db, q, scope, page).await?;
    let results = rows
        .iter()
        .map(|row| {
            let file = FileInfo {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                mime_type: row.try_get("mime_type")?,
                size_bytes: row.try_get("size_bytes")?,
                created_at: row.try_get("created_at")?,
                uploader_id: row.try_get("uploader_id")?,
                channel_id: row.try_get("channel_id")?,
                post_id: row.try_get("post_id")?,
                thread_root_id: row.try_get("thread_root_id")?,
            };
            let channel = channel_info(row, file.channel_id.clone())?;
            Ok(FileHit { file, channel })
        })
        .collect::<DbResult<_>>()?;
    Ok(Results {
        results,
        page: page.page,
        per_page: page.per_page,
        has_more,
    })
}
