//! The database: one [`Db`] over PostgreSQL (production) or SQLite (single
//! node), through sqlx's `Any` driver.
//!
//! Why `Any` and one set of queries: every query is written once, in the
//! SQL both databases share (`$n` placeholders, `ON CONFLICT`, `RETURNING`,
//! partial indexes), so the two backends cannot drift apart query by query;
//! the test suite runs each API test on both. The schema keeps to types
//! `Any` carries faithfully: TEXT, BIGINT (times are Unix milliseconds,
//! flags are 0/1) — no booleans, timestamps or UUID types. DDL differs
//! only where it must (the events sequence, the full-text indexes), in
//! `migrations/postgres` and `migrations/sqlite`, which are embedded in
//! the binary; full-text matching is the one query part that differs
//! ([`crate::search`]).
//!
//! Query modules own one aggregate each: [`users`], [`sessions`], [`calls`],
//! [`teams`], [`channels`], [`posts`], [`files`], [`events`], [`bots`],
//! [`webhooks`], the outgoing-webhook [`outbox`], the Teams notification
//! [`m365_outbox`], [`identities`] and [`presence`].

pub mod bots;
pub mod call_jobs;
pub mod calls;
pub mod channels;
pub mod events;
pub mod files;
pub mod identities;
mod lease;
pub mod m365_outbox;
pub mod m365_users;
pub mod outbox;
pub mod posts;
pub mod presence;
pub mod sessions;
pub mod teams;
pub mod users;
pub mod webhooks;

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr as _};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; names the rule.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

pub type DbResult<T> = Result<T, DbError>;

/// True when `e` is a unique-constraint violation (both backends).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The pool and its backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    pub url: String,
}

const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        4,
        "integrations",
        include_str!("../../migrations/postgres/0004_integrations.sql"),
    ),
    (
        5,
        "identity_presence",
        include_str!("../../migrations/postgres/0005_identity_presence.sql"),
    ),
    (
        6,
        "files",
        include_str!("../../migrations/postgres/0006_files.sql"),
    ),
    (
        7,
        "events_pending",
        include_str!("../../migrations/postgres/0007_events_pending.sql"),
    ),
    (
        8,
        "search",
        include_str!("../../migrations/postgres/0008_search.sql"),
    ),
    (
        9,
        "calls",
        include_str!("../../migrations/postgres/0009_calls.sql"),
    ),
    (
        10,
        "call_jobs",
        include_str!("../../migrations/postgres/0010_call_jobs.sql"),
    ),
    (
        11,
        "m365",
        include_str!("../../migrations/postgres/0011_m365.sql"),
    ),
    (
        12,
        "m365_outbox",
        include_str!("../../migrations/postgres/0012_m365_outbox.sql"),
    ),
];
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        4,
        "integrations",
        include_str!("../../migrations/sqlite/0004_integrations.sql"),
    ),
    (
        5,
        "identity_presence",
        include_str!("../../migrations/sqlite/0005_identity_presence.sql"),
    ),
    (
        6,
        "files",
        include_str!("../../migrations/sqlite/0006_files.sql"),
    ),
    (
        8,
        "search",
        include_str!("../../migrations/sqlite/0008_search.sql"),
    ),
    (
        9,
        "calls",
        include_str!("../../migrations/sqlite/0009_calls.sql"),
    ),
    (
        10,
        "call_jobs",
        include_str!("../../migrations/sqlite/0010_call_jobs.sql"),
    ),
    (
        11,
        "m365",
        include_str!("../../migrations/sqlite/0011_m365.sql"),
    ),
    (
        12,
        "m365_outbox",
        include_str!("../../migrations/sqlite/0012_m365_outbox.sql"),
    ),
];

impl Db {
    /// Connects (creating a SQLite file if the URL asks for `mode=rwc`) and
    /// runs pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> DbResult<Db> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            create_sqlite_parent(url);
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers go on while one writer writes.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let db = Db {
            pool,
            backend,
            url: url.to_owned(),
        };
        db.migrate().await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> DbResult<()> {
        let list = match self.backend {
            Backend::Postgres => PG_MIGRATIONS,
            Backend::Sqlite => SQLITE_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// first and writes later fails at once with SQLITE_BUSY when another
    /// writer got in between, instead of waiting its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn create_sqlite_parent(url: &str) {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

/// A fresh random identifier: 26 characters of lower-case base32 (130
/// bits), so ids cannot be guessed or enumerated.
pub fn new_id() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    (0..26)
        .map(|_| ALPHABET[rng.random_range(0..32)] as char)
        .collect()
}
