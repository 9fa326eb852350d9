//! Files: upload, attach, download, thumbnails, links and cleanup, on
//! SQLite and PostgreSQL, against the local store and a real S3-compatible
//! server (SeaweedFS on 127.0.0.1:18333, as `scripts/setup` starts; the
//! `ENCLAVE_TEST_S3_*` variables of `storage_store.rs` move it). Without
//! that server the S3 variants are skipped with a message, unless
//! `ENCLAVE_REQUIRE_SERVICES=1` makes that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use common::{Kind, Resp, TestApp, TestUser};
use control::Config;
use control::db::users::SystemRole;
use control::files::cleanup;
use control::storage::{ObjectKey, PutOptions, S3Store, bytes_stream};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const BOUNDARY: &str = "enclave-test-boundary-7f3a";

// ---- fixtures --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Local,
    S3,
}

struct Fx {
    app: TestApp,
    store: Store,
    local_root: PathBuf,
    _dir: tempfile::TempDir,
    alice: TestUser,
    bob: TestUser,
    /// In the team, not in the private channel.
    carol: TestUser,
    team: String,
    /// alice, bob and carol are members.
    open: String,
    /// alice and bob only.
    private: String,
}

async fn fixture(kind: Kind, store: Store, tweak: impl FnOnce(&mut Config)) -> Option<Fx> {
    if kind == Kind::Postgres && common::skip_postgres() {
        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_owned();
    config.storage.local_dir = dir.path().join("objects");
    // Every test its own prefix: tests share one bucket.
    config.storage.key_prefix = format!("t{:016x}/files/", rand::random::<u64>());
    if store == Store::S3 {
        config.storage.s3 = Some(common::s3::section().await?);
    }
    tweak(&mut config);
    config.validate().expect("test config is valid");
    let local_root = config.storage.local_dir.clone();
    let app = TestApp::with_config(kind, config).await;
    let alice = app.user("alice", SystemRole::User).await;
    let bob = app.user("bob", SystemRole::User).await;
    let carol = app.user("carol", SystemRole::User).await;
    let team = app.team("ops", &alice, &[&bob, &carol]).await;
    let open = app.channel(&team, "town", "open", &alice).await;
    for u in [&bob, &carol] {
        let r = app
            .post(&format!("/api/v1/channels/{open}/join"), u, json!({}))
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }
    let private = app.channel(&team, "secret", "private", &alice).await;
    let r = app
        .post(
            &format!("/api/v1/channels/{private}/members"),
            &alice,
            json!({"user_id": bob.id}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    Some(Fx {
        app,
        store,
        local_root,
        _dir: dir,
        alice,
        bob,
        carol,
        team,
        open,
        private,
    })
}

/// Runs each `async fn(Fx)` on SQLite and PostgreSQL with the local store,
/// and (with `s3`) also with the S3 store.
macro_rules! cases {
    ($($name:ident $(, $s3:ident)?);* $(;)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() {
                    if let Some(fx) = fixture(Kind::Sqlite, Store::Local, |_| {}).await {
                        super::$name(fx).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() {
                    if let Some(fx) = fixture(Kind::Postgres, Store::Local, |_| {}).await {
                        super::$name(fx).await;
                    }
                }
                $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() {
                    let _ = stringify!($s3);
                    if let Some(fx) = fixture(Kind::Sqlite, Store::S3, |_| {}).await {
                        super::$name(fx).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() {
                    if let Some(fx) = fixture(Kind::Postgres, Store::S3, |_| {}).await {
                        super::$name(fx).await;
                    }
                }
                )?
            }
        )*
    };
}

cases! {
    upload_attach_download, s3;
    links, s3;
    deleted_posts_take_their_files_away, s3;
    cleanup_removes_orphans_and_unattached_uploads, s3;
    attach_rules;
    bad_uploads_are_refused_and_store_nothing;
    outsiders_cannot_guess_file_ids;
    a_decompression_bomb_gets_no_thumbnail;
}

// ---- helpers ---------------------------------------------------------------

struct PartSpec<'a> {
    field: &'a str,
    file_name: Option<&'a str>,
    content_type: &'a str,
    data: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> PartSpec<'a> {
    PartSpec {
        field: "files",
        file_name: Some(name),
        content_type: "application/octet-stream",
        data,
    }
}

fn multipart(parts: &[PartSpec<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut cd = format!("Content-Disposition: form-data; name=\"{}\"", p.field);
        if let Some(n) = p.file_name {
            // Raw, as browsers send it (they percent-encode only quotes).
            let n = n.replace('"', "%22");
            cd.push_str(&format!("; filename=\"{n}\""));
        }
        out.extend_from_slice(cd.as_bytes());
        out.extend_from_slice(format!("\r\nContent-Type: {}\r\n\r\n", p.content_type).as_bytes());
        out.extend_from_slice(p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn upload(fx: &Fx, channel: &str, who: &TestUser, parts: &[PartSpec<'_>]) -> Resp {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/channels/{channel}/files"))
        .header("authorization", format!("Bearer {}", who.token))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(multipart(parts)))
        .unwrap();
    fx.app.send(req).await
}

/// Uploads one file and returns its info.
async fn upload_one(fx: &Fx, channel: &str, who: &TestUser, name: &str, data: &[u8]) -> Value {
    let r = upload(fx, channel, who, &[file(name, data)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["file_infos"][0].clone()
}

struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Raw {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A GET whose body is kept as bytes.
async fn get_raw(fx: &Fx, uri: &str, who: Option<&TestUser>, range: Option<&str>) -> Raw {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if let Some(u) = who {
        b = b.header("authorization", format!("Bearer {}", u.token));
    }
    if let Some(r) = range {
        b = b.header("range", r);
    }
    let mut req = b.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(fx.app.ip));
    let resp = control::app(fx.app.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Deterministic bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// Every object key under the test's prefix, in the store in use.
async fn stored_keys(fx: &Fx) -> Vec<String> {
    let prefix = fx.app.state.config.storage.key_prefix.clone();
    fx.app
        .state
        .store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}

/// Every file under the local store's folder, temporary ones included.
fn local_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(local_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Nothing stored for the test: no object, no temporary file, no pending
/// multipart upload.
async fn assert_nothing_stored(fx: &Fx) {
    assert_eq!(stored_keys(fx).await, Vec::<String>::new());
    match fx.store {
        Store::Local => assert_eq!(local_files(&fx.local_root), Vec::<PathBuf>::new()),
        Store::S3 => {
            let s3 = S3Store::new(
                &fx.app
                    .state
                    .config
                    .storage
                    .s3
                    .as_ref()
                    .unwrap()
                    .to_store_config(),
            )
            .unwrap();
            let pending = s3
                .pending_uploads(&fx.app.state.config.storage.key_prefix)
                .await
                .unwrap();
            assert!(pending.is_empty(), "{pending:?}");
        }
    }
}

async fn count_files(fx: &Fx) -> i64 {
    sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM files")
            .fetch_one(&fx.app.state.db.pool)
            .await
            .unwrap(),
        "n",
    )
}

async fn count_posts(fx: &Fx) -> i64 {
    sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM posts")
            .fetch_one(&fx.app.state.db.pool)
            .await
            .unwrap(),
        "n",
    )
}

/// Removes what a passing S3 test stored in the shared bucket.
async fn clean_up(fx: &Fx) {
    if fx.store == Store::S3 {
        let store = &fx.app.state.store;
        for obj in store
            .list(&fx.app.state.config.storage.key_prefix)
            .await
            .unwrap()
        {
            store.delete(&obj.key).await.unwrap();
        }
    }
}

async fn post_with_files(fx: &Fx, channel: &str, who: &TestUser, ids: &[&str]) -> Resp {
    fx.app
        .post(
            &format!("/api/v1/channels/{channel}/posts"),
            who,
            json!({"message": "see attached", "file_ids": ids}),
        )
        .await
}

async fn http_get(url: &str) -> (u16, HeaderMap, Bytes) {
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
    let headers = resp.headers().clone();
    (
        status,
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(fx: &Fx) -> String {
    let r = get_raw(fx, "/metrics", None, None).await;
    String::from_utf8(r.body.to_vec()).unwrap()
}

// ---- the suite -------------------------------------------------------------

async fn upload_attach_download(fx: Fx) {
    let picture = png(640, 480);
    let notes = "minutes: ship it\n".repeat(100);
    // The client claims a PDF; the bytes say PNG.
    let r = upload(
        &fx,
        &fx.private,
        &fx.alice,
        &[
            PartSpec {
                field: "files",
                file_name: Some("site plan.png"),
                content_type: "application/pdf",
                data: &picture,
            },
            file("Protokoll – März.txt", notes.as_bytes()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let infos = r.body["file_infos"].as_array().unwrap().clone();
    assert_eq!(infos.len(), 2);
    let (img, txt) = (&infos[0], &infos[1]);
    assert_eq!(img["name"], "site plan.png");
    assert_eq!(img["mime_type"], "image/png");
    assert_eq!(img["size"], picture.len() as i64);
    assert_eq!(
        (img["width"].as_i64(), img["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(img["has_thumbnail"], true);
    assert_eq!(img["user_id"], fx.alice.id.as_str());
    assert!(img.get("post_id").is_none());
    assert_eq!(txt["mime_type"], "text/plain");
    assert_eq!(txt["has_thumbnail"], false);
    let img_id = img["id"].as_str().unwrap();
    let txt_id = txt["id"].as_str().unwrap();
    // Original, thumbnail and preview of the image; the text alone.
    assert_eq!(stored_keys(&fx).await.len(), 4);

    // Until attached, an upload is its uploader's alone.
    assert_eq!(
        get_raw(
            &fx,
            &format!("/api/v1/files/{img_id}"),
            Some(&fx.alice),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        get_raw(&fx, &format!("/api/v1/files/{img_id}"), Some(&fx.bob), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = post_with_files(&fx, &fx.private, &fx.alice, &[img_id, txt_id]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let post_id = r.body["id"].as_str().unwrap().to_owned();
    let files = r.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["id"], img_id);
    assert_eq!(files[0]["post_id"], post_id.as_str());
    // The post and its files come back everywhere a post does…
    let r = fx
        .app
        .get(&format!("/api/v1/posts/{post_id}"), &fx.bob)
        .await;
    assert_eq!(r.body["files"].as_array().unwrap().len(), 2);
    let r = fx
        .app
        .get(&format!("/api/v1/channels/{}/posts", fx.private), &fx.bob)
        .await;
    assert_eq!(r.body[0]["files"][1]["id"], txt_id);
    // …and in the event members receive (numbered first, on PostgreSQL).
    control::db::events::settle(&fx.app.state.db).await.unwrap();
    let payload: String = sqlx::Row::get(
        &sqlx::query("SELECT payload FROM events WHERE kind = 'post_created' ORDER BY seq DESC")
            .fetch_one(&fx.app.state.db.pool)
            .await
            .unwrap(),
        "payload",
    );
    let ev: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(ev["post"]["files"][0]["id"], img_id, "{ev}");

    // A member downloads it, with headers that keep a browser safe.
    let d = get_raw(&fx, &format!("/api/v1/files/{img_id}"), Some(&fx.bob), None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body, picture);
    assert_eq!(d.header("content-type"), "image/png");
    assert_eq!(
        d.header("content-disposition"),
        "attachment; filename=\"site plan.png\"; filename*=UTF-8''site%20plan.png"
    );
    assert_eq!(d.header("x-content-type-options"), "nosniff");
    assert_eq!(
        d.header("content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(d.header("accept-ranges"), "bytes");
    let d = get_raw(&fx, &format!("/api/v1/files/{txt_id}"), Some(&fx.bob), None).await;
    assert_eq!(d.body, notes.as_bytes());
    assert!(
        d.header("content-disposition")
            .contains("filename*=UTF-8''Protokoll%20%E2%80%93%20M%C3%A4rz.txt"),
        "{}",
        d.header("content-disposition")
    );

    // Ranges: a slice, a suffix, an open end, and one past the end.
    let uri = format!("/api/v1/files/{txt_id}");
    let d = get_raw(&fx, &uri, Some(&fx.bob), Some("bytes=2-5")).await;
    assert_eq!(d.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(d.body, notes.as_bytes()[2..6]);
    assert_eq!(
        d.header("content-range"),
        format!("bytes 2-5/{}", notes.len())
    );
    let d = get_raw(&fx, &uri, Some(&fx.bob), Some("bytes=-4")).await;
    assert_eq!(d.body, notes.as_bytes()[notes.len() - 4..]);
    let d = get_raw(&fx, &uri, Some(&fx.bob), Some("bytes=1600-")).await;
    assert_eq!(d.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(d.body, notes.as_bytes()[1600..]);
    let d = get_raw(&fx, &uri, Some(&fx.bob), Some("bytes=999999-")).await;
    assert_eq!(d.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(d.json()["code"], "range_not_satisfiable");
    assert_eq!(
        d.header("content-range"),
        format!("bytes */{}", notes.len())
    );

    // Thumbnail and preview are JPEGs of the right size.
    let t = get_raw(
        &fx,
        &format!("/api/v1/files/{img_id}/thumbnail"),
        Some(&fx.bob),
        None,
    )
    .await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.header("content-type"), "image/jpeg");
    assert_eq!(t.header("x-content-type-options"), "nosniff");
    let thumb = image::load_from_memory(&t.body).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (120, 90));
    let p = get_raw(
        &fx,
        &format!("/api/v1/files/{img_id}/preview"),
        Some(&fx.bob),
        None,
    )
    .await;
    let preview = image::load_from_memory(&p.body).unwrap();
    assert_eq!((preview.width(), preview.height()), (640, 480));
    let t = get_raw(
        &fx,
        &format!("/api/v1/files/{txt_id}/thumbnail"),
        Some(&fx.bob),
        None,
    )
    .await;
    assert_eq!(t.status, StatusCode::NOT_FOUND);
    assert_eq!(t.json()["code"], "no_thumbnail");

    let m = metrics(&fx).await;
    assert_eq!(
        metric(&m, "enclave_control_files_uploaded_total"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "enclave_control_file_bytes_uploaded_total"),
        (picture.len() + notes.len()) as f64
    );
    clean_up(&fx).await;
}

async fn links(fx: Fx) {
    let body = noise(70_000, 3);
    let info = upload_one(&fx, &fx.open, &fx.alice, "report.bin", &body).await;
    let id = info["id"].as_str().unwrap();
    assert_eq!(
        post_with_files(&fx, &fx.open, &fx.alice, &[id])
            .await
            .status,
        StatusCode::CREATED
    );
    let r = fx
        .app
        .get(&format!("/api/v1/files/{id}/link"), &fx.bob)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let url = r.body["url"].as_str().unwrap().to_owned();
    let ttl = fx.app.state.config.storage.link_ttl_secs as i64;
    assert_eq!(r.body["expires_at"].as_i64(), Some(common::T0 + ttl * 1000));
    match fx.store {
        Store::S3 => {
            // Presigned by the store and fetched from it over HTTP.
            assert!(
                url.starts_with("http://") && url.contains("X-Amz-Signature="),
                "{url}"
            );
            let (status, headers, got) = http_get(&url).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
            assert_eq!(got, body);
            let cd = headers
                .get("content-disposition")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                cd.starts_with("attachment; filename=\"report.bin\""),
                "{cd:?}"
            );
            let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
            assert_eq!(http_get(&tampered).await.0, 403);
        }
        Store::Local => {
            // A signed URL of our own API: no credentials needed…
            assert!(
                url.starts_with(&format!("/api/v1/files/{id}/content?")),
                "{url}"
            );
            let d = get_raw(&fx, &url, None, None).await;
            assert_eq!(d.status, StatusCode::OK, "{:?}", d.json());
            assert_eq!(d.body, body);
            assert_eq!(d.header("x-content-type-options"), "nosniff");
            assert!(d.header("content-disposition").starts_with("attachment;"));
            let d = get_raw(&fx, &url, None, Some("bytes=10-19")).await;
            assert_eq!(d.body, body[10..20]);
            // …but only as signed, for this file, until it expires.
            let sig_at = url.find("signature=").unwrap() + "signature=".len();
            let mut forged = url.clone();
            let c = if &url[sig_at..=sig_at] == "0" {
                "1"
            } else {
                "0"
            };
            forged.replace_range(sig_at..=sig_at, c);
            let other = upload_one(&fx, &fx.open, &fx.alice, "b.bin", b"other").await;
            let moved = url.replace(id, other["id"].as_str().unwrap());
            let longer = url.replace(
                &format!("expires={}", common::T0 + ttl * 1000),
                &format!("expires={}", common::T0 + ttl * 2000),
            );
            for bad in [&forged, &moved, &longer] {
                let d = get_raw(&fx, bad, None, None).await;
                assert_eq!(d.status, StatusCode::FORBIDDEN, "{bad}");
                assert_eq!(d.json()["code"], "link_invalid");
            }
            fx.app.clock.advance_ms(ttl * 1000 + 1);
            let d = get_raw(&fx, &url, None, None).await;
            assert_eq!(d.status, StatusCode::FORBIDDEN);
            assert_eq!(d.json()["code"], "link_invalid");
        }
    }
    // carol is a member of the open channel; an outsider is not.
    let dave = fx.app.user("dave", SystemRole::User).await;
    let r = fx.app.get(&format!("/api/v1/files/{id}/link"), &dave).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    clean_up(&fx).await;
}

async fn deleted_posts_take_their_files_away(fx: Fx) {
    let info = upload_one(&fx, &fx.open, &fx.alice, "a.png", &png(32, 32)).await;
    let id = info["id"].as_str().unwrap();
    let r = post_with_files(&fx, &fx.open, &fx.alice, &[id]).await;
    let post_id = r.body["id"].as_str().unwrap().to_owned();
    let link = fx
        .app
        .get(&format!("/api/v1/files/{id}/link"), &fx.alice)
        .await;
    let url = link.body["url"].as_str().unwrap().to_owned();
    let r = fx
        .app
        .call(
            Method::DELETE,
            &format!("/api/v1/posts/{post_id}"),
            Some(&fx.alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for path in ["", "/thumbnail", "/preview", "/link"] {
        let d = get_raw(
            &fx,
            &format!("/api/v1/files/{id}{path}"),
            Some(&fx.alice),
            None,
        )
        .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND, "{path}");
    }
    if fx.store == Store::Local {
        assert_eq!(
            get_raw(&fx, &url, None, None).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let r = fx
        .app
        .get(&format!("/api/v1/posts/{post_id}"), &fx.alice)
        .await;
    assert!(r.body.get("files").is_none(), "{:?}", r.body);
    // A deleted post's file cannot be attached again either.
    let r = post_with_files(&fx, &fx.open, &fx.alice, &[id]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_file_id");
    clean_up(&fx).await;
}

async fn cleanup_removes_orphans_and_unattached_uploads(fx: Fx) {
    let state = &fx.app.state;
    let kept = upload_one(&fx, &fx.open, &fx.alice, "kept.png", &png(20, 20)).await;
    let kept_id = kept["id"].as_str().unwrap();
    assert_eq!(
        post_with_files(&fx, &fx.open, &fx.alice, &[kept_id])
            .await
            .status,
        StatusCode::CREATED
    );
    // A crash after the upload, before the post: a row never attached.
    let unattached = upload_one(&fx, &fx.open, &fx.bob, "draft.png", &png(20, 20)).await;
    let unattached_id = unattached["id"].as_str().unwrap().to_owned();
    // A crash between the store and the insert: an object with no row.
    let orphan = control::files::object_key(
        &state.config,
        &control::db::new_id(),
        control::files::Part::Original,
    )
    .unwrap();
    state
        .store
        .put(
            &orphan,
            bytes_stream("lost bytes"),
            &PutOptions::limit(1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(stored_keys(&fx).await.len(), 7);

    // Young leftovers are kept: an upload may be on its way.
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    let r = cleanup::run_once(state, long_ago).await.unwrap().unwrap();
    assert_eq!(r, cleanup::Report::default());
    assert_eq!(stored_keys(&fx).await.len(), 7);

    fx.app
        .clock
        .advance_ms(state.config.files.unattached_grace_secs as i64 * 1000 + 1);
    let soon = SystemTime::now() + Duration::from_secs(5);
    let r = cleanup::run_once(state, soon).await.unwrap().unwrap();
    assert_eq!(
        r,
        cleanup::Report {
            unattached: 1,
            orphans: 1
        }
    );
    let left = stored_keys(&fx).await;
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|k| k.contains(kept_id)), "{left:?}");
    assert_eq!(count_files(&fx).await, 1);
    // The kept file still downloads; the cleaned one is gone for good, and
    // a post naming it now is refused instead of pointing at nothing.
    let d = get_raw(
        &fx,
        &format!("/api/v1/files/{kept_id}"),
        Some(&fx.bob),
        None,
    )
    .await;
    assert_eq!(d.status, StatusCode::OK);
    let posts_before = count_posts(&fx).await;
    let r = post_with_files(&fx, &fx.open, &fx.bob, &[unattached_id.as_str()]).await;
    assert_eq!(r.code(), "invalid_file_id");
    assert_eq!(count_posts(&fx).await, posts_before);

    // On PostgreSQL one node at a time: while another holds the lock, skip.
    if fx.app.kind == Kind::Postgres {
        let mut other = fx.app.state.db.pool.acquire().await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(cleanup::LOCK_KEY)
            .execute(&mut *other)
            .await
            .unwrap();
        assert_eq!(cleanup::run_once(state, soon).await.unwrap(), None);
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(cleanup::LOCK_KEY)
            .execute(&mut *other)
            .await
            .unwrap();
        assert!(cleanup::run_once(state, soon).await.unwrap().is_some());
    }
    let m = metrics(&fx).await;
    assert_eq!(
        metric(&m, "enclave_control_files_cleaned_total{what=\"orphan\"}"),
        1.0,
        "{m}"
    );
    clean_up(&fx).await;
}

async fn attach_rules(fx: Fx) {
    let mine = upload_one(&fx, &fx.open, &fx.alice, "a.txt", b"alice's").await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    let bobs = upload_one(&fx, &fx.open, &fx.bob, "b.txt", b"bob's").await;
    let bobs = bobs["id"].as_str().unwrap().to_owned();
    let elsewhere = upload_one(&fx, &fx.private, &fx.alice, "c.txt", b"private").await;
    let elsewhere = elsewhere["id"].as_str().unwrap().to_owned();
    let posts_before = count_posts(&fx).await;
    let cases: Vec<(Vec<&str>, StatusCode, &str)> = vec![
        (vec![bobs.as_str()], StatusCode::FORBIDDEN, "file_not_yours"),
        (
            vec!["nosuchfile2345678901234567"],
            StatusCode::BAD_REQUEST,
            "invalid_file_id",
        ),
        (
            vec![elsewhere.as_str()],
            StatusCode::BAD_REQUEST,
            "invalid_file_id",
        ),
        (
            vec![mine.as_str(), mine.as_str()],
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            vec![mine.as_str(), bobs.as_str()],
            StatusCode::FORBIDDEN,
            "file_not_yours",
        ),
    ];
    for (ids, status, code) in &cases {
        let r = post_with_files(&fx, &fx.open, &fx.alice, ids).await;
        assert_eq!(
            (r.status, r.code()),
            (*status, *code),
            "{ids:?}: {:?}",
            r.body
        );
    }
    let many: Vec<String> = (0..11).map(|i| format!("f{i:025}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = post_with_files(&fx, &fx.open, &fx.alice, &many).await;
    assert_eq!(r.code(), "too_many_files");
    assert_eq!(count_posts(&fx).await, posts_before, "nothing was posted");

    // Files alone make a post; a retry with its pending id gets it back.
    let body = json!({"message": "", "file_ids": [mine], "pending_id": "p-1"});
    let uri = format!("/api/v1/channels/{}/posts", fx.open);
    let r = fx.app.post(&uri, &fx.alice, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let again = fx.app.post(&uri, &fx.alice, body).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["id"], r.body["id"]);
    assert_eq!(again.body["files"][0]["id"], mine.as_str());
    let r = post_with_files(&fx, &fx.open, &fx.alice, &[mine.as_str()]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "file_already_attached")
    );
    // Without files an empty message is still refused.
    let r = fx.app.post(&uri, &fx.alice, json!({"message": ""})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(count_posts(&fx).await, posts_before + 1);
}

async fn bad_uploads_are_refused_and_store_nothing(mut fx: Fx) {
    // Small limits make "too large" cheap to test.
    let mut config = (*fx.app.state.config).clone();
    config.files.max_file_bytes = 64 << 10;
    fx.app.state.config = std::sync::Arc::new(config);
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".repeat(10);
    let big = noise(200 << 10, 9);
    let long = "x".repeat(256);
    let cases: Vec<(Vec<PartSpec<'_>>, StatusCode, &str, &str)> = vec![
        (
            vec![file("big.bin", &big)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "65536 bytes",
        ),
        (
            vec![file("ok.txt", b"fine"), file("big.bin", &big)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "big.bin",
        ),
        (
            vec![file("../../etc/passwd", b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "'/'",
        ),
        (
            vec![file("..\\..\\boot.ini", b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "'\\\\'",
        ),
        (
            vec![file("..", b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "not a file name",
        ),
        // A tab is the one control character a multipart header can carry.
        (
            vec![file("a\tb.txt", b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "U+0009",
        ),
        (
            vec![file("invoice\u{202e}fdp.exe", b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "U+202E",
        ),
        (
            vec![file(&long, b"x")],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "256 bytes",
        ),
        (
            vec![PartSpec {
                field: "files",
                file_name: None,
                content_type: "text/plain",
                data: b"x",
            }],
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
            "no file name",
        ),
        (
            vec![PartSpec {
                field: "attachment",
                file_name: Some("a.txt"),
                content_type: "text/plain",
                data: b"x",
            }],
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
            "\"attachment\"",
        ),
        (
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
            "no file",
        ),
        (
            vec![file("empty.txt", b"")],
            StatusCode::BAD_REQUEST,
            "empty_file",
            "empty",
        ),
        (
            vec![file("photo.png", &elf)],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "file_type_not_allowed",
            "application/x-executable",
        ),
    ];
    for (parts, status, code, says) in &cases {
        let r = upload(&fx, &fx.open, &fx.alice, parts).await;
        assert_eq!(
            (r.status, r.code()),
            (*status, *code),
            "{says}: {:?}",
            r.body
        );
        let msg = r.body["message"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{says:?} not in {msg:?}");
        assert_nothing_stored(&fx).await;
    }
    // Eleven files in one upload: more than a post may hold.
    let eleven: Vec<PartSpec<'_>> = (0..11).map(|_| file("n.txt", b"n")).collect();
    let r = upload(&fx, &fx.open, &fx.alice, &eleven).await;
    assert_eq!(r.code(), "too_many_files");
    assert_nothing_stored(&fx).await;

    // Not multipart at all.
    let r = fx
        .app
        .post(
            &format!("/api/v1/channels/{}/files", fx.open),
            &fx.alice,
            json!({"file": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // A body cut short.
    let mut cut = multipart(&[file("a.txt", &noise(30_000, 1))]);
    cut.truncate(20_000);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/channels/{}/files", fx.open))
        .header("authorization", format!("Bearer {}", fx.alice.token))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(cut))
        .unwrap();
    let r = fx.app.send(req).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_multipart"),
        "{:?}",
        r.body
    );
    assert_nothing_stored(&fx).await;
    assert_eq!(count_files(&fx).await, 0);

    // An allow list: only images.
    let mut config = (*fx.app.state.config).clone();
    config.files.allowed_types = vec!["image/*".into()];
    fx.app.state.config = std::sync::Arc::new(config);
    let r = upload(
        &fx,
        &fx.open,
        &fx.alice,
        &[file("notes.png", b"plain text, not a picture")],
    )
    .await;
    assert_eq!(r.code(), "file_type_not_allowed");
    assert!(
        r.body["message"].as_str().unwrap().contains("text/plain"),
        "{:?}",
        r.body
    );
    assert_eq!(
        upload(&fx, &fx.open, &fx.alice, &[file("p.png", &png(4, 4))])
            .await
            .status,
        StatusCode::CREATED
    );

    let m = metrics(&fx).await;
    assert_eq!(
        metric(
            &m,
            "enclave_control_file_rejects_total{reason=\"too_large\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "enclave_control_file_rejects_total{reason=\"name\"}"),
        7.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "enclave_control_file_rejects_total{reason=\"type\"}"),
        2.0,
        "{m}"
    );
}

async fn outsiders_cannot_guess_file_ids(fx: Fx) {
    let info = upload_one(&fx, &fx.private, &fx.alice, "secret.png", &png(8, 8)).await;
    let id = info["id"].as_str().unwrap();
    let r = post_with_files(&fx, &fx.private, &fx.alice, &[id]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dave = fx.app.user("dave", SystemRole::User).await;
    for who in [&fx.carol, &dave] {
        for path in ["", "/thumbnail", "/preview", "/link"] {
            let d = get_raw(&fx, &format!("/api/v1/files/{id}{path}"), Some(who), None).await;
            assert_eq!(d.status, StatusCode::NOT_FOUND, "{} {path}", who.username);
            assert_eq!(d.json()["code"], "not_found");
        }
        // …and cannot attach it to a post of a channel they can write to.
        let r = post_with_files(&fx, &fx.open, who, &[id]).await;
        if who.username == "carol" {
            assert_eq!(r.code(), "invalid_file_id");
        }
    }
    // Unauthenticated: 401; an unknown id: 404 like a hidden one.
    let d = get_raw(&fx, &format!("/api/v1/files/{id}"), None, None).await;
    assert_eq!(d.status, StatusCode::UNAUTHORIZED);
    let d = get_raw(
        &fx,
        "/api/v1/files/aaaaaaaaaaaaaaaaaaaaaaaaaa",
        Some(&fx.alice),
        None,
    )
    .await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    // Uploading into a channel one cannot see: 404 and nothing read.
    let before = stored_keys(&fx).await;
    let r = upload(&fx, &fx.private, &fx.carol, &[file("x.txt", b"x")]).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // An open channel of the team not joined: 403.
    let hall = fx.app.channel(&fx.team, "hall", "open", &fx.alice).await;
    let r = upload(&fx, &hall, &fx.carol, &[file("x.txt", b"x")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(stored_keys(&fx).await, before);
    assert_eq!(count_files(&fx).await, 1);
}

async fn a_decompression_bomb_gets_no_thumbnail(fx: Fx) {
    // A valid PNG header declaring 100 000 × 100 000 pixels.
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let started = std::time::Instant::now();
    let info = upload_one(&fx, &fx.open, &fx.alice, "bomb.png", &bomb).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(info["mime_type"], "image/png");
    assert_eq!(info["has_thumbnail"], false);
    assert!(info.get("width").is_none());
    // Still a file, downloadable as bytes.
    let id = info["id"].as_str().unwrap();
    let d = get_raw(&fx, &format!("/api/v1/files/{id}"), Some(&fx.alice), None).await;
    assert_eq!(d.body, bomb);
}

// ---- S3 only: large streamed uploads ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_upload_goes_in_parts_and_too_large_leaves_nothing() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let Some(fx) = fixture(kind, Store::S3, |c| c.files.max_file_bytes = 16 << 20).await else {
            return;
        };
        // 12 MiB: three parts of at most 5 MiB.
        let big = noise(12 << 20, 5);
        let info = upload_one(&fx, &fx.open, &fx.alice, "scan.tiff", &big).await;
        let id = info["id"].as_str().unwrap();
        assert_eq!(info["size"], big.len() as i64);
        let key = ObjectKey::new(format!(
            "{}{id}/original",
            fx.app.state.config.storage.key_prefix
        ))
        .unwrap();
        let meta = fx.app.state.store.head(&key).await.unwrap().unwrap();
        assert!(
            meta.etag.as_deref().unwrap_or("").ends_with("-3"),
            "{meta:?}"
        );
        let d = get_raw(&fx, &format!("/api/v1/files/{id}"), Some(&fx.alice), None).await;
        assert_eq!(d.body.len(), big.len());
        assert!(d.body == big);
        let d = get_raw(
            &fx,
            &format!("/api/v1/files/{id}"),
            Some(&fx.alice),
            Some("bytes=6291456-6291465"),
        )
        .await;
        assert_eq!(d.body, big[6_291_456..6_291_466]);
        clean_up(&fx).await;
        let rows_before = count_files(&fx).await;

        // 17 MiB against a 16 MiB limit: refused mid-stream, after parts
        // were sent; the multipart upload is aborted.
        let too_big = noise(17 << 20, 6);
        let r = upload(&fx, &fx.open, &fx.alice, &[file("huge.bin", &too_big)]).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        assert_nothing_stored(&fx).await;
        assert_eq!(count_files(&fx).await, rows_before, "no row either");
    }
}

// ---- the job runs by itself ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_job_starts_with_the_app() {
    let fx = fixture(Kind::Sqlite, Store::Local, |c| {
        c.files.cleanup_interval_secs = 1;
        c.files.unattached_grace_secs = 60;
    })
    .await
    .unwrap();
    let info = upload_one(&fx, &fx.open, &fx.alice, "draft.txt", b"never posted").await;
    let id = info["id"].as_str().unwrap().to_owned();
    let task = fx.app.state.start();
    fx.app.clock.advance_ms(61_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count_files(&fx).await > 0 {
        assert!(std::time::Instant::now() < deadline, "the job did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert!(stored_keys(&fx).await.iter().all(|k| !k.contains(&id)));
}
