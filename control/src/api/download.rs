//! Downloads: `GET /files/{id}` (the file, streamed, with `Range`),
//! `/files/{id}/thumbnail` and `/preview` (JPEG), and the credential-free
//! `/files/{id}/content?expires=…&signature=…` that a link names.
//!
//! Who may download: members of the file's channel, once the file is
//! attached to a live post; before that, only its uploader. Anything else
//! is 404, like an unknown id (an open channel the user has not joined is
//! 403 `not_a_member`, as for its posts).
//!
//! What a browser is told: `Content-Disposition: attachment` with the
//! file's name, `X-Content-Type-Options: nosniff` and a CSP that runs
//! nothing, so an uploaded HTML or SVG file can never execute as our
//! origin.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;

use super::access::member_channel;
use super::json::Query;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::DbError;
use crate::db::files::{self, FileRow};
use crate::error::AppError;
use crate::files::name;
use crate::storage::{ByteRange, ObjectKey, StorageError};

/// Nothing in a served file runs, loads or frames anything.
pub const FILE_CSP: &str = "default-src 'none'; sandbox";

/// The file if `user` may download it.
pub async fn readable_file(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
) -> Result<FileRow, AppError> {
    let f = match files::get(&state.db, id).await {
        Ok(f) => f,
        Err(DbError::NotFound) => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    member_channel(state, user, &f.info.channel_id).await?;
    if f.gone || (f.info.post_id.is_none() && f.info.user_id != user.id()) {
        return Err(AppError::NotFound);
    }
    Ok(f)
}

/// A single `bytes=` range; `None` for no header or one we do not honour
/// (several ranges, another unit, bad syntax), which RFC 9110 lets a
/// server answer with the whole body.
fn parse_range(headers: &HeaderMap, size: u64) -> Option<Result<ByteRange, ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last n bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        ByteRange::from(size.saturating_sub(n))
    } else {
        let start: u64 = a.parse().ok()?;
        if b.is_empty() {
            ByteRange::from(start)
        } else {
            let last: u64 = b.parse().ok()?;
            if last < start {
                return None;
            }
            ByteRange::new(start, last.saturating_add(1))
        }
    };
    Some(range.resolve(size).map(|_| range).map_err(|_| ()))
}

/// Streams object `key` with the safe headers; `disposition` is
/// `attachment` for the file itself, `inline` for pictures we rendered.
async fn serve(
    state: &AppState,
    key: &str,
    mime: &str,
    disposition: &str,
    file_name: &str,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let key = ObjectKey::new(key).map_err(AppError::internal)?;
    let size = match state.store.head(&key).await.map_err(AppError::internal)? {
        Some(m) => m.size,
        // The row outlived its object: only a manual deletion does that.
        None => {
            tracing::error!(%key, "a file row names a missing object");
            return Err(AppError::NotFound);
        }
    };
    let range = match parse_range(headers, size) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(())) => {
            let mut resp = AppError::refused(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range lies outside the file's {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let got = match state.store.get(&key, range).await {
        Ok(g) => g,
        Err(StorageError::NotFound(_)) => return Err(AppError::NotFound),
        Err(e) => return Err(AppError::internal(e)),
    };
    let (start, end) = got.range;
    let mut b = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, FILE_CSP)
        .header(header::CACHE_CONTROL, "private, no-cache");
    if range.is_some() {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", end - 1, got.meta.size),
        );
    }
    let ct = HeaderValue::from_str(mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let cd = HeaderValue::from_str(&name::content_disposition(disposition, file_name))
        .map_err(AppError::internal)?;
    b.header(header::CONTENT_TYPE, ct)
        .header(header::CONTENT_DISPOSITION, cd)
        .body(Body::from_stream(got.body))
        .map_err(AppError::internal)
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let f = readable_file(&state, &user, &id).await?;
    let resp = serve(
        &state,
        &f.storage_key,
        &f.info.mime_type,
        "attachment",
        &f.info.name,
        &headers,
    )
    .await?;
    count(&state, "original");
    Ok(resp)
}

fn count(state: &AppState, part: &str) {
    state
        .metrics
        .file_downloads
        .with_label_values(&[part])
        .inc();
}

async fn picture(
    state: AppState,
    user: CurrentUser,
    id: String,
    headers: HeaderMap,
    preview: bool,
) -> Result<Response, AppError> {
    let f = readable_file(&state, &user, &id).await?;
    let (key, part) = if preview {
        (f.preview_key, "preview")
    } else {
        (f.thumbnail_key, "thumbnail")
    };
    let Some(key) = key else {
        return Err(AppError::refused(
            StatusCode::NOT_FOUND,
            "no_thumbnail",
            "this file has no thumbnail or preview (not an image control can read)",
        ));
    };
    let stem = f
        .info
        .name
        .rsplit_once('.')
        .map_or(f.info.name.as_str(), |(s, _)| s);
    let resp = serve(
        &state,
        &key,
        "image/jpeg",
        "inline",
        &format!("{stem}_{part}.jpg"),
        &headers,
    )
    .await?;
    count(&state, part);
    Ok(resp)
}

pub async fn thumbnail(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    picture(state, user, id, headers, false).await
}

pub async fn preview(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    picture(state, user, id, headers, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub expires: i64,
    pub signature: String,
}

/// A signed link from `GET /files/{id}/link` (local store). The signature
/// is the credential; an expired or altered link is 403 `link_invalid`.
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    if q.expires < now || !state.links.verify(&id, q.expires, &q.signature) {
        return Err(AppError::refused(
            StatusCode::FORBIDDEN,
            "link_invalid",
            "the download link has expired or is not valid",
        ));
    }
    let f = match files::get(&state.db, &id).await {
        Ok(f) if !f.gone => f,
        Ok(_) | Err(DbError::NotFound) => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let resp = serve(
        &state,
        &f.storage_key,
        &f.info.mime_type,
        "attachment",
        &f.info.name,
        &headers,
    )
    .await?;
    count(&state, "original");
    Ok(resp)
}
