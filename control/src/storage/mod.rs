//! Object storage: files, recordings and transcripts live here, behind one
//! trait ([`ObjectStore`]) with two implementations:
//!
//! - [`LocalStore`]: a directory on this node (the single-node default).
//!   Writes go to a temporary file and are renamed into place, so a reader
//!   or a crash never sees half an object.
//! - [`S3Store`]: any S3-compatible store (AWS, SeaweedFS, Garage, MinIO,
//!   Ceph…) through `aws-sdk-s3`: custom endpoint, path-style addressing,
//!   static credentials, multipart uploads above a threshold, presigned GET
//!   URLs.
//!
//! Keys are validated [`ObjectKey`]s: `/`-separated segments of a
//! conservative alphabet, no empty, `.` or `..` segment and no segment
//! starting with a dot. The local store builds paths segment by segment
//! from a validated key and never joins a raw string, so a key cannot
//! leave its root.
//!
//! Uploads are idempotent when asked ([`ObjectStore::put_idempotent`]):
//! keyed by the caller (a retried upload with the same key is a no-op) or by
//! content (the key is the SHA-256 of the bytes). Objects that nothing
//! references any more are removed by [`delete_orphans`], which a periodic
//! job calls with the set of keys the database still points at.

mod key;
mod local;
mod s3;

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub use key::ObjectKey;
pub use local::LocalStore;
pub use s3::{MIN_PART_SIZE, S3Config, S3Store};

/// A stream of body chunks, as uploads arrive and downloads leave.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// A whole body known up front, as a [`ByteStream`].
pub fn bytes_stream(data: impl Into<Bytes>) -> ByteStream {
    let data = data.into();
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

/// Reads a whole [`ByteStream`] into memory, refusing more than `limit`
/// bytes. For tests and small objects.
pub async fn collect(mut body: ByteStream, limit: u64) -> Result<Bytes, StorageError> {
    use futures_util::StreamExt as _;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(StorageError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("no object {0}")]
    NotFound(String),
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("byte range not satisfiable")]
    InvalidRange,
    /// The local store cannot hold both `a/b` and `a/b/c` (a file and a
    /// folder of the same name); S3 can.
    #[error("key {0} clashes with another object's path on disk")]
    Conflict(String),
    /// The upload's own body failed (the client went away, a read error):
    /// nothing was stored.
    #[error("upload body failed: {0}")]
    Body(io::Error),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("S3 {op} failed: {message}")]
    S3 { op: &'static str, message: String },
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    pub last_modified: SystemTime,
    /// The S3 ETag (quotes stripped); `None` for the local store. A
    /// multipart upload's ends in `-<parts>`.
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

/// Bytes `start..end` of an object (`end` exclusive; `None` = to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    pub fn new(start: u64, end: u64) -> Self {
        ByteRange {
            start,
            end: Some(end),
        }
    }
    pub fn from(start: u64) -> Self {
        ByteRange { start, end: None }
    }

    /// The concrete `start..end` within an object of `size` bytes; an empty
    /// or out-of-bounds range is refused (as HTTP 416 would).
    pub fn resolve(&self, size: u64) -> Result<(u64, u64)> {
        let end = self.end.unwrap_or(size).min(size);
        if self.start >= end {
            return Err(StorageError::InvalidRange);
        }
        Ok((self.start, end))
    }
}

/// A download: the object's metadata, the bytes actually served
/// (`start..end`) and the body.
pub struct GetObject {
    pub meta: ObjectMeta,
    pub range: (u64, u64),
    pub body: ByteStream,
}

impl std::fmt::Debug for GetObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetObject")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct PutOptions {
    /// Refuse the upload (storing nothing) once it passes this many bytes.
    pub max_size: u64,
    pub content_type: Option<String>,
}

impl PutOptions {
    pub fn limit(max_size: u64) -> Self {
        PutOptions {
            max_size,
            content_type: None,
        }
    }
}

/// How an idempotent upload is keyed.
#[derive(Debug, Clone)]
pub enum IdempotencyKey {
    /// The caller's key: when an object already exists there, the upload is
    /// not stored again and the existing object is returned. The caller
    /// promises that one key always means one content (e.g. an upload id
    /// generated once and retried).
    Caller(ObjectKey),
    /// The key is `<prefix><sha256 hex of the bytes>` (write the prefix with
    /// its trailing `/`); the same bytes are stored once.
    Content { prefix: String },
}

#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub meta: ObjectMeta,
    /// False when the object was already there (a retry, or the same
    /// content uploaded before).
    pub created: bool,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `key`, replacing any object there. The body is
    /// streamed (S3: in parts above the multipart threshold), never held
    /// whole in memory. Nothing becomes visible unless the whole body
    /// arrived within `opts.max_size`; a failed upload leaves nothing
    /// behind (temporary file removed, multipart upload aborted).
    async fn put(&self, key: &ObjectKey, body: ByteStream, opts: &PutOptions)
    -> Result<ObjectMeta>;

    /// Like [`put`](Self::put), but safe to retry: see [`IdempotencyKey`].
    async fn put_idempotent(
        &self,
        key: &IdempotencyKey,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutOutcome>;

    /// The object, or bytes `range` of it. `NotFound` when absent,
    /// `InvalidRange` when the range lies outside it.
    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<GetObject>;

    /// `None` when there is no object at `key`.
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>>;

    /// Removes the object; removing an absent object is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Every object whose key starts with `prefix` (a plain string prefix,
    /// as in S3: `a/b` matches `a/b/c` and `a/bc`), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// A URL that lets anyone holding it GET the object for `expires_in`
    /// without other credentials. `None` when the store cannot make one
    /// (the local store): stream the object through the API instead.
    async fn presign_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>>;

    /// Like [`presign_get`](Self::presign_get), but the store answers with
    /// these response headers (S3's `response-content-*` overrides, which
    /// the signature covers), so a browser saves the file under its name
    /// instead of rendering it.
    async fn presign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        headers: &DownloadHeaders,
    ) -> Result<Option<String>> {
        let _ = headers;
        self.presign_get(key, expires_in).await
    }
}

/// Response headers a presigned download asks the store to send.
#[derive(Debug, Clone, Default)]
pub struct DownloadHeaders {
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
}

/// What [`delete_orphans`] did.
#[derive(Debug, Default, Clone)]
pub struct CleanupReport {
    /// Deleted: older than the cutoff and not referenced.
    pub deleted: Vec<ObjectKey>,
    /// Unreferenced but newer than the cutoff (an upload whose database row
    /// may not be committed yet): left for a later run.
    pub too_recent: usize,
    pub referenced: usize,
}

/// Deletes the objects under `prefix` that were last modified before
/// `older_than` and whose key is not in `referenced`.
///
/// The age cutoff is what makes this safe to run while uploads happen: an
/// object is written before the row that references it is committed, so a
/// young unreferenced object may be one whose row is on its way. Pick a
/// cutoff well beyond the longest upload-to-commit time (an hour, say).
pub async fn delete_orphans(
    store: &dyn ObjectStore,
    prefix: &str,
    older_than: SystemTime,
    referenced: &HashSet<ObjectKey>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    for obj in store.list(prefix).await? {
        if referenced.contains(&obj.key) {
            report.referenced += 1;
        } else if obj.last_modified >= older_than {
            report.too_recent += 1;
        } else {
            store.delete(&obj.key).await?;
            tracing::info!(key = %obj.key, size = obj.size, "deleted orphaned object");
            report.deleted.push(obj.key);
        }
    }
    Ok(report)
}

/// Lowercase hex SHA-256, as content keys use.
pub(crate) struct Sha256(aws_lc_rs::digest::Context);

impl Sha256 {
    pub(crate) fn new() -> Self {
        Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub(crate) fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

/// The content key under `prefix` for a body with this hex digest.
pub(crate) fn content_key(prefix: &str, digest_hex: &str) -> Result<ObjectKey> {
    ObjectKey::new(format!("{prefix}{digest_hex}"))
}

/// Validates a listing prefix: empty, or a key-like string (it may end
/// with `/`, and its last segment may be partial).
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    ObjectKey::new(trimmed)
        .map(|_| ())
        .map_err(|_| StorageError::InvalidKey(prefix.to_owned()))
}
