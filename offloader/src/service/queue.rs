//! The job table and its FIFO queue. One mutex guards both; every state
//! change is written to disk while it is held, so the file order matches
//! the order of changes (job.json is small; an fsync per change is cheap
//! next to a recording's minutes).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use signaling::ids::JobId;
use signaling::jobs::{JobInfo, JobSpec, JobState};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::config::ServiceConfig;
use super::metrics::{Metrics, STATES, Snapshot};
use super::runner::{JobLog, Runner, job_error};
use super::store::{JobRecord, Loaded, Store};

/// Why a job was not created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error("{0} jobs are waiting already")]
    QueueFull(usize),
    #[error("the offloader is stopping")]
    Stopping,
    #[error("job state does not persist: {0}")]
    Io(#[from] io::Error),
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CancelError {
    #[error("no such job")]
    NotFound,
    #[error("the job has finished already")]
    AlreadyFinished(JobState),
}

pub(crate) struct Scheduler {
    pub(super) inner: Mutex<Inner>,
    pub(super) store: Store,
    pub(super) runner: Arc<dyn Runner>,
    pub(super) cfg: ServiceConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) metrics: Metrics,
    /// Fires when the service stops; attempts leave their work as it is.
    pub(super) shutdown: CancellationToken,
    /// Bumped on every state change, for whoever waits on a job.
    pub(super) changed: watch::Sender<u64>,
}

pub(super) struct Inner {
    pub jobs: HashMap<JobId, Entry>,
    /// (seq, id) of the jobs ready to start, oldest first.
    pub queue: BTreeSet<(u64, JobId)>,
    pub running: usize,
    pub next_seq: u64,
    /// No new attempts start (shutdown).
    pub stopped: bool,
}

pub(super) struct Entry {
    pub rec: JobRecord,
    pub attempt: Option<Attempt>,
    /// A retry waiting for its back-off.
    pub retry: Option<AbortHandle>,
}

/// The attempt in flight.
pub(super) struct Attempt {
    pub n: u32,
    pub cancel: CancellationToken,
    pub task: AbortHandle,
    pub started: Instant,
}

impl Scheduler {
    /// Builds the table from what was on disk. Queued jobs queue again in
    /// creation order; jobs that were running start again (attempt + 1)
    /// with the same work dir; unreadable ones are marked failed.
    pub fn new(
        cfg: ServiceConfig,
        store: Store,
        runner: Arc<dyn Runner>,
        clock: Arc<dyn Clock>,
        loaded: Vec<Loaded>,
    ) -> Arc<Scheduler> {
        let sched = Arc::new(Scheduler {
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                queue: BTreeSet::new(),
                running: 0,
                next_seq: 1,
                stopped: false,
            }),
            store,
            runner,
            cfg,
            clock,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            changed: watch::channel(0).0,
        });
        {
            let mut inner = sched.lock();
            for l in loaded {
                let rec = match l {
                    Loaded::Job(rec) => sched.recover(*rec),
                    Loaded::Corrupt { id, error } => match sched.mark_corrupt(&id, &error) {
                        Some(rec) => rec,
                        None => continue,
                    },
                };
                inner.next_seq = inner.next_seq.max(rec.seq + 1);
                if rec.state == JobState::Queued {
                    inner.queue.insert((rec.seq, rec.id.clone()));
                }
                inner.jobs.insert(
                    rec.id.clone(),
                    Entry {
                        rec,
                        attempt: None,
                        retry: None,
                    },
                );
            }
        }
        sched
    }

    fn recover(&self, mut rec: JobRecord) -> JobRecord {
        if !matches!(rec.state, JobState::Running | JobState::Processing) {
            return rec;
        }
        let log = self.job_log(&rec.id);
        if rec.restarts >= self.cfg.max_restarts {
            log.line(format!(
                "attempt {} was interrupted by an offloader restart, {} times now; giving up",
                rec.attempts,
                rec.restarts + 1
            ));
            rec.state = JobState::Failed;
            rec.finished_at = Some(self.clock.now_ms());
            rec.error = Some(job_error(
                "interrupted",
                "the job was interrupted by offloader restarts too often",
            ));
        } else {
            log.line(format!(
                "attempt {} was interrupted by an offloader restart; queued to start again",
                rec.attempts
            ));
            rec.restarts += 1;
            rec.state = JobState::Queued;
        }
        self.persist(&rec);
        rec
    }

    fn mark_corrupt(&self, id: &JobId, error: &str) -> Option<JobRecord> {
        tracing::error!(job = %id, error, "job.json does not parse");
        let log = self.job_log(id);
        log.line(format!(
            "job.json does not parse ({error}); job marked failed"
        ));
        let Some((spec, created_at, seq)) = self.store.salvage(id) else {
            tracing::error!(job = %id, "job.json holds no readable spec; job left on disk and ignored");
            return None;
        };
        if let Err(e) = self.store.set_aside(id) {
            tracing::warn!(job = %id, error = %e, "corrupt job.json not set aside");
        }
        let rec = JobRecord {
            id: id.clone(),
            seq,
            spec,
            state: JobState::Failed,
            created_at,
            started_at: None,
            finished_at: Some(self.clock.now_ms()),
            attempts: 0,
            restarts: 0,
            captured_ms: 0,
            error: Some(job_error(
                "corrupt_state",
                format!("the job's state file was unreadable: {error}"),
            )),
            results: Vec::new(),
        };
        self.persist(&rec);
        Some(rec)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock except on a broken
        // invariant; the table is still usable then.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn job_log(&self, id: &JobId) -> JobLog {
        JobLog::open(id.clone(), &self.store.log_path(id))
    }

    pub(super) fn persist(&self, rec: &JobRecord) {
        if let Err(e) = self.store.save(rec) {
            tracing::error!(job = %rec.id, error = %e, "job state not saved");
        }
    }

    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues a validated spec.
    pub fn create(self: &Arc<Self>, spec: JobSpec) -> Result<JobInfo, CreateError> {
        let mut inner = self.lock();
        if inner.stopped {
            return Err(CreateError::Stopping);
        }
        let waiting = inner
            .jobs
            .values()
            .filter(|e| e.rec.state == JobState::Queued)
            .count();
        if waiting >= self.cfg.max_queued {
            return Err(CreateError::QueueFull(waiting));
        }
        let id = loop {
            let id = JobId::new(format!("job-{:016x}", rand::random::<u64>()))
                .expect("hex digits make a valid id");
            if !inner.jobs.contains_key(&id) {
                break id;
            }
        };
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let rec = JobRecord {
            id: id.clone(),
            seq,
            spec,
            state: JobState::Queued,
            created_at: self.clock.now_ms(),
            started_at: None,
            finished_at: None,
            attempts: 0,
            restarts: 0,
            captured_ms: 0,
            error: None,
            results: Vec::new(),
        };
        self.store.create(&rec)?;
        self.job_log(&id).line(format!(
            "queued: {} for call {}",
            kind_name(&rec.spec),
            rec.spec.call_id
        ));
        let info = rec.info();
        inner.queue.insert((seq, id.clone()));
        inner.jobs.insert(
            id,
            Entry {
                rec,
                attempt: None,
                retry: None,
            },
        );
        self.pump(&mut inner);
        drop(inner);
        self.notify();
        Ok(info)
    }

    pub fn get(&self, id: &JobId) -> Option<JobInfo> {
        self.lock().jobs.get(id).map(|e| e.rec.info())
    }

    /// Newest first.
    pub fn list(&self, state: Option<JobState>) -> Vec<JobInfo> {
        let inner = self.lock();
        let mut recs: Vec<&JobRecord> = inner
            .jobs
            .values()
            .map(|e| &e.rec)
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.seq));
        recs.into_iter().map(JobRecord::info).collect()
    }

    /// Cancels a queued or running job; cancelling a cancelled job again is
    /// fine. A running attempt sees its token fire and gets the grace period
    /// to wrap up; results it still returns are kept.
    pub fn cancel(&self, id: &JobId) -> Result<JobInfo, CancelError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let entry = inner.jobs.get_mut(id).ok_or(CancelError::NotFound)?;
        match entry.rec.state {
            JobState::Cancelled => return Ok(entry.rec.info()),
            s if s.is_final() => return Err(CancelError::AlreadyFinished(s)),
            _ => {}
        }
        entry.rec.state = JobState::Cancelled;
        entry.rec.finished_at = Some(self.clock.now_ms());
        inner.queue.remove(&(entry.rec.seq, id.clone()));
        if let Some(retry) = entry.retry.take() {
            retry.abort();
        }
        if let Some(a) = &entry.attempt {
            a.cancel.cancel();
        }
        self.job_log(id).line("cancelled on request");
        self.metrics
            .outcomes
            .with_label_values(&["cancelled"])
            .inc();
        self.persist(&entry.rec);
        let info = entry.rec.info();
        self.notify();
        Ok(info)
    }

    pub fn log(&self, id: &JobId) -> Option<io::Result<Vec<u8>>> {
        let known = self.lock().jobs.contains_key(id);
        known.then(|| self.store.read_log(id))
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let mut by_state = [0i64; 6];
        for e in inner.jobs.values() {
            if let Some(i) = STATES.iter().position(|s| *s == e.rec.state) {
                by_state[i] += 1;
            }
        }
        Snapshot {
            by_state,
            queued: by_state[0],
            busy: inner.running as i64,
        }
    }

    /// Starts attempts while workers are free.
    pub(super) fn pump(self: &Arc<Self>, inner: &mut Inner) {
        while !inner.stopped && inner.running < self.cfg.max_concurrent {
            let Some((_, id)) = inner.queue.pop_first() else {
                break;
            };
            self.start_attempt(inner, id);
        }
    }

    /// Waits until a job is final (or gone).
    pub async fn wait_final(&self, id: &JobId) -> Option<JobInfo> {
        let mut rx = self.changed.subscribe();
        loop {
            match self.get(id) {
                Some(info) if info.state.is_final() => return Some(info),
                None => return None,
                Some(_) => {}
            }
            if rx.changed().await.is_err() {
                return self.get(id);
            }
        }
    }
}

pub(super) fn kind_name(spec: &JobSpec) -> &'static str {
    match spec.job {
        signaling::jobs::JobKind::Recording { .. } => "recording",
        signaling::jobs::JobKind::Transcription { .. } => "transcription",
        signaling::jobs::JobKind::Captions { .. } => "captions",
    }
}
