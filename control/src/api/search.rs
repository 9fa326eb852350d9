//! `GET /search/posts` and `GET /search/files`: full-text search over what
//! the caller may read (see [`crate::search`]).

use axum::extract::State;
use serde::Deserialize;

use super::access::team_role;
use super::json::{Json, Query};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::search::files::{self, FileHit};
use crate::search::posts::{self, PostHit};
use crate::search::resolve::{self, ResolveError};
use crate::search::{Page, Results, Scope, query};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The search box text (see [`crate::search::query`]).
    pub q: String,
    /// Only this team's channels, and direct and group channels.
    #[serde(default)]
    pub team_id: Option<String>,
    /// 0-based.
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub per_page: Option<i64>,
    /// The searcher's offset from UTC in seconds (east positive), for the
    /// days of `before:`, `after:` and `on:`. Default 0.
    #[serde(default)]
    pub time_zone_offset: Option<i64>,
}

impl From<ResolveError> for AppError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Unknown(m) => AppError::BadRequest(m),
            ResolveError::Db(e) => e.into(),
        }
    }
}

/// Parses and resolves the request; `files` allows `ext:`.
async fn prepare(
    state: &AppState,
    user: &CurrentUser,
    p: &SearchParams,
    files: bool,
) -> Result<(query::Query, Scope, Page), AppError> {
    let page = Page::new(p.page, p.per_page).map_err(AppError::BadRequest)?;
    let q = query::parse(&p.q, p.time_zone_offset.unwrap_or(0))
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    if !files && !q.ext.is_empty() {
        return Err(AppError::BadRequest(
            "ext: applies to file searches (/search/files)".into(),
        ));
    }
    if let Some(team) = &p.team_id {
        team_role(state, user, team).await?;
    }
    let scope = Scope {
        user_id: user.id().to_owned(),
        team_id: p.team_id.clone(),
        channel_ids: resolve::channels(&state.db, user.id(), p.team_id.as_deref(), &q.channels)
            .await?,
        author_ids: resolve::authors(&state.db, &q.from).await?,
        extensions: q.ext.clone(),
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    Ok((q, scope, page))
}

pub async fn posts(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(p): Query<SearchParams>,
) -> Result<Json<Results<PostHit>>, AppError> {
    let (q, scope, page) = prepare(&state, &user, &p, false).await?;
    Ok(Json(posts::search(&state.db, &q, &scope, page).await?))
}

pub async fn files(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(p): Query<SearchParams>,
) -> Result<Json<Results<FileHit>>, AppError> {
    let (q, scope, page) = prepare(&state, &user, &p, true).await?;
    Ok(Json(files::search(&state.db, &q, &scope, page).await?))
}
