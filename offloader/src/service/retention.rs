//! Retention: finished jobs older than `retention_days` go. Succeeded and
//! cancelled jobs are removed entirely; failed ones lose their work dir but
//! keep `job.json` and `log.txt`, so a person can still read why.

use std::sync::Arc;
use std::time::Duration;

use signaling::jobs::JobState;

use super::queue::Scheduler;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Jobs removed with everything they held.
    pub removed: usize,
    /// Failed jobs whose work dir was removed.
    pub trimmed: usize,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Scheduler {
    /// One pass over the table at the clock's current time.
    pub fn sweep(&self) -> SweepReport {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub((self.cfg.retention_days as i64).saturating_mul(DAY_MS));
        let mut report = SweepReport::default();
        let mut inner = self.lock();
        let old: Vec<_> = inner
            .jobs
            .values()
            .filter(|e| e.attempt.is_none() && e.rec.state.is_final())
            .filter(|e| e.rec.finished_at.is_some_and(|t| t < cutoff))
            .map(|e| (e.rec.id.clone(), e.rec.state))
            .collect();
        for (id, state) in old {
            if state == JobState::Failed {
                match self.store.remove_work(&id) {
                    Ok(true) => {
                        self.job_log(&id)
                            .line("retention: captured media removed; state and log kept");
                        report.trimmed += 1;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "retention: work dir not removed")
                    }
                }
            } else {
                match self.store.remove(&id) {
                    Ok(()) => {
                        inner.jobs.remove(&id);
                        report.removed += 1;
                    }
                    Err(e) => tracing::warn!(job = %id, error = %e, "retention: job not removed"),
                }
            }
        }
        if report != SweepReport::default() {
            tracing::info!(
                removed = report.removed,
                trimmed = report.trimmed,
                "retention sweep"
            );
        }
        report
    }

    /// Sweeps every `sweep_secs` until shutdown.
    pub async fn sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.sweep_secs));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let s = self.clone();
            // Removing directories blocks; keep it off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || s.sweep()).await {
                tracing::error!(error = %e, "retention sweep panicked");
            }
        }
    }
}
