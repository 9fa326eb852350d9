//! Full-text search over what a user may read: posts and file names today,
//! call transcripts later.
//!
//! # How a search runs
//!
//! 1. [`query::parse`] turns the search box text into a [`query::Query`]:
//!    words, phrases, exclusions, prefixes, and the filters `from:`, `in:`,
//!    `before:`/`after:`/`on:` and `ext:`. A bad query is a
//!    [`query::QueryError`] whose text becomes the 400's message.
//! 2. [`resolve`] turns `from:` usernames into user ids and `in:` names
//!    into ids of channels *the searcher is a member of*.
//! 3. [`render`] writes the words for the engine: an FTS5 `MATCH`
//!    expression on SQLite, a `to_tsquery` text on PostgreSQL.
//! 4. [`Source::search`] builds one SQL statement that joins the source's
//!    rows to the searcher's channel memberships, so a row of a channel
//!    they are not in can never come back, whatever the filters say.
//!
//! Results are newest first (then by id), paged by `page`/`per_page`:
//! what people look for in chat is usually recent, and a stable order
//! makes pages that do not overlap. Rank is not used.
//!
//! # Indexes
//!
//! PostgreSQL: a generated `search_vector` column with a GIN index on each
//! searchable table. SQLite: an external-content FTS5 table per source
//! (`post_fts`, `file_fts`) keyed through `search_keys`, kept in step by
//! triggers. See `migrations/*/0008_search.sql`.
//!
//! # Adding a source (call transcripts, issue 6)
//!
//! A source is a table whose rows have `id`, `channel_id`, an author
//! column, `created_at`, `deleted_at` and one text column. Give it a
//! `search_vector` column and GIN index (PostgreSQL) and an FTS5 table plus
//! triggers under its own `search_keys.source` (SQLite), describe it with a
//! [`Source`], map its rows, and add a route. Access, filters, paging and
//! escaping come with [`Source::search`].

pub mod files;
pub mod posts;
pub mod query;
pub mod render;
pub mod resolve;

use serde::Serialize;
use signaling::events::ChannelKind;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::db::{Backend, Db, DbError, DbResult};
use render::{Engine, TextMatch};

/// Default results per page.
pub const DEFAULT_PER_PAGE: i64 = 20;
/// Most results per page.
pub const MAX_PER_PAGE: i64 = 200;
/// Deepest result reachable by paging: beyond it, narrow the query.
pub const MAX_OFFSET: i64 = 10_000;

/// One searchable kind of row. All names are constants of this crate,
/// never user input.
pub struct Source {
    /// `search_keys.source` (SQLite).
    pub key: &'static str,
    pub table: &'static str,
    /// The FTS5 table (SQLite).
    pub fts: &'static str,
    /// The column naming who wrote or uploaded the row.
    pub author: &'static str,
    /// Columns selected from the row (aliased `t`).
    pub columns: &'static str,
    /// Extra joins (e.g. a file's post).
    pub joins: &'static str,
    /// What else makes a row findable, beyond not being deleted: empty,
    /// or conditions that each start with ` AND `.
    pub visible: &'static str,
}

/// Who searches, where, and what the filters resolved to.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub user_id: String,
    /// Only this team's channels (and direct and group channels).
    pub team_id: Option<String>,
    /// `in:`, resolved; empty means every channel of the searcher.
    pub channel_ids: Vec<String>,
    /// `from:`, resolved; empty means anyone.
    pub author_ids: Vec<String>,
    /// `ext:` (files).
    pub extensions: Vec<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// A page request, checked.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub fn new(page: Option<i64>, per_page: Option<i64>) -> Result<Page, String> {
        let page = page.unwrap_or(0);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(format!("per_page must be 1 to {MAX_PER_PAGE}"));
        }
        if page < 0 || page.saturating_mul(per_page) > MAX_OFFSET {
            return Err(format!(
                "page must be 0 or more, and page × per_page at most {MAX_OFFSET}; narrow the search to go further"
            ));
        }
        Ok(Page { page, per_page })
    }
}

/// The channel a result lives in: enough to show where it is and open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    pub kind: ChannelKind,
    pub name: String,
    pub display_name: String,
}

/// One page of results, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Results<T> {
    pub results: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    pub has_more: bool,
}

/// A statement under construction: SQL text with `$n` placeholders and
/// the values bound to them, in order.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Binds `a` and writes its placeholder.
    fn bind(&mut self, a: Arg) -> &mut Self {
        self.args.push(a);
        let n = self.args.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    /// ` AND {col} IN ($a, $b, …)`.
    fn and_in(&mut self, col: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        self.push(" AND ").push(col).push(" IN (");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(Arg::Text(v.clone()));
        }
        self.push(")");
    }

    async fn fetch(self, db: &Db) -> DbResult<Vec<AnyRow>> {
        // Safe to assert: the text is made of this module's constants and
        // placeholders; every value from the request is a bound argument.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        Ok(q.fetch_all(&db.pool).await?)
    }
}

impl Source {
    /// One page of this source's rows that match `text` within `scope`,
    /// newest first; one more row than asked says whether more follow.
    async fn search(
        &self,
        db: &Db,
        q: &query::Query,
        scope: &Scope,
        page: Page,
    ) -> DbResult<(Vec<AnyRow>, bool)> {
        let engine = match db.backend {
            Backend::Sqlite => Engine::Fts5,
            Backend::Postgres => Engine::TsQuery,
        };
        let text = engine.render(q);
        let mut sql = Sql::default();
        sql.push("SELECT ").push(self.columns).push(
            ", c.team_id AS c_team_id, c.kind AS c_kind, c.name AS c_name, c.display_name AS c_display_name FROM ",
        );
        // SQLite: start from the FTS5 hits, then reach the rows by key.
        // CROSS JOIN pins that loop order. Left to itself the planner
        // (without ANALYZE statistics, which nothing here gathers) may scan
        // search_keys or the searcher's channels and run the MATCH once per
        // row or channel: seconds at 100,000 posts instead of milliseconds.
        let join = if let (Engine::Fts5, TextMatch::Matching(_)) = (engine, &text) {
            sql.push(self.fts)
                .push(" CROSS JOIN search_keys k ON k.id = ");
            sql.push(self.fts).push(".rowid AND k.source = '");
            sql.push(self.key).push("' CROSS JOIN ").push(self.table);
            sql.push(" t ON t.id = k.ref_id");
            " CROSS JOIN "
        } else {
            sql.push(self.table).push(" t");
            " JOIN "
        };
        // The membership join is the permission check.
        sql.push(join)
            .push("channel_members m ON m.channel_id = t.channel_id AND m.user_id = ");
        sql.bind(Arg::Text(scope.user_id.clone()));
        sql.push(join)
            .push("channels c ON c.id = t.channel_id AND c.deleted_at IS NULL ");
        sql.push(self.joins);
        sql.push(" WHERE t.deleted_at IS NULL").push(self.visible);
        match (engine, &text) {
            (_, TextMatch::Any) => {}
            (Engine::Fts5, TextMatch::Matching(m)) => {
                sql.push(" AND ").push(self.fts).push(" MATCH ");
                sql.bind(Arg::Text(m.clone()));
            }
            (Engine::Fts5, TextMatch::NotMatching(m)) => {
                sql.push(" AND t.id NOT IN (SELECT k2.ref_id FROM ")
                    .push(self.fts);
                sql.push(" JOIN search_keys k2 ON k2.id = ").push(self.fts);
                sql.push(".rowid WHERE ").push(self.fts).push(" MATCH ");
                sql.bind(Arg::Text(m.clone()));
                sql.push(")");
            }
            (Engine::TsQuery, TextMatch::Matching(m)) => {
                sql.push(" AND t.search_vector @@ to_tsquery('simple', ");
                sql.bind(Arg::Text(m.clone())).push(")");
            }
            (Engine::TsQuery, TextMatch::NotMatching(m)) => {
                sql.push(" AND NOT (t.search_vector @@ to_tsquery('simple', ");
                sql.bind(Arg::Text(m.clone())).push("))");
            }
        }
        if let Some(team) = &scope.team_id {
            sql.push(" AND (c.team_id = ");
            sql.bind(Arg::Text(team.clone()))
                .push(" OR c.team_id IS NULL)");
        }
        sql.and_in("t.channel_id", &scope.channel_ids);
        sql.and_in(&format!("t.{}", self.author), &scope.author_ids);
        if let Some(s) = scope.since_ms {
            sql.push(" AND t.created_at >= ").bind(Arg::Int(s));
        }
        if let Some(u) = scope.until_ms {
            sql.push(" AND t.created_at < ").bind(Arg::Int(u));
        }
        if !scope.extensions.is_empty() {
            sql.push(" AND (");
            for (i, ext) in scope.extensions.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                // ext is letters and digits only: no LIKE wildcards.
                sql.push("LOWER(t.name) LIKE ")
                    .bind(Arg::Text(format!("%.{ext}")));
            }
            sql.push(")");
        }
        sql.push(" ORDER BY t.created_at DESC, t.id DESC LIMIT ");
        sql.bind(Arg::Int(page.per_page + 1)).push(" OFFSET ");
        sql.bind(Arg::Int(page.page * page.per_page));
        let mut rows = sql.fetch(db).await?;
        let more = rows.len() as i64 > page.per_page;
        rows.truncate(page.per_page as usize);
        Ok((rows, more))
    }
}

fn channel_info(row: &AnyRow, channel_id: String) -> DbResult<ChannelInfo> {
    let kind: String = row.try_get("c_kind")?;
    Ok(ChannelInfo {
        id: channel_id,
        team_id: row.try_get("c_team_id")?,
        kind: ChannelKind::parse(&kind)
            .ok_or_else(|| DbError::Corrupt(format!("channel kind {kind:?}")))?,
        name: row.try_get("c_name")?,
        display_name: row.try_get("c_display_name")?,
    })
}
