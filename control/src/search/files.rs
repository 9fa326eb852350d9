//! File names as a search source. A file is found once it is shared in a
//! post, for as long as neither the file nor that post is deleted: an
//! upload not yet posted is a draft of its uploader's.

use serde::Serialize;
use signaling::events::FileInfo;
use sqlx::Row as _;

use super::query::Query;
use super::{ChannelInfo, Page, Results, Scope, Source, channel_info};
use crate::db::{Db, DbResult};

const FILES: Source = Source {
    key: "file",
    table: "files",
    fts: "file_fts",
    author: "uploader_id",
    columns: "t.id, t.uploader_id, t.channel_id, t.post_id, t.name, t.mime_type, t.size_bytes, \
        t.storage_key, t.thumbnail_key, t.preview_key, t.width, t.height, t.created_at, \
        t.deleted_at, COALESCE(p.root_id, p.id) AS thread_root_id",
    joins: "JOIN posts p ON p.id = t.post_id",
    visible: " AND p.deleted_at IS NULL",
};

/// A file found: its metadata (as in posts), the thread to open (the
/// root of the post that shared it, or that post itself) and its channel.
#[derive(Debug, Clone, Serialize)]
pub struct FileHit {
    pub file: FileInfo,
    pub thread_root_id: String,
    pub channel: ChannelInfo,
}

pub async fn search(db: &Db, q: &Query, scope: &Scope, page: Page) -> DbResult<Results<FileHit>> {
    let (rows, has_more) = FILES.search(db, q, scope, page).await?;
    let results = rows
        .iter()
        .map(|row| {
            let file = crate::db::files::file_row(row)?.info;
            let channel = channel_info(row, file.channel_id.clone())?;
            Ok(FileHit {
                file,
                thread_root_id: row.try_get("thread_root_id")?,
                channel,
            })
        })
        .collect::<DbResult<_>>()?;
    Ok(Results {
        results,
        page: page.page,
        per_page: page.per_page,
        has_more,
    })
}
