//! Posts as a search source: found by their current text only (an edit
//! re-indexes the post; earlier texts stay in `post_edits`, unsearched),
//! never once deleted.

use serde::Serialize;
use signaling::events::Post;
use sqlx::Row as _;

use super::query::Query;
use super::{ChannelInfo, Page, Results, Scope, Source, channel_info};
use crate::db::{Db, DbResult};

const POSTS: Source = Source {
    key: "post",
    table: "posts",
    fts: "post_fts",
    author: "user_id",
    columns: "t.id, t.channel_id, t.user_id, t.root_id, t.message, t.pending_id, t.created_at, t.updated_at, t.edited_at, t.deleted_at, t.is_pinned, t.reply_count, t.from_bot, t.override_username, t.override_icon_url",
    joins: "",
    visible: "",
};

/// A post found, with its channel. The post's `root_id` (or its own id
/// when it has none) is the thread to open.
#[derive(Debug, Clone, Serialize)]
pub struct PostHit {
    pub post: Post,
    pub channel: ChannelInfo,
}

pub async fn search(db: &Db, q: &Query, scope: &Scope, page: Page) -> DbResult<Results<PostHit>> {
    let (rows, has_more) = POSTS.search(db, q, scope, page).await?;
    let mut posts = rows
        .iter()
        .map(crate::db::posts::post)
        .collect::<DbResult<Vec<_>>>()?;
    crate::db::posts::fill_files(db, &mut posts).await?;
    let results = posts
        .into_iter()
        .zip(&rows)
        .map(|(post, row)| {
            let channel = channel_info(row, row.try_get("channel_id")?)?;
            Ok(PostHit { post, channel })
        })
        .collect::<DbResult<_>>()?;
    Ok(Results {
        results,
        page: page.page,
        per_page: page.per_page,
        has_more,
    })
}
