//! `[work]`: what the offloader's own jobs need, from the same TOML file
//! as `[jobs]`, overridden by `ENCLAVE_WORK__<KEY>`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkConfig {
    /// The address the bots' media sockets bind: one rtcd can reach.
    pub media_ip: IpAddr,
    /// The Whisper model: a whisper.cpp ggml file, or a CTranslate2
    /// (faster-whisper) model directory, converted once into
    /// `<data_dir>/models/`. Unset: transcripts and captions are refused.
    pub model: Option<PathBuf>,
    /// Whisper threads per transcription (1 suits a busy 2-core machine).
    pub threads: usize,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            media_ip: IpAddr::from([127, 0, 0, 1]),
            model: None,
            threads: 1,
        }
    }
}

impl WorkConfig {
    pub fn load(file: Option<&Path>) -> Result<WorkConfig, String> {
        let mut fig = Figment::from(Serialized::defaults(WorkDefaults::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(crate::service::config::env_table("work"));
        let c: WorkConfig = fig.extract_inner("work").map_err(|e| e.to_string())?;
        if c.threads == 0 {
            return Err("work.threads must be at least 1".into());
        }
        Ok(c)
    }

    /// The ggml model to load, converting a CTranslate2 directory first.
    pub fn ggml_model(&self, data_dir: &Path) -> Result<Option<PathBuf>, String> {
        match &self.model {
            None => Ok(None),
            Some(p) if p.is_dir() => crate::model::ensure_ggml(p, &data_dir.join("models"))
                .map(Some)
                .map_err(|e| format!("work.model {}: {e}", p.display())),
            Some(p) if p.is_file() => Ok(Some(p.clone())),
            Some(p) => Err(format!("work.model {} does not exist", p.display())),
        }
    }
}

/// `[work]` with its defaults, so a file without the table still loads.
#[derive(Default, Serialize)]
struct WorkDefaults {
    work: WorkConfig,
}
