//! The seam between the service and the work: a [`Runner`] validates specs
//! and runs attempts; the service queues, persists, retries and enforces
//! deadlines around it.

use std::fmt::Display;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use signaling::ids::JobId;
use signaling::jobs::{JobError, JobResult, JobSpec, JobState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One kind of work (a bot that records, transcribes, captions).
///
/// The contract an implementation honours:
/// - `validate` runs before a job is queued; an `Err` is shown to the
///   caller as 422 with the error's `code` (e.g. `unknown_call` after
///   asking control whether the call exists). It must not start work.
/// - `run` is called once per attempt. A job's `work_dir` is the same for
///   every attempt and survives an offloader restart: an attempt starts by
///   looking at what earlier attempts left there and carries on from it
///   (a recording appends a new segment instead of starting over).
/// - `deadline` is per attempt: a resumed capture counts what earlier
///   attempts captured (see `work_dir`) against `spec.max_duration_secs`
///   itself and stops capturing when that is reached.
/// - When `cancel` fires (a cancel request, or the deadline) the runner
///   stops capturing, finishes what it can with what it has (closes files,
///   hands back a partial result) and returns soon: after the configured
///   grace the attempt is dropped.
/// - When `shutdown` fires the offloader is stopping: leave `work_dir`
///   consistent and return; hand nothing back. The attempt is started again
///   (attempt + 1) when the offloader comes back.
/// - `Ok(results)` ends the job as succeeded; [`RunError::Transient`] asks
///   for another attempt after a back-off; [`RunError::Permanent`] fails the
///   job at once. The log keeps whatever was written to [`JobLog`].
/// - The spec's control token is a secret: never log it.
pub trait Runner: Send + Sync + 'static {
    fn validate<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Result<(), JobError>>;
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Vec<JobResult>, RunError>>;
}

/// Why an attempt ended without results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// Worth trying again (control unreachable, a node moved).
    #[error("transient failure: {}: {}", .0.code, .0.message)]
    Transient(JobError),
    /// Trying again gives the same answer (the call ended, a bad spec).
    #[error("permanent failure: {}: {}", .0.code, .0.message)]
    Permanent(JobError),
}

impl RunError {
    pub fn transient(code: &str, message: impl Into<String>) -> RunError {
        RunError::Transient(job_error(code, message))
    }

    pub fn permanent(code: &str, message: impl Into<String>) -> RunError {
        RunError::Permanent(job_error(code, message))
    }

    pub fn error(&self) -> &JobError {
        match self {
            RunError::Transient(e) | RunError::Permanent(e) => e,
        }
    }
}

/// A [`JobError`] from a code and a message.
pub fn job_error(code: &str, message: impl Into<String>) -> JobError {
    JobError {
        code: code.to_string(),
        message: message.into(),
    }
}

/// Everything one attempt needs.
pub struct JobContext {
    pub id: JobId,
    pub spec: JobSpec,
    /// 1 for the first run; a retry or a restart adds one.
    pub attempt: u32,
    /// Kept across attempts and restarts: captured media lives here.
    pub work_dir: PathBuf,
    /// Set on a cancel request and when the deadline passes.
    pub cancel: CancellationToken,
    /// Set when the offloader stops; the attempt runs again later.
    pub shutdown: CancellationToken,
    /// When `cancel` fires by itself: capture limit + processing time from
    /// this attempt's start.
    pub deadline: Instant,
    pub log: JobLog,
    pub progress: Progress,
}

/// Appends lines to the job's `log.txt` (kept even when the job fails) and
/// mirrors them to tracing.
#[derive(Clone)]
pub struct JobLog {
    id: JobId,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl JobLog {
    pub(crate) fn open(id: JobId, path: &std::path::Path) -> JobLog {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| tracing::warn!(job = %id, error = %e, "job log does not open"))
            .ok();
        JobLog {
            id,
            file: Arc::new(Mutex::new(file)),
        }
    }

    /// One line, stamped with the wall-clock time.
    pub fn line(&self, msg: impl Display) {
        let msg = msg.to_string();
        tracing::info!(job = %self.id, "{msg}");
        let stamp = chrono::DateTime::from_timestamp_millis(super::clock::system_now_ms())
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ");
        // A poisoned lock only means another line panicked mid-write; the
        // file itself is still fine to append to.
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_mut() {
            let _ = writeln!(f, "{stamp} {}", msg.replace('\n', " "));
        }
    }
}

/// What an attempt reports while it runs.
#[derive(Clone)]
pub struct Progress {
    pub(crate) sink: Arc<dyn Fn(ProgressUpdate) + Send + Sync>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum ProgressUpdate {
    State(JobState),
    CapturedMs(u64),
}

impl Progress {
    /// `Running` while capturing, `Processing` once capture is over; other
    /// states belong to the service and are ignored.
    pub fn set_state(&self, state: JobState) {
        if matches!(state, JobState::Running | JobState::Processing) {
            (self.sink)(ProgressUpdate::State(state));
        }
    }

    /// Media captured so far, in milliseconds of call time, counting what
    /// earlier attempts captured.
    pub fn set_captured_ms(&self, ms: u64) {
        (self.sink)(ProgressUpdate::CapturedMs(ms));
    }
}
