use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::{
    ByteRange, ByteStream, GetObject, IdempotencyKey, ObjectKey, ObjectMeta, ObjectStore,
    PutOptions, PutOutcome, Result, Sha256, StorageError, check_prefix, content_key,
};

/// Uploads in progress live here, inside the root so that the final rename
/// stays on one file system. Keys cannot start with a dot, so no object can
/// ever be named like it.
const TMP_DIR: &str = ".tmp";
/// Temporary files this old at start-up belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);
const READ_CHUNK: usize = 64 * 1024;

/// Objects as files under one directory. `a/b/c` is the file `root/a/b/c`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes
    /// temporary files left by a crashed upload.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp).await?;
        let store = LocalStore { root, tmp };
        store.remove_stale_temp_files(STALE_TMP).await?;
        Ok(store)
    }

    /// A store rooted at `root` without touching the disk (no stale-file
    /// sweep): folders are made by the first upload. For building an app
    /// synchronously; prefer [`open`](Self::open) at start-up.
    pub fn lazy(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        LocalStore { root, tmp }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary upload files older than `age`; returns how many.
    pub async fn remove_stale_temp_files(&self, age: Duration) -> Result<usize> {
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(&self.tmp).await?;
        let now = SystemTime::now();
        while let Some(entry) = dir.next_entry().await? {
            let modified = entry.metadata().await?.modified()?;
            if now.duration_since(modified).unwrap_or_default() >= age {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// The file for `key`, built one validated segment at a time.
    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        for seg in key.segments() {
            path.push(seg);
        }
        path
    }

    /// Writes `body` to a new temporary file, within `max_size`; returns it
    /// with its size and (if asked) its SHA-256.
    async fn spool(
        &self,
        mut body: ByteStream,
        max_size: u64,
        hash: bool,
    ) -> Result<(TempFile, u64, Option<String>)> {
        let temp = TempFile(self.tmp.join(format!(
            "{:016x}{:016x}.part",
            rand::random::<u64>(),
            rand::random::<u64>()
        )));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = match options.open(&temp.0).await {
            Ok(f) => f,
            // A lazily built store makes its folder on first use.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(&self.tmp).await?;
                options.open(&temp.0).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut hasher = hash.then(Sha256::new);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(StorageError::TooLarge { limit: max_size });
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        Ok((temp, size, hasher.map(Sha256::finish_hex)))
    }

    /// Moves a finished temporary file to `key`. With `replace` false an
    /// existing object wins and `Ok(false)` is returned (atomically: a hard
    /// link refuses to overwrite).
    async fn commit(&self, temp: TempFile, key: &ObjectKey, replace: bool) -> Result<bool> {
        let path = self.path_of(key);
        let parent = path.parent().expect("a key path has a parent").to_owned();
        if let Err(e) = tokio::fs::create_dir_all(&parent).await {
            return Err(match e.kind() {
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => {
                    StorageError::Conflict(key.to_string())
                }
                _ => e.into(),
            });
        }
        if tokio::fs::metadata(&path)
            .await
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            return Err(StorageError::Conflict(key.to_string()));
        }
        let created = if replace {
            tokio::fs::rename(&temp.0, &path).await?;
            true
        } else {
            match tokio::fs::hard_link(&temp.0, &path).await {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e.into()),
            }
        };
        drop(temp);
        // The rename is durable only once the directory entry is on disk.
        if let Ok(dir) = tokio::fs::File::open(&parent).await {
            let _ = dir.sync_all().await;
        }
        Ok(created)
    }

    async fn meta_of(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(m) if m.is_file() => Ok(Some(meta(key.clone(), &m)?)),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn meta(key: ObjectKey, m: &std::fs::Metadata) -> io::Result<ObjectMeta> {
    Ok(ObjectMeta {
        key,
        size: m.len(),
        last_modified: m.modified()?,
        etag: None,
        content_type: None,
    })
}

/// A temporary upload file, removed unless it was moved into place.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a rename the file is gone and this fails harmlessly; after a
        // hard link (or an error) this removes the temporary name.
        let _ = std::fs::remove_file(&self.0);
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<ObjectMeta> {
        let (temp, _, _) = self.spool(body, opts.max_size, false).await?;
        self.commit(temp, key, true).await?;
        self.meta_of(key)
            .await?
            .ok_or_else(|| StorageError::NotFound(key.to_string()))
    }

    async fn put_idempotent(
        &self,
        key: &IdempotencyKey,
        body: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutOutcome> {
        let (temp, key) = match key {
            IdempotencyKey::Caller(key) => {
                // A retry of a finished upload: do not even read the body.
                if let Some(meta) = self.meta_of(key).await? {
                    return Ok(PutOutcome {
                        meta,
                        created: false,
                    });
                }
                let (temp, _, _) = self.spool(body, opts.max_size, false).await?;
                (temp, key.clone())
            }
            IdempotencyKey::Content { prefix } => {
                check_prefix(prefix)?;
                let (temp, _, digest) = self.spool(body, opts.max_size, true).await?;
                (temp, content_key(prefix, &digest.expect("hashed"))?)
            }
        };
        let created = self.commit(temp, &key, false).await?;
        let meta = self
            .meta_of(&key)
            .await?
            .ok_or_else(|| StorageError::NotFound(key.to_string()))?;
        Ok(PutOutcome { meta, created })
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<GetObject> {
        let path = self.path_of(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let m = file.metadata().await?;
        if !m.is_file() {
            return Err(StorageError::NotFound(key.to_string()));
        }
        let meta = meta(key.clone(), &m)?;
        let (start, end) = match range {
            Some(r) => r.resolve(meta.size)?,
            None => (0, meta.size),
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        let body =
            futures_util::stream::try_unfold((file, end - start), |(mut file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let mut buf = BytesMut::with_capacity(READ_CHUNK.min(left as usize));
                let n = file.read_buf(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object shrank while being read",
                    ));
                }
                Ok(Some((buf.freeze(), (file, left - n as u64))))
            });
        Ok(GetObject {
            meta,
            range: (start, end),
            body: Box::pin(body),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>> {
        self.meta_of(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // Remove folders the object leaves empty (a non-empty one stops it).
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(prefix)?;
        // Walk only the folder the prefix's complete segments name.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut start = self.root.clone();
        if !dir_part.is_empty() {
            for seg in dir_part.split('/') {
                start.push(seg);
            }
        }
        let prefix = prefix.to_owned();
        let dir_part = dir_part.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&start, &dir_part, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))?
    }

    async fn presign_get(&self, _key: &ObjectKey, _expires_in: Duration) -> Result<Option<String>> {
        Ok(None)
    }
}

fn walk(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') {
            continue; // the temporary folder, or anything not ours
        }
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        // Prune folders that cannot hold a match.
        if !(key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"))) {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), &key, prefix, out)?;
        } else if ft.is_file()
            && let Ok(k) = ObjectKey::new(key)
        {
            out.push(meta(k, &entry.metadata()?)?);
        }
    }
    Ok(())
}
