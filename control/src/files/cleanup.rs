//! The cleanup job: deletes uploads that were never attached to a post
//! (after `files.unattached_grace_secs`) and objects that no row names
//! (after `files.orphan_grace_secs`: an upload's row is committed after its
//! bytes, so a young object without a row may be one on its way).
//!
//! Every node runs the job; on PostgreSQL a session advisory lock lets one
//! node at a time do the work and the others skip that round. The lock
//! belongs to a connection, so a node that dies mid-run releases it.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use sqlx::Any;
use sqlx::pool::PoolConnection;

use crate::AppState;
use crate::db::{Backend, files};
use crate::storage::{ObjectKey, delete_orphans};

/// The advisory lock key (ASCII "enclfile").
pub const LOCK_KEY: i64 = 0x656e_636c_6669_6c65;
/// Rows deleted per statement.
const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Uploads never attached, deleted with their objects.
    pub unattached: usize,
    /// Objects without a row, deleted.
    pub orphans: usize,
}

/// Runs the job every `files.cleanup_interval_secs` (first after one
/// interval) until the task is dropped.
pub async fn job(state: AppState) {
    let every = Duration::from_secs(state.config.files.cleanup_interval_secs);
    let grace = Duration::from_secs(state.config.files.orphan_grace_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let orphans_before = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match run_once(&state, orphans_before).await {
            Ok(Some(r)) if r != Report::default() => {
                tracing::info!(
                    unattached = r.unattached,
                    orphans = r.orphans,
                    "file cleanup"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "file cleanup failed"),
        }
    }
}

/// One round. `None` when another node holds the lock. Objects older than
/// `orphans_before` with no row are deleted.
pub async fn run_once(
    state: &AppState,
    orphans_before: SystemTime,
) -> anyhow::Result<Option<Report>> {
    if state.db.backend == Backend::Sqlite {
        // One node: nothing to coordinate with.
        return work(state, orphans_before).await.map(Some);
    }
    let mut lock = LockConn(Some(state.db.pool.acquire().await?));
    let conn = lock.conn();
    let locked: bool = sqlx::Row::try_get(
        &sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(LOCK_KEY)
            .fetch_one(&mut **conn)
            .await?,
        "locked",
    )?;
    if !locked {
        lock.release();
        return Ok(None);
    }
    let result = work(state, orphans_before).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut **lock.conn())
        .await
        .is_ok();
    if unlocked {
        lock.release();
    }
    // Otherwise dropping `lock` closes the connection, which releases it.
    result.map(Some)
}

/// The connection that took the advisory lock. A session lock outlives
/// the statement and the transaction: back in the pool, a connection
/// still holding it would keep every node from cleaning up. So unless
/// [`release`](Self::release)d after a successful unlock (or a failed try),
/// dropping it (an error, or the job's task aborted mid-run) closes the
/// connection instead, and the server drops the lock with the session.
struct LockConn(Option<PoolConnection<Any>>);

impl LockConn {
    fn conn(&mut self) -> &mut PoolConnection<Any> {
        self.0.as_mut().expect("taken only by release or drop")
    }

    /// Returns the connection to the pool: it holds no lock.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for LockConn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            drop(c.detach());
        }
    }
}

async fn work(state: &AppState, orphans_before: SystemTime) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let cutoff = state.clock.now_ms()
        - i64::try_from(
            state
                .config
                .files
                .unattached_grace_secs
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX);
    loop {
        let deleted = files::delete_unattached(&state.db, cutoff, BATCH).await?;
        for key in deleted.iter().flatten() {
            // A key that does not parse cannot name a stored object.
            if let Ok(key) = ObjectKey::new(key.as_str()) {
                state.store.delete(&key).await?;
            }
        }
        let rows = deleted.len();
        report.unattached += rows;
        if rows < BATCH as usize {
            break;
        }
    }
    let referenced: HashSet<ObjectKey> = files::all_keys(&state.db)
        .await?
        .into_iter()
        .filter_map(|k| ObjectKey::new(k).ok())
        .collect();
    let r = delete_orphans(
        state.store.as_ref(),
        &state.config.storage.key_prefix,
        orphans_before,
        &referenced,
    )
    .await?;
    report.orphans = r.deleted.len();
    let m = &state.metrics;
    m.files_cleaned
        .with_label_values(&["unattached"])
        .inc_by(report.unattached as u64);
    m.files_cleaned
        .with_label_values(&["orphan"])
        .inc_by(report.orphans as u64);
    Ok(report)
}
