//! The job service: an HTTP API (`/v1/jobs`) in front of a persisted FIFO
//! queue with bounded concurrency, deadlines, retries and retention. What a
//! job does is a [`Runner`]'s business; the service only drives it.
//!
//! Driving it:
//! - [`serve`] loads `<data_dir>/jobs/`, requeues what was waiting or
//!   running, binds `listen` and returns a [`ServiceHandle`]. Call
//!   [`ServiceHandle::shutdown`] on SIGTERM; dropping the handle stops
//!   everything at once, as a crash would (the next start resumes).
//! - [`run_one`] runs a single job to its end in this process with the same
//!   store, for a Kubernetes Job per recording; a pod restarted on the same
//!   volume resumes the job instead of starting a new one.

mod api;
mod attempt;
mod clock;
pub mod config;
mod error;
mod metrics;
mod queue;
mod retention;
mod runner;
mod store;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use signaling::jobs::{JobError, JobInfo, JobSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use clock::{Clock, SystemClock};
pub use config::{MIN_API_KEY_LEN, ServiceConfig};
pub use error::ApiError;
pub use retention::SweepReport;
pub use runner::{JobContext, JobLog, Progress, RunError, Runner, job_error};

use queue::Scheduler;
use store::{Loaded, Store};

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("bad configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {0} is in use by another offloader")]
    DataDirInUse(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Why [`run_one`] gave no job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunOneError {
    #[error(transparent)]
    Start(#[from] ServeError),
    /// The runner refused the spec.
    #[error("the job spec was refused: {}: {}", .0.code, .0.message)]
    Rejected(JobError),
    #[error("the job does not persist: {0}")]
    Io(io::Error),
}

/// A running service.
pub struct ServiceHandle {
    addr: SocketAddr,
    sched: Arc<Scheduler>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    stop_http: Option<oneshot::Sender<()>>,
    _lock: File,
}

impl ServiceHandle {
    /// The address the API listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, gives running attempts `drain_secs` to leave
    /// their work dir in order, then stops. Those jobs stay "running" on
    /// disk and start again (attempt + 1) on the next start.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop_http.take() {
            let _ = tx.send(());
        }
        self.sched.stop().await;
        self.sweeper.abort();
        let _ = (&mut self.server).await;
    }

    /// Runs a retention sweep now, at the service clock's time.
    pub fn sweep_now(&self) -> SweepReport {
        self.sched.sweep()
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.server.abort();
        self.sweeper.abort();
        self.sched.abort_all();
    }
}

/// Starts the service with the system clock.
pub async fn serve(
    config: ServiceConfig,
    runner: Arc<dyn Runner>,
) -> Result<ServiceHandle, ServeError> {
    serve_with_clock(config, runner, Arc::new(SystemClock)).await
}

/// Starts the service with the given wall clock (timestamps, retention).
pub async fn serve_with_clock(
    config: ServiceConfig,
    runner: Arc<dyn Runner>,
    clock: Arc<dyn Clock>,
) -> Result<ServiceHandle, ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let api_key = config
        .resolve_api_key()
        .map_err(|e| ServeError::Config(vec![e]))?;
    let (lock, store, loaded) = open_data_dir(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let sched = Scheduler::new(config, store, runner, clock, loaded);
    sched.pump(&mut sched.lock());
    let sweeper = tokio::spawn(sched.clone().sweeper());
    let app = api::router(Arc::new(api::ApiState {
        sched: sched.clone(),
        api_key,
    }));
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "job API stopped");
        }
    });
    tracing::info!(%addr, "offloader job API listening");
    Ok(ServiceHandle {
        addr,
        sched,
        server,
        sweeper,
        stop_http: Some(stop_http),
        _lock: lock,
    })
}

/// Runs one job to its end in this process, with `data_dir` as its store
/// and the default limits. See [`run_one_with`].
pub async fn run_one(
    spec: JobSpec,
    data_dir: &Path,
    runner: Arc<dyn Runner>,
) -> Result<JobInfo, RunOneError> {
    let config = ServiceConfig {
        data_dir: data_dir.to_path_buf(),
        ..ServiceConfig::default()
    };
    run_one_with(spec, &config, runner).await
}

/// Runs one job to its end (retries, deadline, log as the service does). If
/// `data_dir` already holds a job with the same spec, that job carries on
/// (attempt + 1, same work dir) or, when it has finished, is returned as it
/// is; only a new job is validated. Other jobs in the data dir are left
/// alone.
pub async fn run_one_with(
    spec: JobSpec,
    config: &ServiceConfig,
    runner: Arc<dyn Runner>,
) -> Result<JobInfo, RunOneError> {
    let (_lock, store, loaded) = open_data_dir(&config.data_dir)?;
    let mut max_seq = 0;
    let mut existing = None;
    for l in loaded {
        if let Loaded::Job(rec) = l {
            let rec = *rec;
            max_seq = max_seq.max(rec.seq);
            if rec.spec == spec
                && existing
                    .as_ref()
                    .is_none_or(|e: &store::JobRecord| e.seq < rec.seq)
            {
                existing = Some(rec);
            }
        }
    }
    match &existing {
        Some(rec) if rec.state.is_final() => return Ok(rec.info()),
        // Validated when it was created; asking again after the call ended
        // would refuse a job that only needs to finish.
        Some(_) => {}
        None => runner
            .validate(&spec)
            .await
            .map_err(RunOneError::Rejected)?,
    }
    let config = ServiceConfig {
        max_concurrent: 1,
        ..config.clone()
    };
    let resumed: Vec<Loaded> = existing
        .into_iter()
        .map(|r| Loaded::Job(Box::new(r)))
        .collect();
    let sched = Scheduler::new(config, store, runner, Arc::new(SystemClock), resumed);
    let id = {
        let mut inner = sched.lock();
        inner.next_seq = inner.next_seq.max(max_seq + 1);
        inner.jobs.keys().next().cloned()
    };
    let id = match id {
        Some(id) => {
            sched.pump(&mut sched.lock());
            id
        }
        None => match sched.create(spec) {
            Ok(info) => info.id,
            Err(queue::CreateError::Io(e)) => return Err(RunOneError::Io(e)),
            Err(e) => return Err(RunOneError::Io(io::Error::other(e.to_string()))),
        },
    };
    // Dropping this future (the caller gave up) stops the attempt with it.
    let _stop = AbortOnDrop(sched.clone());
    let info = sched.wait_final(&id).await;
    info.ok_or_else(|| RunOneError::Io(io::Error::other("the job vanished from its store")))
}

struct AbortOnDrop(Arc<Scheduler>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

/// Creates and locks the data dir, then reads every job in it.
fn open_data_dir(dir: &Path) -> Result<(File, Store, Vec<Loaded>), ServeError> {
    let err = |source| ServeError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let lock = File::create(dir.join("offloader.lock")).map_err(err)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(ServeError::DataDirInUse(dir.to_path_buf()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
    }
    let store = Store::open(dir).map_err(err)?;
    let loaded = store.load_all().map_err(err)?;
    Ok((lock, store, loaded))
}
