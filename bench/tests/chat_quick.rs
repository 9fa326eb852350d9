//! `bench chat` at small scale, on SQLite and on PostgreSQL: 50 clients in
//! channels of 10, 20 posts a second for 5 s. Asserts correctness only —
//! every accepted post reached every member of its channel exactly once,
//! in seq order, and no one else — never speed: timing on a shared 2-core
//! machine is noise.
//!
//! control runs in this process (on a runtime of its own), so the test
//! needs no control binary; the bench drives it through `--control-url`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bench::chat::api::Accounts;
use bench::chat::server::{ADMIN, ADMIN_PASSWORD, Database};
use bench::chat::{ChatOptions, run};
use control::bus::{EventBus, LocalBus, PgBus};
use control::clock::SystemClock;
use control::db::Db;
use control::db::users::SystemRole;
use control::{AppState, Config};

const CLIENTS: usize = 50;
const MEMBERS: usize = 10;
const RATE: f64 = 20.0;
const SECONDS: u64 = 5;

struct InProcessControl {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/enclave_test".into())
}

fn with_database(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let root = &base[..base.rfind('/').expect("a database URL has a path")];
    format!("{root}/{name}")
}

async fn pg_exec(admin: &str, sql: String) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at DATABASE_URL ({admin}) is needed: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("database statement");
}

impl InProcessControl {
    fn start(database: Database) -> InProcessControl {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("control runtime");
        let pg = match database {
            Database::Sqlite => None,
            Database::Postgres => {
                let admin = pg_admin_url();
                let name = format!("bench_quick_{}", control::db::new_id().to_lowercase());
                runtime.block_on(pg_exec(&admin, format!("CREATE DATABASE \"{name}\"")));
                Some((admin, name))
            }
        };
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        config.server.drain_secs = 1;
        config.auth.login_rate_per_minute = 1_000_000;
        config.auth.cookie_secure = false;
        config.log.audit_file = dir.path().join("audit.log").display().to_string();
        if let Some((admin, name)) = &pg {
            config.database.url = with_database(admin, name);
        }
        let url = config.database_url();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let db = Db::connect(&url, 10).await.expect("database opens");
                let bus: Arc<dyn EventBus> = match database {
                    Database::Sqlite => LocalBus::new(),
                    Database::Postgres => PgBus::connect(&url, "quick").await.expect("listen"),
                };
                let state = AppState::new(config, db, Arc::new(SystemClock), bus);
                control::api::users::create_local_user(
                    &state,
                    ADMIN,
                    ADMIN_PASSWORD,
                    None,
                    "Bench admin",
                    SystemRole::Admin,
                )
                .await
                .expect("admin created");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("address"))
                    .expect("test waits");
                let _ = control::run(listener, state, async move {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("control starts");
        InProcessControl {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
            pg,
        }
    }
}

impl Drop for InProcessControl {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((admin, name)) = self.pg.take() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(pg_exec(
                &admin,
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            ));
        }
    }
}

fn every_post_reaches_every_member(database: Database, accounts: Accounts) {
    let control = InProcessControl::start(database);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("generator runtime");
    let o = ChatOptions {
        clients: CLIENTS,
        posts_per_sec: RATE,
        channel_members: MEMBERS,
        duration: Duration::from_secs(SECONDS),
        database,
        control_url: Some(format!("http://{}", control.addr)),
        control_bin: None,
        control_cpus: None,
        gen_cpus: bench::procstat::allowed_cpus(),
        pinning: "not pinned (test)".into(),
        command: "chat quick test".into(),
        wait_quiet: Duration::ZERO,
        progress: false,
        accounts,
    };
    let r = runtime.block_on(run(&o)).expect("the run completes");
    println!("{}", r.table());
    let posts = (RATE * SECONDS as f64) as usize;
    assert_eq!(r.connected, CLIENTS, "{:?}", r.connect_errors);
    assert_eq!(r.accounts, accounts.name());
    assert_eq!(r.channels, CLIENTS / MEMBERS);
    assert_eq!(r.posts_sent, posts);
    assert_eq!(r.posts_accepted, posts, "{:?}", r.post_errors);
    let c = &r.delivery;
    assert_eq!(c.sockets_checked, CLIENTS);
    assert_eq!(c.expected, (posts * MEMBERS) as u64);
    assert_eq!(c.delivered, c.expected, "{:?}", c.examples);
    assert!(c.ok(), "{c:#?}");
    assert_eq!(r.delay_ms.count, c.expected);
    assert!(r.delay_ms.p50 > 0.0);
}

#[test]
fn sqlite() {
    every_post_reaches_every_member(Database::Sqlite, Accounts::Users);
}

/// The accounts big runs use: bots, set up without password hashing.
#[test]
fn sqlite_bots() {
    every_post_reaches_every_member(Database::Sqlite, Accounts::Bots);
}

#[test]
fn postgres() {
    if std::env::var_os("ENCLAVE_SKIP_POSTGRES").is_some_and(|v| v == "1") {
        eprintln!("ENCLAVE_SKIP_POSTGRES=1: skipped");
        return;
    }
    every_post_reaches_every_member(Database::Postgres, Accounts::Users);
}
