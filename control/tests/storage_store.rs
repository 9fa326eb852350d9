//! One suite, two stores: every test below runs against the local directory
//! store and against a real S3-compatible server (SeaweedFS, which
//! `scripts/setup` installs and starts on 127.0.0.1:18333).
//!
//! The S3 tests find the server through these variables (defaults are what
//! `scripts/setup` starts):
//!
//! | variable | default |
//! | --- | --- |
//! | `ENCLAVE_TEST_S3_ENDPOINT` | `http://127.0.0.1:18333` |
//! | `ENCLAVE_TEST_S3_ACCESS_KEY` | `enclave-test` |
//! | `ENCLAVE_TEST_S3_SECRET_KEY` | `enclave-test-secret` |
//! | `ENCLAVE_TEST_S3_BUCKET` | `enclave-test` |
//! | `ENCLAVE_TEST_S3_REGION` | `us-east-1` |
//!
//! When nothing answers there the S3 tests are skipped with a message on
//! stderr, unless `ENCLAVE_REQUIRE_SERVICES=1` (as `scripts/test` sets),
//! which makes them fail instead.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use control::storage::{
    ByteRange, ByteStream, IdempotencyKey, LocalStore, ObjectKey, ObjectStore, PutOptions, S3Store,
    StorageError, bytes_stream, collect, delete_orphans,
};
use futures_util::StreamExt as _;

const MIB: usize = 1024 * 1024;
const LIMIT: u64 = 64 * MIB as u64;

struct Fixture {
    store: Box<dyn ObjectStore>,
    /// Every test works under its own prefix, so tests share one bucket.
    prefix: String,
    s3: Option<S3Store>,
    local_root: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(format!("{}{name}", self.prefix)).unwrap()
    }
}

fn unique_prefix() -> String {
    format!("t{:016x}/", rand::random::<u64>())
}

async fn local() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("objects")).await.unwrap();
    Some(Fixture {
        local_root: Some(store.root().to_owned()),
        store: Box::new(store),
        prefix: unique_prefix(),
        s3: None,
        _dir: Some(dir),
    })
}

#[path = "common/s3.rs"]
mod s3_env;

async fn s3() -> Option<Fixture> {
    let store = S3Store::new(&s3_env::section().await?.to_store_config()).unwrap();
    Some(Fixture {
        store: Box::new(store.clone()),
        prefix: unique_prefix(),
        s3: Some(store),
        local_root: None,
        _dir: None,
    })
}

/// Deterministic pseudo-random bytes (xorshift), so large bodies do not
/// compress or dedupe into something unrealistic.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

/// `data` as a stream of `chunk`-sized pieces.
fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Box::pin(futures_util::stream::iter(pieces))
}

/// `good` bytes, then a failure (the client went away mid-upload).
fn failing_after(good: usize) -> ByteStream {
    let data = Bytes::from(pseudo_random(good, 7));
    Box::pin(chunked(data, MIB).chain(futures_util::stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    })))
}

async fn read_all(store: &dyn ObjectStore, key: &ObjectKey, range: Option<ByteRange>) -> Bytes {
    collect(store.get(key, range).await.unwrap().body, LIMIT)
        .await
        .unwrap()
}

/// Nothing visible and nothing left half-written under the fixture's prefix.
async fn assert_nothing_left(f: &Fixture, key: &ObjectKey) {
    assert!(
        f.store.head(key).await.unwrap().is_none(),
        "a failed upload left an object"
    );
    assert!(f.store.list(&f.prefix).await.unwrap().is_empty());
    if let Some(s3) = &f.s3 {
        // The abort may run in a spawned task (a cancelled upload): allow it
        // a moment.
        for _ in 0..50 {
            if s3.pending_uploads(&f.prefix).await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "multipart upload not aborted: {:?}",
            s3.pending_uploads(&f.prefix).await.unwrap()
        );
    }
    if let Some(root) = &f.local_root {
        let tmp: Vec<_> = std::fs::read_dir(root.join(".tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    }
}

async fn http_get(url: &str) -> (u16, Bytes) {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client
        .request(
            hyper::Request::get(url)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Removes what a passing test stored in the shared bucket (the local
/// store's folder goes with its temporary directory).
async fn clean_up(f: &Fixture) {
    if let Some(s3) = &f.s3 {
        for obj in s3.list(&f.prefix).await.unwrap() {
            s3.delete(&obj.key).await.unwrap();
        }
        s3.abort_stale_uploads(&f.prefix, SystemTime::now() + Duration::from_secs(3600))
            .await
            .unwrap();
    }
}

// ---- the suite -------------------------------------------------------------

async fn round_trip(f: &Fixture) {
    let key = f.key("docs/hello.txt");
    let opts = PutOptions {
        max_size: LIMIT,
        content_type: Some("text/plain".into()),
    };
    let meta = f
        .store
        .put(&key, bytes_stream("hello, world"), &opts)
        .await
        .unwrap();
    assert_eq!(meta.size, 12);
    assert_eq!(read_all(&*f.store, &key, None).await, "hello, world");
    let head = f.store.head(&key).await.unwrap().unwrap();
    assert_eq!(head.size, 12);
    assert!(head.last_modified > SystemTime::now() - Duration::from_secs(600));
    // A second put replaces.
    f.store
        .put(&key, bytes_stream("bye"), &PutOptions::limit(LIMIT))
        .await
        .unwrap();
    assert_eq!(read_all(&*f.store, &key, None).await, "bye");
    // Empty objects are objects too.
    let empty = f.key("empty");
    f.store
        .put(
            &empty,
            bytes_stream(Bytes::new()),
            &PutOptions::limit(LIMIT),
        )
        .await
        .unwrap();
    assert_eq!(f.store.head(&empty).await.unwrap().unwrap().size, 0);
    assert!(read_all(&*f.store, &empty, None).await.is_empty());
}

async fn range_get(f: &Fixture) {
    let key = f.key("range.bin");
    let data = pseudo_random(1000, 1);
    f.store
        .put(&key, bytes_stream(data.clone()), &PutOptions::limit(LIMIT))
        .await
        .unwrap();

    let got = f
        .store
        .get(&key, Some(ByteRange::new(10, 20)))
        .await
        .unwrap();
    assert_eq!(got.range, (10, 20));
    assert_eq!(got.meta.size, 1000);
    assert_eq!(collect(got.body, LIMIT).await.unwrap(), data[10..20]);
    assert_eq!(
        read_all(&*f.store, &key, Some(ByteRange::from(990))).await,
        data[990..]
    );
    // The end is clamped to the object, as HTTP does.
    assert_eq!(
        read_all(&*f.store, &key, Some(ByteRange::new(995, 5000))).await,
        data[995..]
    );
    for bad in [
        ByteRange::from(1000),
        ByteRange::new(2000, 3000),
        ByteRange::new(5, 5),
    ] {
        assert!(
            matches!(
                f.store.get(&key, Some(bad)).await,
                Err(StorageError::InvalidRange)
            ),
            "{bad:?} should be refused"
        );
    }
    assert!(matches!(
        f.store.get(&f.key("absent"), None).await,
        Err(StorageError::NotFound(_))
    ));
}

async fn large_multipart(f: &Fixture) {
    let key = f.key("big/20mb.bin");
    let data = Bytes::from(pseudo_random(20 * MIB, 42));
    let want = sha256(&data);
    let meta = f
        .store
        .put(
            &key,
            chunked(data.clone(), 256 * 1024),
            &PutOptions::limit(LIMIT),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, 20 * MIB as u64);
    if f.s3.is_some() {
        // Four 5 MiB parts: an S3 multipart ETag is `<md5 of md5s>-<parts>`.
        let etag = meta.etag.clone().unwrap_or_default();
        assert!(
            etag.ends_with("-4"),
            "expected a 4-part upload, ETag {etag:?}"
        );
    }
    // Streamed back in chunks; the whole is identical.
    let mut body = f.store.get(&key, None).await.unwrap().body;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let (mut n, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        ctx.update(&chunk);
        n += chunk.len();
        chunks += 1;
    }
    assert_eq!(n, 20 * MIB);
    assert!(
        chunks > 1,
        "the body should arrive as a stream, not one buffer"
    );
    assert_eq!(hex::encode(ctx.finish().as_ref()), want);
}

async fn presigned_get(f: &Fixture) {
    let key = f.key("shared/report.pdf");
    f.store
        .put(
            &key,
            bytes_stream("presigned body"),
            &PutOptions::limit(LIMIT),
        )
        .await
        .unwrap();
    let Some(url) = f
        .store
        .presign_get(&key, Duration::from_secs(300))
        .await
        .unwrap()
    else {
        assert!(f.s3.is_none(), "the S3 store must presign");
        return; // the local store streams through the API instead
    };
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (status, body) = http_get(&url).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, "presigned body");

    // Another key under the same signature, or a changed signature: refused.
    let other = url.replace("report.pdf", "report.pdg");
    assert_eq!(http_get(&other).await.0, 403);
    let sig_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let c = if &url[sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..sig_at + 1, c);
    assert_eq!(http_get(&tampered).await.0, 403);
    // A longer expiry than the store allows is trimmed, not an error.
    assert!(
        f.store
            .presign_get(&key, Duration::from_secs(30 * 24 * 3600))
            .await
            .unwrap()
            .is_some()
    );
}

async fn delete(f: &Fixture) {
    let key = f.key("gone.txt");
    f.store
        .put(&key, bytes_stream("x"), &PutOptions::limit(LIMIT))
        .await
        .unwrap();
    f.store.delete(&key).await.unwrap();
    assert!(f.store.head(&key).await.unwrap().is_none());
    assert!(matches!(
        f.store.get(&key, None).await,
        Err(StorageError::NotFound(_))
    ));
    // Deleting again (a retried job) is fine.
    f.store.delete(&key).await.unwrap();
    assert!(f.store.list(&f.prefix).await.unwrap().is_empty());
}

async fn list(f: &Fixture) {
    for name in ["a/1", "a/2", "b/1", "ab"] {
        f.store
            .put(
                &f.key(name),
                bytes_stream(name.to_owned()),
                &PutOptions::limit(LIMIT),
            )
            .await
            .unwrap();
    }
    let names = |objs: Vec<control::storage::ObjectMeta>| -> Vec<String> {
        objs.into_iter()
            .map(|o| o.key.as_str().strip_prefix(&f.prefix).unwrap().to_owned())
            .collect()
    };
    let p = &f.prefix;
    assert_eq!(
        names(f.store.list(&format!("{p}a/")).await.unwrap()),
        ["a/1", "a/2"]
    );
    assert_eq!(
        names(f.store.list(&format!("{p}a")).await.unwrap()),
        ["a/1", "a/2", "ab"]
    );
    assert_eq!(
        names(f.store.list(p).await.unwrap()),
        ["a/1", "a/2", "ab", "b/1"]
    );
    assert!(f.store.list(&format!("{p}zzz")).await.unwrap().is_empty());
    let sizes: Vec<u64> = f
        .store
        .list(p)
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .collect();
    assert_eq!(sizes, [3, 3, 2, 3]);
}

async fn path_traversal_refused(f: &Fixture) {
    for bad in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        ".tmp/x",
        "a\\..\\b",
        "%2e%2e/x",
    ] {
        assert!(
            matches!(ObjectKey::new(bad), Err(StorageError::InvalidKey(_))),
            "{bad}"
        );
    }
    for bad in ["../", "a/../", "/abs"] {
        assert!(
            matches!(f.store.list(bad).await, Err(StorageError::InvalidKey(_))),
            "list {bad}"
        );
        let k = IdempotencyKey::Content { prefix: bad.into() };
        assert!(
            matches!(
                f.store
                    .put_idempotent(&k, bytes_stream("x"), &PutOptions::limit(LIMIT))
                    .await,
                Err(StorageError::InvalidKey(_))
            ),
            "content prefix {bad}"
        );
    }
    if let Some(root) = &f.local_root {
        // Nothing was written next to (or above) the root.
        let siblings: Vec<_> = std::fs::read_dir(root.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, ["objects"]);
    }
}

async fn interrupted_upload_leaves_nothing(f: &Fixture) {
    // Small (one PUT on S3) and large (multipart) bodies that fail midway.
    for (name, good) in [("small", 100_000), ("large", 12 * MIB)] {
        let key = f.key(name);
        let err = f
            .store
            .put(&key, failing_after(good), &PutOptions::limit(LIMIT))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Body(_)), "{err}");
        assert_nothing_left(f, &key).await;
    }
    // Over the size limit: refused, and nothing kept either.
    let key = f.key("too-big");
    let data = Bytes::from(pseudo_random(12 * MIB, 3));
    let err = f
        .store
        .put(&key, chunked(data, MIB), &PutOptions::limit(6 * MIB as u64))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooLarge { limit } if limit == 6 * MIB as u64),
        "{err}"
    );
    assert_nothing_left(f, &key).await;
    // An upload whose task is cancelled (the request was dropped) mid-way.
    let key = f.key("cancelled");
    let stalls: ByteStream = Box::pin(
        chunked(Bytes::from(pseudo_random(7 * MIB, 5)), MIB).chain(futures_util::stream::pending()),
    );
    let opts = PutOptions::limit(LIMIT);
    let put = f.store.put(&key, stalls, &opts);
    assert!(
        tokio::time::timeout(Duration::from_secs(3), put)
            .await
            .is_err()
    );
    assert_nothing_left(f, &key).await;
}

async fn idempotent_puts(f: &Fixture) {
    let opts = PutOptions::limit(LIMIT);
    // Caller key: the retry is not stored again.
    let key = f.key("uploads/u-123");
    let first = f
        .store
        .put_idempotent(
            &IdempotencyKey::Caller(key.clone()),
            bytes_stream("one"),
            &opts,
        )
        .await
        .unwrap();
    assert!(first.created);
    let retry = f
        .store
        .put_idempotent(
            &IdempotencyKey::Caller(key.clone()),
            bytes_stream("two"),
            &opts,
        )
        .await
        .unwrap();
    assert!(!retry.created);
    assert_eq!(retry.meta.key, key);
    assert_eq!(read_all(&*f.store, &key, None).await, "one");

    // Content key: the key is the digest; the same bytes are stored once.
    let by_content = IdempotencyKey::Content {
        prefix: format!("{}blobs/", f.prefix),
    };
    let a = f
        .store
        .put_idempotent(&by_content, bytes_stream("same bytes"), &opts)
        .await
        .unwrap();
    assert!(a.created);
    assert_eq!(
        a.meta.key.as_str(),
        format!("{}blobs/{}", f.prefix, sha256(b"same bytes"))
    );
    let b = f
        .store
        .put_idempotent(&by_content, chunked(Bytes::from("same bytes"), 3), &opts)
        .await
        .unwrap();
    assert!(!b.created);
    assert_eq!(a.meta.key, b.meta.key);
    assert_eq!(
        f.store
            .list(&format!("{}blobs/", f.prefix))
            .await
            .unwrap()
            .len(),
        1
    );
    // A large content-keyed body goes through the same multipart path.
    let big = Bytes::from(pseudo_random(11 * MIB, 9));
    let c = f
        .store
        .put_idempotent(&by_content, chunked(big.clone(), MIB), &opts)
        .await
        .unwrap();
    assert!(c.created);
    assert_eq!(c.meta.size, big.len() as u64);
    assert_eq!(
        c.meta.key.as_str(),
        format!("{}blobs/{}", f.prefix, sha256(&big))
    );
    // Over the limit: refused before anything is stored.
    let err = f
        .store
        .put_idempotent(
            &by_content,
            bytes_stream("0123456789"),
            &PutOptions::limit(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { .. }));
}

async fn orphan_cleanup(f: &Fixture) {
    let dir = format!("{}files/", f.prefix);
    let keys: Vec<ObjectKey> = ["kept", "orphan-1", "orphan-2"]
        .iter()
        .map(|n| f.key(&format!("files/{n}")))
        .collect();
    for k in &keys {
        f.store
            .put(k, bytes_stream("x"), &PutOptions::limit(LIMIT))
            .await
            .unwrap();
    }
    let outside = f.key("elsewhere/orphan");
    f.store
        .put(&outside, bytes_stream("x"), &PutOptions::limit(LIMIT))
        .await
        .unwrap();
    let referenced: HashSet<ObjectKey> = [keys[0].clone()].into();

    // Young objects survive: their rows may not be committed yet.
    let report = delete_orphans(
        &*f.store,
        &dir,
        SystemTime::now() - Duration::from_secs(3600),
        &referenced,
    )
    .await
    .unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!((report.too_recent, report.referenced), (2, 1));

    // Once old enough, only the unreferenced ones under the prefix go.
    let report = delete_orphans(
        &*f.store,
        &dir,
        SystemTime::now() + Duration::from_secs(60),
        &referenced,
    )
    .await
    .unwrap();
    assert_eq!(report.deleted, keys[1..]);
    let left: Vec<ObjectKey> = f
        .store
        .list(&f.prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, [outside, keys[0].clone()]);
}

macro_rules! suite {
    ($fixture:path) => {
        suite!(@each $fixture; round_trip, range_get, large_multipart, presigned_get, delete, list,
            path_traversal_refused, interrupted_upload_leaves_nothing, idempotent_puts, orphan_cleanup);
    };
    (@each $fixture:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(f) = $fixture().await {
                    super::$name(&f).await;
                    super::clean_up(&f).await;
                }
            }
        )*
    };
}

mod local_dir {
    suite!(super::local);
}

mod s3_store {
    suite!(super::s3);
}

/// Temporary files that a crashed process left are removed when the store
/// opens; fresh ones (another upload in progress) are not.
#[tokio::test]
async fn local_store_removes_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).await.unwrap();
    std::fs::write(dir.path().join(".tmp/left.part"), b"half").unwrap();
    assert_eq!(
        store
            .remove_stale_temp_files(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.remove_stale_temp_files(Duration::ZERO).await.unwrap(),
        1
    );
    assert!(store.list("").await.unwrap().is_empty());
}
