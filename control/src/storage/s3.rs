use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{
    ByteRange, ByteStream, GetObject, IdempotencyKey, ObjectKey, ObjectMeta, ObjectStore,
    PutOptions, PutOutcome, Result, Sha256, StorageError, check_prefix, content_key,
};

/// S3 refuses multipart parts below 5 MiB (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Presigned URLs live at most 7 days (SigV4's limit).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where and how to reach an S3-compatible store.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:18333` or `https://s3.example.org`; absent
    /// means AWS itself (the region's endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key`: what
    /// self-hosted stores need. On by default.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Bodies up to this size go in one PUT; larger ones in parts of this
    /// size (at least 5 MiB). One part is buffered per upload.
    #[serde(default = "default_part_size")]
    pub part_size: usize,
    /// Content-keyed uploads are hashed into a temporary file here before
    /// they are sent (default: the system's temporary folder).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("spool_dir", &self.spool_dir)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_part_size() -> usize {
    8 * 1024 * 1024
}

impl S3Config {
    pub fn new(
        endpoint: Option<String>,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        S3Config {
            endpoint,
            region: default_region(),
            bucket: bucket.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            path_style: true,
            part_size: default_part_size(),
            spool_dir: None,
        }
    }
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// Objects in one bucket of an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    part_size: usize,
    spool_dir: PathBuf,
}

impl S3Store {
    /// Builds the client; does not contact the store (see
    /// [`ensure_bucket`](Self::ensure_bucket)).
    pub fn new(config: &S3Config) -> Result<Self> {
        if config.part_size < MIN_PART_SIZE {
            return Err(StorageError::Config(format!(
                "part_size must be at least {MIN_PART_SIZE} bytes"
            )));
        }
        if config.bucket.is_empty() {
            return Err(StorageError::Config("bucket is empty".into()));
        }
        let credentials = Credentials::new(
            &config.access_key_id,
            &config.secret_access_key,
            None,
            None,
            "enclave-config",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(config.path_style)
            // Checksums only where the API requires them: many S3-compatible
            // stores refuse or mishandle the newer default CRC trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            part_size: config.part_size,
            spool_dir: config.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket when it does not exist.
    pub async fn ensure_bucket(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(s3_error("HeadBucket", e)),
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_error("CreateBucket", e)),
        }
    }

    /// Multipart uploads under `prefix` that were started and never
    /// completed or aborted (they hold storage but are not objects).
    pub async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            for u in resp.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(PendingUpload {
                        key: key.to_owned(),
                        upload_id: id.to_owned(),
                        initiated: u.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if resp.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = resp.next_key_marker().map(str::to_owned);
            id_marker = resp.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// Aborts multipart uploads under `prefix` started before `older_than`
    /// (left by a process that died mid-upload); returns how many.
    pub async fn abort_stale_uploads(&self, prefix: &str, older_than: SystemTime) -> Result<usize> {
        let mut n = 0;
        for u in self.pending_uploads(prefix).await? {
            if u.initiated.is_some_and(|t| t < older_than) {
                abort(&self.client, &self.bucket, &u.key, &u.upload_id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Streams `body` to `key`: one PUT when it fits in a part, otherwise a
    /// multipart upload that is aborted on any failure.
    async fn upload(&self, key: &ObjectKey, mut body: ByteStream, opts: &PutOptions) -> Result<()> {
        let mut buf = BytesMut::new();
        let mut total = 0u64;
        let mut ended = false;
        // Fill the first part; a body that ends within it is a single PUT.
        while buf.len() <= self.part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(StorageError::Body)?;
                    total += chunk.len() as u64;
                    if total > opts.max_size {
                        return Err(StorageError::TooLarge {
                            limit: opts.max_size,
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .set_content_type(opts.content_type.clone())
                .content_length(buf.len() as i64)
                .body(buf.freeze().into())
                .send()
                .await
                .map_err(|e| s3_error("PutObject", e))?;
            return Ok(());
        }

        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_content_type(opts.content_type.clone())
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StorageError::S3 {
                op: "CreateMultipartUpload",
                message: "no upload id".into(),
            })?
            .to_owned();
        // Aborts the upload if this future fails or is dropped half-way.
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        let result = self
            .upload_parts(key, &upload_id, buf, total, body, opts)
            .await;
        match result {
            Ok(()) => {
                guard.upload_id = None;
                Ok(())
            }
            Err(e) => {
                if let Some(id) = guard.upload_id.take()
                    && let Err(abort_err) =
                        abort(&self.client, &self.bucket, key.as_str(), &id).await
                {
                    tracing::warn!(%key, error = %abort_err, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        mut buf: BytesMut,
        mut total: u64,
        mut body: ByteStream,
        opts: &PutOptions,
    ) -> Result<()> {
        let mut parts = Vec::new();
        let mut ended = false;
        loop {
            while !ended && buf.len() < self.part_size {
                match body.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(StorageError::Body)?;
                        total += chunk.len() as u64;
                        if total > opts.max_size {
                            return Err(StorageError::TooLarge {
                                limit: opts.max_size,
                            });
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let part: Bytes = buf.split_to(buf.len().min(self.part_size)).freeze();
            let number = parts.len() as i32 + 1;
            let resp = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .body(part.into())
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(resp.e_tag().map(str::to_owned))
                    .build(),
            );
            if ended && buf.is_empty() {
                break;
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn head_meta(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(h) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: h.content_length().unwrap_or(0).max(0) as u64,
                last_modified: time(h.last_modified()),
                etag: h.e_tag().map(unquote),
                content_type: h.content_type().map(str::to_owned),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }

    /// Hashes `body` into a temporary file; returns the file, its digest.
    async fn spool_hashed(
        &self,
        mut body: ByteStream,
        max_size: u64,
    ) -> Result<(SpoolFile, String)> {
        tokio::fs::create_dir_all(&self.spool_dir).await?;
        let path = self.spool_dir.join(format!(
            ".enclave-spool-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        ));
        let spool = SpoolFile(path);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spool.0)
            .await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(StorageError::TooLarge { limit: max_size });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok((spool, hasher.finish_hex()))
    }
}

/// Aborts a multipart upload from `Drop` when its future is cancelled.
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(id) = self.upload_id.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            rt.spawn(async move {
                if let Err(e) = abort(&client, &bucket, &key, &id).await {
                    tracing::warn!(%key, error = %e, "could not abort a cancelled multipart upload");
                }
            });
        }
    }
}

async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(s3_error("AbortMultipartUpload", e)),
    }
}

struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file_stream(file: tokio::fs::File) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(
        file,
        |mut file| async move {
            let mut buf = BytesMut::with_capacity(256 * 1024);
            let n = file.read_buf(&mut buf).await?;
            Ok::<_, io::Error>(if n == 0 {
                None
            } else {
                Some((buf.freeze(), file))
            })
        },
    ))
}

fn status<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status_code)
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn s3_error<E>(
    op: &'static str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let message = match status(&e) {
        Some(code) => format!("HTTP {code}: {}", DisplayErrorContext(&e)),
        None => DisplayErrorContext(&e).to_string(),
    };
    StorageError::S3 { op, message }
}

fn time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// `bytes a-b/total` → (a, b + 1, total).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((
        a.parse().ok()?,
        b.parse::<u64>().ok()? + 1,
        total.parse().ok()?,
    ))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.upload(key, body, opts).await?;
        self.head_meta(key)
            .await?
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }

    async fn put_idempotent(
        &self,
        key: &IdempotencyKey,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        match key {
            IdempotencyKey::Caller(key) => {
                // Not atomic across concurrent writers of one key: by the
                // contract of a caller key both write the same bytes.
                if let Some(meta) = self.head_meta(key).await? {
                    return Ok(PutOutcome {
                        meta,
                        created: false,
                    });
                }
                let meta = self.put(key, body, opts).await?;
                Ok(PutOutcome {
                    meta,
                    created: true,
                })
            }
            IdempotencyKey::Content { prefix } => {
                check_prefix(prefix)?;
                let (spool, digest) = self.spool_hashed(body, opts.max_size).await?;
                let key = content_key(prefix, &digest)?;
                if let Some(meta) = self.head_meta(&key).await? {
                    return Ok(PutOutcome {
                        meta,
                        created: false,
                    });
                }
                let file = tokio::fs::File::open(&spool.0).await?;
                let meta = self.put(&key, file_stream(file), opts).await?;
                drop(spool);
                Ok(PutOutcome {
                    meta,
                    created: true,
                })
            }
        }
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<GetObject> {
        let header = match range {
            Some(ByteRange {
                start,
                end: Some(end),
            }) if end <= start => return Err(StorageError::InvalidRange),
            Some(ByteRange {
                start,
                end: Some(end),
            }) => Some(format!("bytes={start}-{}", end - 1)),
            Some(ByteRange { start, end: None }) => Some(format!("bytes={start}-")),
            None => None,
        };
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_range(header)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if status(&e) == Some(404) => {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) if status(&e) == Some(416) => return Err(StorageError::InvalidRange),
            Err(e) => return Err(s3_error("GetObject", e)),
        };
        let length = resp.content_length().unwrap_or(0).max(0) as u64;
        let (start, end, size) = match resp.content_range().and_then(parse_content_range) {
            Some(r) => r,
            None => (0, length, length),
        };
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            last_modified: time(resp.last_modified()),
            etag: resp.e_tag().map(unquote),
            content_type: resp.content_type().map(str::to_owned),
        };
        let body = futures_util::stream::try_unfold(resp.body, |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk, body))),
                Some(Err(e)) => Err(io::Error::other(e)),
                None => Ok(None),
            }
        });
        Ok(GetObject {
            meta,
            range: (start, end),
            body: Box::pin(body),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.head_meta(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(s3_error("DeleteObject", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(prefix)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            for o in resp.contents() {
                let Some(name) = o.key() else { continue };
                let Ok(key) = ObjectKey::new(name) else {
                    tracing::debug!(key = name, "skipping an object whose key is not ours");
                    continue;
                };
                out.push(ObjectMeta {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: time(o.last_modified()),
                    etag: o.e_tag().map(unquote),
                    content_type: None,
                });
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn presign_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>> {
        let config = PresigningConfig::expires_in(expires_in.min(MAX_PRESIGN))
            .map_err(|e| StorageError::Config(format!("presign expiry: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(config)
            .await
            .map_err(|e| s3_error("presign GetObject", e))?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn presign_download(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        headers: &super::DownloadHeaders,
    ) -> Result<Option<String>> {
        let config = PresigningConfig::expires_in(expires_in.min(MAX_PRESIGN))
            .map_err(|e| StorageError::Config(format!("presign expiry: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_response_content_type(headers.content_type.clone())
            .set_response_content_disposition(headers.content_disposition.clone())
            .presigned(config)
            .await
            .map_err(|e| s3_error("presign GetObject", e))?;
        Ok(Some(req.uri().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_range() {
        assert_eq!(
            super::parse_content_range("bytes 0-9/100"),
            Some((0, 10, 100))
        );
        assert_eq!(super::parse_content_range("bytes */100"), None);
    }
}
