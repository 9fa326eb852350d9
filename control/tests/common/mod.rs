//! Test harness: an app on a fresh database of either kind, and a small
//! JSON client that drives it without a socket (`tower::ServiceExt`).
//!
//! PostgreSQL: each test creates its own database (`ctl_<random>`) on the
//! server named by `DATABASE_URL` (default: the local one `scripts/setup`
//! starts) and drops it afterwards, so tests run in parallel. Set
//! `ENCLAVE_SKIP_POSTGRES=1` to run the SQLite half alone on a machine
//! without PostgreSQL; otherwise an unreachable server fails the tests.

#![allow(dead_code)]

pub mod audit;
pub mod s3;
pub mod socket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use control::auth::tokens::{hash_secret, random_secret};
use control::bus::{EventBus, LocalBus, PgBus};
use control::clock::ManualClock;
use control::db::users::SystemRole;
use control::db::{Db, sessions};
use control::{AppState, Config};
use serde_json::Value;
use tower::ServiceExt as _;

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/enclave_test";
/// 2026-01-01T00:00:00Z: tests start their clocks here.
pub const T0: i64 = 1_767_225_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database for one test; removed on drop.
pub struct TestDb {
    pub kind: Kind,
    pub db: Db,
    pub url: String,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG.into())
}

pub fn skip_postgres() -> bool {
    std::env::var_os("ENCLAVE_SKIP_POSTGRES").is_some_and(|v| v == "1")
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let root = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{root}/{name}{query}")
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
                let db = Db::connect(&url, 5).await.expect("sqlite opens");
                TestDb {
                    kind,
                    db,
                    url,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ctl_{}", control::db::new_id());
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at DATABASE_URL ({admin}) is needed: {e} (ENCLAVE_SKIP_POSTGRES=1 skips these tests)")
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = with_database(&admin, &name);
                let db = Db::connect(&url, 5).await.expect("postgres opens");
                TestDb {
                    kind,
                    db,
                    url,
                    pg: Some((admin, name)),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub kind: Kind,
    pub tdb: TestDb,
    pub ip: SocketAddr,
}

/// A user and an access token for them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

pub const PASSWORD: &str = "Correct-Horse-9-Battery";

/// A response: status, headers and the JSON body (Null when empty).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body as sent (for downloads).
    pub bytes: axum::body::Bytes,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn new(kind: Kind) -> TestApp {
        Self::with_config(kind, Config::default()).await
    }

    pub async fn with_config(kind: Kind, config: Config) -> TestApp {
        let tdb = TestDb::new(kind).await;
        Self::on(tdb, config, false).await
    }

    /// An app on `tdb`; `pg_bus` wires LISTEN/NOTIFY (multi-node tests).
    pub async fn on(tdb: TestDb, mut config: Config, pg_bus: bool) -> TestApp {
        config.server.drain_secs = 1;
        let clock = Arc::new(ManualClock::new(T0));
        let bus: Arc<dyn EventBus> = if pg_bus {
            PgBus::connect(&tdb.url, "test").await.expect("listen")
        } else {
            LocalBus::new()
        };
        let state = AppState::new(config, tdb.db.clone(), clock.clone(), bus);
        TestApp {
            state,
            clock,
            kind: tdb.kind,
            tdb,
            ip: "192.0.2.10:5000".parse().unwrap(),
        }
    }

    /// Creates a user (with a password and an access token).
    pub async fn user(&self, name: &str, role: SystemRole) -> TestUser {
        let u =
            control::api::users::create_local_user(&self.state, name, PASSWORD, None, name, role)
                .await
                .expect("user created");
        let token = random_secret(control::auth::PAT_PREFIX);
        sessions::create_token(&self.state.db, &u.id, "test", &hash_secret(&token), T0)
            .await
            .expect("token");
        TestUser {
            id: u.id,
            username: name.into(),
            password: PASSWORD.into(),
            token,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(self.ip));
        let resp = control::app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
            bytes,
        }
    }

    /// A JSON request as `who` (bearer access token), or anonymous.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        who: Option<&TestUser>,
        body: Option<Value>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(u) = who {
            b = b.header("authorization", format!("Bearer {}", u.token));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn get(&self, uri: &str, who: &TestUser) -> Resp {
        self.call(Method::GET, uri, Some(who), None).await
    }

    pub async fn post(&self, uri: &str, who: &TestUser, body: Value) -> Resp {
        self.call(Method::POST, uri, Some(who), Some(body)).await
    }

    /// A team `name` made by `admin`, with `members` added.
    pub async fn team(&self, name: &str, admin: &TestUser, members: &[&TestUser]) -> String {
        let r = self
            .post(
                "/api/v1/teams",
                admin,
                serde_json::json!({"name": name, "display_name": name}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        for m in members {
            let r = self
                .post(
                    &format!("/api/v1/teams/{id}/members"),
                    admin,
                    serde_json::json!({"user_id": m.id}),
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        }
        id
    }

    /// A channel in `team` made by `who`.
    pub async fn channel(&self, team: &str, name: &str, kind: &str, who: &TestUser) -> String {
        let r = self
            .post(
                &format!("/api/v1/teams/{team}/channels"),
                who,
                serde_json::json!({"name": name, "display_name": name, "kind": kind}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn say(&self, channel: &str, who: &TestUser, message: &str) -> Value {
        let r = self
            .post(
                &format!("/api/v1/channels/{channel}/posts"),
                who,
                serde_json::json!({"message": message}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }
}

/// Runs each named `async fn(TestApp)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::common::TestApp::new($crate::common::Kind::Sqlite).await;
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::common::skip_postgres() {
                        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
                        return;
                    }
                    let app = $crate::common::TestApp::new($crate::common::Kind::Postgres).await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

/// control served on a loopback port, for tests that need real sockets.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(state: control::AppState) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::start_on(listener, state).await
    }

    /// On a listener bound beforehand (its address was needed in the
    /// configuration).
    pub async fn start_on(listener: tokio::net::TcpListener, state: control::AppState) -> Server {
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(control::run(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task).await;
    }
}
