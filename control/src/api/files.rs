//! Uploads (`POST /channels/{id}/files`, multipart/form-data, one or more
//! parts named `files`), the checks a post's `file_ids` pass, and
//! short-lived download links. Downloads are in [`super::download`].
//!
//! An upload streams each part to the object store under the size limit
//! (never whole in memory, but for images up to the thumbnail limit),
//! reading its type from its first bytes; the rows are inserted only when
//! every part is stored, and a refused or failed request deletes what it
//! stored. See [`crate::files`] for why this order loses nothing.

use std::io;

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use signaling::events::FileInfo;

use super::access::member_channel;
use super::auth::Client;
use super::download::readable_file;
use super::json::{Json, created};
use crate::AppState;
use crate::audit::{self, Actor};
use crate::auth::CurrentUser;
use crate::db::files::{self, NewFile};
use crate::db::new_id;
use crate::error::AppError;
use crate::files::{Part, kind, name, object_key, thumbnail};
use crate::storage::{
    ByteStream, DownloadHeaders, ObjectKey, PutOptions, StorageError, bytes_stream,
};

/// The form field each file is sent in.
pub const FILES_FIELD: &str = "files";
/// Chunks buffered between the request body and the store.
const PIPE_CHUNKS: usize = 4;

#[derive(Serialize)]
pub struct Uploaded {
    pub file_infos: Vec<FileInfo>,
}

fn reject(state: &AppState, reason: &str, e: AppError) -> AppError {
    state
        .metrics
        .file_rejects
        .with_label_values(&[reason])
        .inc();
    e
}

fn bad(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::refused(StatusCode::BAD_REQUEST, code, message)
}

fn multipart_error(state: &AppState, e: &MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        reject(state, "too_large", AppError::PayloadTooLarge)
    } else {
        reject(
            state,
            "malformed",
            bad(
                "invalid_multipart",
                format!("malformed multipart body: {}", e.body_text()),
            ),
        )
    }
}

fn too_large(state: &AppState, file: &str, limit: u64) -> AppError {
    reject(
        state,
        "too_large",
        AppError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{file:?} is larger than the limit of {limit} bytes"),
        ),
    )
}

/// The route's body limit: every file at its largest, plus the form's own
/// bytes (boundaries and part headers).
pub fn body_limit(state: &AppState) -> usize {
    let f = &state.config.files;
    usize::try_from(f.max_file_bytes.saturating_mul(f.max_files_per_post as u64))
        .unwrap_or(usize::MAX)
        .saturating_add(64 << 10)
}

pub async fn upload(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(channel_id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AppError> {
    // Access first: an outsider's body is never read, let alone stored.
    member_channel(&state, &user, &channel_id).await?;
    let max = state.config.files.max_file_bytes;
    let file_infos = store_upload(&state, &client, &user, &channel_id, multipart, max).await?;
    Ok(created(Uploaded { file_infos }))
}

/// Stores every file part of an upload into `channel_id` for `user` (who
/// was allowed to), each at most `max_file_bytes`: their records exist,
/// not yet attached to a post. On any refusal nothing stays behind.
pub async fn store_upload(
    state: &AppState,
    client: &Client,
    user: &CurrentUser,
    channel_id: &str,
    multipart: Result<Multipart, MultipartRejection>,
    max_file_bytes: u64,
) -> Result<Vec<FileInfo>, AppError> {
    let state = state.clone();
    let mut multipart = multipart.map_err(|_| {
        reject(
            &state,
            "malformed",
            AppError::refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the files as multipart/form-data, each in a part named \"files\"",
            ),
        )
    })?;
    let mut stored: Vec<ObjectKey> = Vec::new();
    let mut new_files: Vec<NewFile> = Vec::new();
    let result: Result<(), AppError> = async {
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(&state, &e))?
        {
            if field.name() != Some(FILES_FIELD) {
                return Err(reject(
                    &state,
                    "malformed",
                    bad(
                        "invalid_multipart",
                        format!(
                            "unexpected form field {:?}: send each file in a part named \"{FILES_FIELD}\"",
                            field.name().unwrap_or("")
                        ),
                    ),
                ));
            }
            let max = state.config.files.max_files_per_post;
            if new_files.len() == max {
                return Err(reject(
                    &state,
                    "too_many",
                    bad("too_many_files", format!("at most {max} files per upload")),
                ));
            }
            let raw_name = field.file_name().ok_or_else(|| {
                reject(
                    &state,
                    "name",
                    bad("invalid_file_name", "the part has no file name (filename=\"…\")"),
                )
            })?;
            let file_name = name::normalise(raw_name)
                .map_err(|m| reject(&state, "name", bad("invalid_file_name", m)))?;
            let to = Destination {
                channel_id,
                user_id: user.id(),
                max_bytes: max_file_bytes,
            };
            let f = store_one(&state, &mut field, file_name, &to, &mut stored)
                .await?;
            new_files.push(f);
        }
        if new_files.is_empty() {
            return Err(reject(
                &state,
                "malformed",
                bad(
                    "invalid_multipart",
                    format!("no file in the request: send each in a part named \"{FILES_FIELD}\""),
                ),
            ));
        }
        files::insert(&state.db, &new_files).await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // Best effort: what is left is an orphan the cleanup job removes.
        for key in &stored {
            if let Err(err) = state.store.delete(key).await {
                tracing::warn!(%key, error = %err, "could not remove a refused upload's object");
            }
        }
        return Err(e);
    }
    let actor = Actor {
        user_id: user.id(),
        username: &user.user.username,
        ip: &client.ip,
    };
    for f in &new_files {
        state.metrics.files_uploaded.inc();
        state
            .metrics
            .file_bytes_uploaded
            .inc_by(f.info.size.max(0) as u64);
        audit::record(
            "file_upload",
            &actor,
            "success",
            &format!(
                "file {} in channel {}: {} bytes of {}",
                f.info.id, channel_id, f.info.size, f.info.mime_type
            ),
        );
    }
    Ok(new_files.into_iter().map(|f| f.info).collect())
}

/// Where an upload's parts go, and how large each may be.
struct Destination<'a> {
    channel_id: &'a str,
    user_id: &'a str,
    max_bytes: u64,
}

/// Streams one part to the store (and its thumbnails), recording each key
/// in `stored` as soon as it exists.
async fn store_one(
    state: &AppState,
    field: &mut Field<'_>,
    file_name: String,
    to: &Destination<'_>,
    stored: &mut Vec<ObjectKey>,
) -> Result<NewFile, AppError> {
    let limits = &state.config.files;
    // The first bytes decide the type before anything is stored.
    let mut head = BytesMut::new();
    let mut ended = false;
    while head.len() < kind::SNIFF_BYTES {
        match field
            .chunk()
            .await
            .map_err(|e| multipart_error(state, &e))?
        {
            Some(c) => head.extend_from_slice(&c),
            None => {
                ended = true;
                break;
            }
        }
    }
    if head.is_empty() {
        return Err(reject(
            state,
            "empty",
            bad("empty_file", format!("{file_name:?} is empty")),
        ));
    }
    if head.len() as u64 > to.max_bytes {
        return Err(too_large(state, &file_name, to.max_bytes));
    }
    let mime = kind::sniff(&head[..head.len().min(kind::SNIFF_BYTES)]);
    kind::check(&mime, &limits.allowed_types, &limits.blocked_types).map_err(|m| {
        reject(
            state,
            "type",
            AppError::refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "file_type_not_allowed",
                format!("{file_name:?}: {m}"),
            ),
        )
    })?;

    let id = new_id();
    let key = object_key(&state.config, &id, Part::Original).map_err(AppError::internal)?;
    let keep_image = kind::has_thumbnail_codec(&mime);
    let image_limit = limits.thumbnail_max_source_bytes;
    // The request's chunks go through a small channel into the store's
    // upload, so a part is never held whole (images up to the thumbnail
    // limit excepted).
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(PIPE_CHUNKS);
    let body: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let head = head.freeze();
    let mut image = (keep_image && head.len() as u64 <= image_limit).then(|| head.to_vec());
    let feed = async move {
        if tx.send(Ok(head)).await.is_err() || ended {
            return Ok(image);
        }
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    if let Some(buf) = image.as_mut() {
                        if (buf.len() + c.len()) as u64 <= image_limit {
                            buf.extend_from_slice(&c);
                        } else {
                            image = None;
                        }
                    }
                    if tx.send(Ok(c)).await.is_err() {
                        // The store stopped reading (over the limit): its
                        // error is the one to report.
                        return Ok(None);
                    }
                }
                Ok(None) => return Ok(image),
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.body_text()))).await;
                    return Err(e);
                }
            }
        }
    };
    let opts = PutOptions {
        max_size: to.max_bytes,
        content_type: Some(mime.clone()),
    };
    let (fed, put) = tokio::join!(feed, state.store.put(&key, body, &opts));
    let (image, size) = match (fed, put) {
        (Err(e), put) => {
            if put.is_ok() {
                stored.push(key);
            }
            return Err(multipart_error(state, &e));
        }
        (Ok(_), Err(StorageError::TooLarge { .. })) => {
            return Err(too_large(state, &file_name, to.max_bytes));
        }
        (Ok(_), Err(e)) => return Err(AppError::internal(e)),
        (Ok(image), Ok(meta)) => {
            stored.push(key.clone());
            (image, meta.size)
        }
    };

    let mut new = NewFile {
        info: FileInfo {
            id: id.clone(),
            channel_id: to.channel_id.to_owned(),
            user_id: to.user_id.to_owned(),
            post_id: None,
            name: file_name,
            mime_type: mime,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            width: None,
            height: None,
            has_thumbnail: false,
            created_at: state.clock.now_ms(),
        },
        storage_key: key.to_string(),
        thumbnail_key: None,
        preview_key: None,
    };
    if let Some(bytes) = image {
        let max_pixels = limits.thumbnail_max_pixels;
        let made = tokio::task::spawn_blocking(move || thumbnail::make(&bytes, max_pixels))
            .await
            .map_err(AppError::internal)?;
        match made {
            Ok(t) => {
                let thumb =
                    object_key(&state.config, &id, Part::Thumbnail).map_err(AppError::internal)?;
                let preview =
                    object_key(&state.config, &id, Part::Preview).map_err(AppError::internal)?;
                for (k, data) in [(&thumb, t.thumbnail), (&preview, t.preview)] {
                    let opts = PutOptions {
                        max_size: u64::MAX,
                        content_type: Some("image/jpeg".into()),
                    };
                    state
                        .store
                        .put(k, bytes_stream(data), &opts)
                        .await
                        .map_err(AppError::internal)?;
                    stored.push(k.clone());
                }
                new.info.width = Some(i64::from(t.width));
                new.info.height = Some(i64::from(t.height));
                new.info.has_thumbnail = true;
                new.thumbnail_key = Some(thumb.to_string());
                new.preview_key = Some(preview.to_string());
            }
            // Still a file members can download; it just has no picture.
            Err(e) => tracing::info!(file = %id, error = %e, "no thumbnail"),
        }
    }
    Ok(new)
}

/// Checks a new post's `file_ids` before its transaction (which checks
/// again): each names an upload of `user` in `channel_id`, not yet
/// attached. An id of a file elsewhere is answered like an unknown one.
pub async fn check_attachable(
    state: &AppState,
    user_id: &str,
    channel_id: &str,
    ids: &[String],
) -> Result<(), AppError> {
    let max = state.config.files.max_files_per_post;
    if ids.len() > max {
        return Err(bad(
            "too_many_files",
            format!("a post has at most {max} files"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(bad("bad_request", format!("file {id:?} is named twice")));
        }
    }
    let found = files::by_ids(&state.db, ids).await?;
    for id in ids {
        let f = found
            .iter()
            .find(|f| &f.info.id == id && f.info.channel_id == channel_id && !f.gone);
        match f {
            None => {
                return Err(bad(
                    "invalid_file_id",
                    format!("file_ids: {id:?} names no upload in this channel"),
                ));
            }
            Some(f) if f.info.user_id != user_id => {
                return Err(AppError::refused(
                    StatusCode::FORBIDDEN,
                    "file_not_yours",
                    format!("file_ids: {id:?} was uploaded by someone else"),
                ));
            }
            Some(f) if f.info.post_id.is_some() => {
                return Err(bad(
                    "file_already_attached",
                    format!("file_ids: {id:?} is already attached to a post"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub struct Link {
    pub url: String,
    pub expires_at: i64,
}

/// `GET /files/{id}/link`: a URL that downloads the file without other
/// credentials for `storage.link_ttl_secs`. From S3 a presigned URL (the
/// store sends the download headers); from the local store a signed URL
/// of this API (see [`crate::files::link`]).
pub async fn link(
    State(state): State<AppState>,
    client: Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Link>, AppError> {
    let f = readable_file(&state, &user, &id).await?;
    let ttl = state.config.storage.link_ttl_secs;
    let expires_at = state.clock.now_ms() + i64::try_from(ttl * 1000).unwrap_or(i64::MAX);
    let key = ObjectKey::new(f.storage_key.as_str()).map_err(AppError::internal)?;
    let headers = DownloadHeaders {
        content_type: Some(f.info.mime_type.clone()),
        content_disposition: Some(name::content_disposition("attachment", &f.info.name)),
    };
    let presigned = state
        .store
        .presign_download(&key, std::time::Duration::from_secs(ttl), &headers)
        .await
        .map_err(AppError::internal)?;
    let url = match presigned {
        Some(url) => url,
        None => format!(
            "/api/v1/files/{id}/content?expires={expires_at}&signature={}",
            state.links.sign(&id, expires_at)
        ),
    };
    audit::record(
        "file_link",
        &Actor {
            user_id: user.id(),
            username: &user.user.username,
            ip: &client.ip,
        },
        "success",
        &format!("file {id}, valid {ttl} s"),
    );
    state
        .metrics
        .file_downloads
        .with_label_values(&["link"])
        .inc();
    Ok(Json(Link { url, expires_at }))
}
