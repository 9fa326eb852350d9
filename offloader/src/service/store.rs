//! Jobs on disk: `<data_dir>/jobs/<id>/` holds `job.json` (the spec with
//! its token, and the state), `log.txt` (appended) and `work/` (what the
//! runner captured). `job.json` is replaced atomically (temp file, fsync,
//! rename, fsync of the directory) so a crash leaves the old or the new
//! state, never half of one.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use signaling::ids::JobId;
use signaling::jobs::{JobError, JobInfo, JobResult, JobSpec, JobSpecSummary, JobState};

const STATE_FILE: &str = "job.json";
const LOG_FILE: &str = "log.txt";
const WORK_DIR: &str = "work";

/// A job as persisted. Unlike [`JobInfo`] it carries the whole spec,
/// token included, so a restarted offloader can run it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub id: JobId,
    /// Creation order; the queue is FIFO by this.
    pub seq: u64,
    pub spec: JobSpec,
    pub state: JobState,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub attempts: u32,
    /// Attempts that were cut short by an offloader restart rather than
    /// failing; they do not count against `max_attempts`.
    #[serde(default)]
    pub restarts: u32,
    #[serde(default)]
    pub captured_ms: u64,
    #[serde(default)]
    pub error: Option<JobError>,
    #[serde(default)]
    pub results: Vec<JobResult>,
}

impl JobRecord {
    pub fn info(&self) -> JobInfo {
        JobInfo {
            id: self.id.clone(),
            spec: JobSpecSummary::from(&self.spec),
            state: self.state,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            attempts: self.attempts,
            captured_ms: self.captured_ms,
            error: self.error.clone(),
            results: self.results.clone(),
        }
    }
}

/// What a job directory held at start.
pub(crate) enum Loaded {
    Job(Box<JobRecord>),
    /// `job.json` did not parse as a record.
    Corrupt {
        id: JobId,
        error: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(data_dir: &Path) -> io::Result<Store> {
        let root = data_dir.join("jobs");
        fs::create_dir_all(&root)?;
        Ok(Store { root })
    }

    pub fn job_dir(&self, id: &JobId) -> PathBuf {
        // JobId's shape ([A-Za-z0-9_-]) keeps this inside `root`.
        self.root.join(id.as_str())
    }

    pub fn work_dir(&self, id: &JobId) -> PathBuf {
        self.job_dir(id).join(WORK_DIR)
    }

    pub fn log_path(&self, id: &JobId) -> PathBuf {
        self.job_dir(id).join(LOG_FILE)
    }

    /// A new job's directory and first state.
    pub fn create(&self, rec: &JobRecord) -> io::Result<()> {
        fs::create_dir_all(self.work_dir(&rec.id))?;
        self.save(rec)
    }

    pub fn save(&self, rec: &JobRecord) -> io::Result<()> {
        let dir = self.job_dir(&rec.id);
        let tmp = dir.join(".job.json.tmp");
        let bytes = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(STATE_FILE))?;
        // The rename is durable only once the directory entry is.
        fs::File::open(&dir)?.sync_all()
    }

    /// The log file's contents; empty when nothing was logged.
    pub fn read_log(&self, id: &JobId) -> io::Result<Vec<u8>> {
        match fs::read(self.log_path(id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            r => r,
        }
    }

    pub fn remove(&self, id: &JobId) -> io::Result<()> {
        fs::remove_dir_all(self.job_dir(id))
    }

    /// Drops captured media, keeping the state and the log.
    pub fn remove_work(&self, id: &JobId) -> io::Result<bool> {
        match fs::remove_dir_all(self.work_dir(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keeps an unreadable state file beside the new one for a person to
    /// look at.
    pub fn set_aside(&self, id: &JobId) -> io::Result<()> {
        let dir = self.job_dir(id);
        fs::rename(dir.join(STATE_FILE), dir.join("job.json.corrupt"))
    }

    /// Every job directory. Directories whose name is not a job id, or
    /// without a state file (a crash between mkdir and the first write),
    /// are skipped with a warning.
    pub fn load_all(&self) -> io::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| JobId::new(n).ok()) else {
                tracing::warn!(path = %entry.path().display(), "not a job directory; skipped");
                continue;
            };
            let state = entry.path().join(STATE_FILE);
            let bytes = match fs::read(&state) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(job = %id, "job directory without job.json; skipped");
                    continue;
                }
                Err(e) => {
                    out.push(Loaded::Corrupt {
                        id,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            match serde_json::from_slice::<JobRecord>(&bytes) {
                Ok(rec) if rec.id == id => out.push(Loaded::Job(Box::new(rec))),
                Ok(rec) => out.push(Loaded::Corrupt {
                    id,
                    error: format!("job.json names job {}", rec.id),
                }),
                Err(e) => out.push(Loaded::Corrupt {
                    id,
                    error: e.to_string(),
                }),
            }
        }
        Ok(out)
    }

    /// What can be saved of a corrupt state file: a record if its spec
    /// still parses, so the job can be shown as failed.
    pub fn salvage(&self, id: &JobId) -> Option<(JobSpec, i64, u64)> {
        let bytes = fs::read(self.job_dir(id).join(STATE_FILE)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let spec = serde_json::from_value(v.get("spec")?.clone()).ok()?;
        let created_at = v.get("created_at").and_then(|c| c.as_i64()).unwrap_or(0);
        let seq = v.get("seq").and_then(|c| c.as_u64()).unwrap_or(0);
        Some((spec, created_at, seq))
    }
}
