//! [`ServiceConfig`]: the `[jobs]` table of the offloader's TOML file,
//! overridden by `ENCLAVE_JOBS__<KEY>` environment variables. Other tables
//! of the same file belong to the workloads and are left alone. Every
//! problem is reported at once, before anything binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Shortest API key accepted: a guessable key would open every call's
/// recording to whoever guesses it.
pub const MIN_API_KEY_LEN: usize = 16;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// The job API, `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    /// Jobs live under `<data_dir>/jobs/<id>/`; one service per data dir.
    pub data_dir: PathBuf,
    /// The bearer key control sends. Set this or `api_key_file`.
    pub api_key: String,
    /// A file holding the key (a mounted secret); surrounding white space
    /// is ignored.
    pub api_key_file: Option<PathBuf>,
    /// Attempts running at once; more jobs wait in the queue.
    pub max_concurrent: usize,
    /// Jobs waiting at most; one more is refused with 503 `queue_full`.
    pub max_queued: usize,
    /// Longest capture, whatever a spec asks for.
    pub max_duration_secs: u64,
    /// Time after the capture for composing, transcribing, handing back.
    /// An attempt's deadline is its capture limit plus this.
    pub processing_secs: u64,
    /// Attempts a job gets when its runner reports transient failures.
    pub max_attempts: u32,
    /// Times a job interrupted by an offloader restart is started again;
    /// bounds a job that brings the process down every time it runs.
    pub max_restarts: u32,
    /// Wait before the first retry; each retry waits twice as long…
    pub retry_base_ms: u64,
    /// …but never longer than this.
    pub retry_max_ms: u64,
    /// After a cancel or a deadline, how long a runner gets to wrap up
    /// before its attempt is dropped.
    pub cancel_grace_secs: u64,
    /// On shutdown, how long running attempts get to leave their work dir
    /// in order; they are started again on the next start.
    pub drain_secs: u64,
    /// Finished jobs are removed after this many days; failed ones keep
    /// their state and log, only their work dir goes.
    pub retention_days: u64,
    /// How often the retention sweeper runs.
    pub sweep_secs: u64,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("api_key", &"<redacted>")
            .field("api_key_file", &self.api_key_file)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queued", &self.max_queued)
            .field("max_duration_secs", &self.max_duration_secs)
            .field("processing_secs", &self.processing_secs)
            .field("max_attempts", &self.max_attempts)
            .field("max_restarts", &self.max_restarts)
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            data_dir: PathBuf::from("/var/lib/enclave-offloader"),
            api_key: String::new(),
            api_key_file: None,
            max_concurrent: 2,
            max_queued: 1000,
            max_duration_secs: 4 * 3600,
            processing_secs: 30 * 60,
            max_attempts: 3,
            max_restarts: 5,
            retry_base_ms: 1000,
            retry_max_ms: 5 * 60 * 1000,
            cancel_grace_secs: 60,
            drain_secs: 10,
            retention_days: 30,
            sweep_secs: 3600,
        }
    }
}

/// `ENCLAVE_<TABLE>__<KEY>` variables for one table of the offloader's
/// file (each table has its own loader; the others' variables are not
/// its business).
pub fn env_table(table: &'static str) -> Env {
    Env::prefixed("ENCLAVE_").split("__").filter(move |k| {
        k.as_str()
            .to_ascii_lowercase()
            .split('.')
            .next()
            .is_some_and(|top| top == table)
    })
}

impl ServiceConfig {
    /// Reads the `[jobs]` table of `file` (if any) and `ENCLAVE_JOBS__*`.
    pub fn load(file: Option<&Path>) -> Result<ServiceConfig, Vec<String>> {
        let mut fig = Figment::from(Serialized::defaults(Defaults::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(vec![format!(
                    "config file {} does not exist",
                    path.display()
                )]);
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(env_table("jobs"));
        let config: ServiceConfig = fig
            .extract_inner("jobs")
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values together; every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.max_concurrent == 0 {
            errors.push("jobs.max_concurrent must be at least 1".to_string());
        }
        if self.max_queued == 0 {
            errors.push("jobs.max_queued must be at least 1".to_string());
        }
        if self.max_attempts == 0 {
            errors.push("jobs.max_attempts must be at least 1".to_string());
        }
        if self.max_duration_secs == 0 {
            errors.push("jobs.max_duration_secs must be at least 1".to_string());
        }
        if self.sweep_secs == 0 {
            errors.push("jobs.sweep_secs must be at least 1".to_string());
        }
        if self.retry_max_ms < self.retry_base_ms {
            errors.push("jobs.retry_max_ms must not be below jobs.retry_base_ms".to_string());
        }
        match (self.api_key.is_empty(), &self.api_key_file) {
            (false, Some(_)) => {
                errors.push("set jobs.api_key or jobs.api_key_file, not both".to_string())
            }
            (true, None) => {
                errors.push("jobs.api_key or jobs.api_key_file is required".to_string())
            }
            (false, None) if self.api_key.len() < MIN_API_KEY_LEN => errors.push(format!(
                "jobs.api_key must be at least {MIN_API_KEY_LEN} characters"
            )),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The key itself, read from `api_key_file` when that is set.
    pub fn resolve_api_key(&self) -> Result<String, String> {
        let key = match &self.api_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("jobs.api_key_file {}: {e}", path.display()))?
                .trim()
                .to_string(),
            None => self.api_key.clone(),
        };
        if key.len() < MIN_API_KEY_LEN {
            return Err(format!(
                "the API key must be at least {MIN_API_KEY_LEN} characters"
            ));
        }
        Ok(key)
    }

    /// An attempt's whole budget: capture plus processing.
    pub(crate) fn attempt_budget(&self, requested_secs: Option<u64>) -> Duration {
        let capture = requested_secs
            .unwrap_or(self.max_duration_secs)
            .min(self.max_duration_secs);
        Duration::from_secs(capture.saturating_add(self.processing_secs))
    }

    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u64 << failures.saturating_sub(1).min(20);
        Duration::from_millis(
            self.retry_base_ms
                .saturating_mul(factor)
                .min(self.retry_max_ms),
        )
    }
}

/// The file's shape: the service's table, defaulted, beside whatever else.
#[derive(Default, Serialize)]
struct Defaults {
    jobs: ServiceConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_table_and_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offloader.toml");
        std::fs::write(
            &path,
            "[jobs]\nmax_concurrent = 4\napi_key = \"0123456789abcdef0\"\n\n[whisper]\nmodel = \"base\"\n",
        )
        .unwrap();
        let c = ServiceConfig::load(Some(&path)).unwrap();
        assert_eq!(c.max_concurrent, 4);
        assert_eq!(c.max_attempts, 3);
        assert!(!format!("{c:?}").contains("0123456789abcdef0"));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offloader.toml");
        std::fs::write(&path, "[jobs]\nmax_concurrent = 0\nmax_attempts = 0\n").unwrap();
        let errors = ServiceConfig::load(Some(&path)).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        std::fs::write(&path, "[jobs]\nmax_concurent = 2\n").unwrap();
        let errors = ServiceConfig::load(Some(&path)).unwrap_err();
        assert!(errors[0].contains("max_concurent"), "{errors:?}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let c = ServiceConfig::default();
        let ms: Vec<u128> = (1..=11).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(&ms[..4], &[1000, 2000, 4000, 8000]);
        assert_eq!(ms[10], 300_000);
        assert_eq!(c.attempt_budget(Some(10)).as_secs(), 10 + 1800);
        assert_eq!(c.attempt_budget(Some(99_999)).as_secs(), 4 * 3600 + 1800);
    }
}

#[cfg(test)]
mod deploy_tests {
    use super::*;

    /// The Deployment's ConfigMap holds a config this version reads.
    #[test]
    fn the_kubernetes_config_map_loads() {
        let yaml = include_str!("../../../deploy/kubernetes/offloader-deployment.yaml");
        let toml: String = yaml
            .lines()
            .skip_while(|l| !l.contains("offloader.toml: |"))
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offloader.toml");
        std::fs::write(&path, &toml).unwrap();
        let c = ServiceConfig::load(Some(&path)).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/data"));
        assert_eq!(c.listen.port(), 8090);
        assert!(c.drain_secs < 30, "drain within the pod's grace period");
    }
}
