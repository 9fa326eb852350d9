//! One attempt of a job: start it on a free worker, watch its deadline,
//! cancel and shutdown, then record how it ended and decide what is next
//! (done, retry after a back-off, or failed).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use signaling::ids::JobId;
use signaling::jobs::{JobResult, JobState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{Attempt, Inner, Scheduler};
use super::runner::{JobContext, JobLog, Progress, ProgressUpdate, RunError, Runner, job_error};

type Outcome = Result<Vec<JobResult>, RunError>;

/// The runner's attempt with its panics turned into a permanent failure, so
/// a bug in one job frees its worker and fails that job alone.
fn guard_panics(runner: &dyn Runner, ctx: JobContext) -> BoxFuture<'static, Outcome> {
    let panicked = || {
        Err(RunError::permanent(
            "runner_panicked",
            "the job's runner panicked",
        ))
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| runner.run(ctx))) {
        Ok(fut) => Box::pin(
            AssertUnwindSafe(fut)
                .catch_unwind()
                .map(move |r| r.unwrap_or_else(|_| panicked())),
        ),
        Err(_) => Box::pin(async move { panicked() }),
    }
}

/// Why an attempt stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The runner returned on its own.
    Returned,
    Deadline,
    Cancelled,
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Returned => "returned",
            End::Deadline => "deadline",
            End::Cancelled => "cancelled",
            End::Shutdown => "shutdown",
        }
    }
}

impl Scheduler {
    pub(super) fn start_attempt(self: &Arc<Self>, inner: &mut Inner, id: JobId) {
        let Some(entry) = inner.jobs.get_mut(&id) else {
            return;
        };
        let rec = &mut entry.rec;
        rec.attempts += 1;
        rec.state = JobState::Running;
        let now = self.clock.now_ms();
        rec.started_at.get_or_insert(now);
        let n = rec.attempts;
        let budget = self.cfg.attempt_budget(rec.spec.max_duration_secs);
        let started = Instant::now();
        let deadline = started + budget;
        let cancel = CancellationToken::new();
        let log = self.job_log(&id);
        log.line(format!(
            "attempt {n} started (deadline in {} s)",
            budget.as_secs()
        ));
        self.persist(rec);
        let weak: Weak<Scheduler> = Arc::downgrade(self);
        let pid = id.clone();
        let progress = Progress {
            sink: Arc::new(move |u| {
                if let Some(s) = weak.upgrade() {
                    s.progress(&pid, n, u);
                }
            }),
        };
        let ctx = JobContext {
            id: id.clone(),
            spec: rec.spec.clone(),
            attempt: n,
            work_dir: self.store.work_dir(&id),
            cancel: cancel.clone(),
            shutdown: self.shutdown.child_token(),
            deadline,
            log: log.clone(),
            progress,
        };
        if let Err(e) = std::fs::create_dir_all(&ctx.work_dir) {
            log.line(format!("work dir does not open: {e}"));
        }
        let sched = self.clone();
        let token = cancel.clone();
        // `run` is called on the task, not here under the table's lock: a
        // runner may report progress before it returns its future.
        let task = tokio::spawn(async move {
            let fut = guard_panics(&*sched.runner, ctx);
            sched.drive(id, n, fut, token, deadline, log).await;
        });
        entry.attempt = Some(Attempt {
            n,
            cancel,
            task: task.abort_handle(),
            started,
        });
        inner.running += 1;
        self.metrics.attempts.inc();
        self.notify();
    }

    async fn drive(
        self: Arc<Self>,
        id: JobId,
        n: u32,
        mut fut: BoxFuture<'static, Outcome>,
        cancel: CancellationToken,
        deadline: Instant,
        log: JobLog,
    ) {
        let end = tokio::select! {
            r = &mut fut => {
                // A runner returning because the offloader stops has not
                // finished: its result is not the job's.
                let end = if self.shutdown.is_cancelled() { End::Shutdown } else { End::Returned };
                return self.finish(&id, n, end, Some(r), &log);
            }
            _ = tokio::time::sleep_until(deadline) => End::Deadline,
            _ = cancel.cancelled() => End::Cancelled,
            _ = self.shutdown.cancelled() => End::Shutdown,
        };
        // On shutdown the runner sees `shutdown` only: a fired `cancel` would
        // tell it to wrap up and hand back, and the attempt runs again later.
        if end != End::Shutdown {
            cancel.cancel();
        }
        let grace = match end {
            End::Shutdown => self.cfg.drain_secs,
            _ => self.cfg.cancel_grace_secs,
        };
        if end == End::Deadline {
            log.line(format!("attempt {n} passed its deadline; cancelling"));
        }
        let r = tokio::time::timeout(Duration::from_secs(grace), fut)
            .await
            .ok();
        if r.is_none() {
            log.line(format!(
                "attempt {n} did not return within {grace} s of being stopped; dropped"
            ));
        }
        self.finish(&id, n, end, r, &log);
    }

    fn finish(self: &Arc<Self>, id: &JobId, n: u32, end: End, r: Option<Outcome>, log: &JobLog) {
        let mut inner = self.lock();
        inner.running = inner.running.saturating_sub(1);
        let inner_ref = &mut *inner;
        let Some(entry) = inner_ref.jobs.get_mut(id) else {
            self.pump(&mut inner);
            return;
        };
        if let Some(a) = entry.attempt.take_if(|a| a.n == n) {
            self.metrics
                .attempt_seconds
                .with_label_values(&[end.label()])
                .observe(a.started.elapsed().as_secs_f64());
        }
        if end == End::Shutdown {
            // job.json still says running: the next start resumes it.
            log.line(format!("attempt {n} stopped for an offloader shutdown"));
            drop(inner);
            self.notify();
            return;
        }
        let rec = &mut entry.rec;
        let now = self.clock.now_ms();
        let mut outcome = None;
        if rec.state == JobState::Cancelled {
            if let Some(Ok(results)) = r {
                rec.results = results;
            }
            log.line(format!("attempt {n} ended after the cancel"));
        } else {
            match (end, r) {
                (End::Deadline, r) => {
                    if let Some(Ok(results)) = r {
                        rec.results = results;
                    }
                    let secs = self
                        .cfg
                        .attempt_budget(rec.spec.max_duration_secs)
                        .as_secs();
                    rec.error = Some(job_error(
                        "deadline_exceeded",
                        format!("attempt {n} ran past its deadline of {secs} s"),
                    ));
                    outcome = Some(JobState::Failed);
                }
                (_, Some(Ok(results))) => {
                    log.line(format!(
                        "attempt {n} succeeded with {} result(s)",
                        results.len()
                    ));
                    rec.results = results;
                    rec.error = None;
                    outcome = Some(JobState::Succeeded);
                }
                (_, Some(Err(RunError::Permanent(e)))) => {
                    log.line(format!("attempt {n} failed: {}: {}", e.code, e.message));
                    rec.error = Some(e);
                    outcome = Some(JobState::Failed);
                }
                (_, Some(Err(RunError::Transient(e)))) => {
                    log.line(format!(
                        "attempt {n} failed (transient): {}: {}",
                        e.code, e.message
                    ));
                    let failures = rec.attempts.saturating_sub(rec.restarts);
                    if failures < self.cfg.max_attempts {
                        let delay = self.cfg.backoff(failures);
                        log.line(format!("retrying in {} ms", delay.as_millis()));
                        rec.state = JobState::Queued;
                        let sched = self.clone();
                        let rid = id.clone();
                        let retry = tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            sched.requeue(&rid);
                        });
                        entry.retry = Some(retry.abort_handle());
                        self.metrics.retries.inc();
                    } else {
                        rec.error = Some(job_error(
                            &e.code,
                            format!("{} (gave up after {failures} attempts)", e.message),
                        ));
                        outcome = Some(JobState::Failed);
                    }
                }
                (_, None) => {
                    rec.error = Some(job_error(
                        "runner_unresponsive",
                        format!("attempt {n} did not return after being stopped"),
                    ));
                    outcome = Some(JobState::Failed);
                }
            }
        }
        let rec = &mut entry.rec;
        if let Some(state) = outcome {
            rec.state = state;
            rec.finished_at = Some(now);
            if let Some(e) = &rec.error {
                log.line(format!("job failed: {}: {}", e.code, e.message));
            }
            self.metrics
                .outcomes
                .with_label_values(&[super::metrics::state_name(state)])
                .inc();
        }
        self.persist(rec);
        self.pump(&mut inner);
        drop(inner);
        self.notify();
    }

    fn requeue(self: &Arc<Self>, id: &JobId) {
        let mut inner = self.lock();
        let inner_ref = &mut *inner;
        let Some(entry) = inner_ref.jobs.get_mut(id) else {
            return;
        };
        entry.retry = None;
        if entry.rec.state == JobState::Queued && entry.attempt.is_none() {
            inner_ref.queue.insert((entry.rec.seq, id.clone()));
            self.pump(&mut inner);
        }
    }

    fn progress(&self, id: &JobId, n: u32, update: ProgressUpdate) {
        let mut inner = self.lock();
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        let current = entry.attempt.as_ref().is_some_and(|a| a.n == n);
        if !current || entry.rec.state.is_final() {
            return;
        }
        match update {
            ProgressUpdate::State(s) if s != entry.rec.state => {
                entry.rec.state = s;
                self.persist(&entry.rec);
            }
            ProgressUpdate::State(_) => return,
            ProgressUpdate::CapturedMs(ms) => entry.rec.captured_ms = ms,
        }
        drop(inner);
        self.notify();
    }

    /// Graceful stop: no new attempts; running ones see `shutdown`, get
    /// `drain_secs` to leave their work dir in order and stay "running" on
    /// disk, so the next start resumes them.
    pub async fn stop(self: &Arc<Self>) {
        let mut rx = self.changed.subscribe();
        {
            let mut inner = self.lock();
            inner.stopped = true;
            for e in inner.jobs.values_mut() {
                if let Some(r) = e.retry.take() {
                    r.abort();
                }
            }
        }
        self.shutdown.cancel();
        let limit = Instant::now() + Duration::from_secs(self.cfg.drain_secs + 1);
        while self.lock().running > 0 {
            if !matches!(
                tokio::time::timeout_at(limit, rx.changed()).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        self.abort_all();
    }

    /// Abrupt stop, as a crash would: every task is dropped where it is and
    /// nothing more is written.
    pub fn abort_all(&self) {
        let mut inner = self.lock();
        inner.stopped = true;
        for e in inner.jobs.values_mut() {
            if let Some(a) = e.attempt.take() {
                a.task.abort();
            }
            if let Some(r) = e.retry.take() {
                r.abort();
            }
        }
    }
}
