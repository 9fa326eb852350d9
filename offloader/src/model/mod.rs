//! Whisper models: conversion from CTranslate2 (faster-whisper) format to
//! whisper.cpp's ggml format, and a cache of converted models.
//!
//! Operators bring their own models. Whisper models ship in package
//! registries in CTranslate2 format (a directory with `model.bin`,
//! `config.json` and `vocabulary.txt` or `.json`); whisper.cpp reads only
//! ggml. [`convert_ct2_to_ggml`] turns one into the other, f16 weights
//! (f32 or bf16 sources are rounded to f16; int8-quantized models are
//! refused). [`ensure_ggml`] converts once per distinct input and reuses the
//! result.

mod cache;
pub mod cli;
mod ct2;
mod ggml;
mod mel;
mod vocab;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use cache::ensure_ggml;
pub use ct2::SUPPORTED_BINARY_VERSION;

/// Whisper's audio front end, fixed by the model family.
const SAMPLE_RATE: u32 = 16_000;
const N_FFT: usize = 400;

/// Why a model could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("missing model file {0}")]
    MissingFile(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the ggml model: {0}")]
    Write(std::io::Error),
    #[error("model.bin has binary version {found}; this converter reads version {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("model.bin holds a {0}, not a Whisper model (WhisperSpec)")]
    NotWhisper(String),
    #[error("{path} is truncated: {what} needs {needed} bytes at offset {offset}")]
    Truncated {
        path: PathBuf,
        offset: u64,
        needed: u64,
        what: String,
    },
    #[error("model.bin has a variable this converter does not know: {0}")]
    UnknownVariable(String),
    #[error("model.bin lacks the variable {0}")]
    MissingVariable(String),
    #[error("variable {name} has element type {dtype}, which this converter does not handle")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("variable {name}: {detail}")]
    BadShape { name: String, detail: String },
    #[error("vocabulary {path}: {detail}")]
    BadVocabulary { path: PathBuf, detail: String },
}

impl ModelError {
    fn io(path: &Path, source: std::io::Error) -> ModelError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile(path.to_owned())
        } else {
            ModelError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    fn write(source: std::io::Error) -> ModelError {
        ModelError::Write(source)
    }
}

/// What a conversion produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertReport {
    /// Vocabulary size (51864 English-only, 51865+ multilingual).
    pub n_vocab: usize,
    /// Model width.
    pub n_state: usize,
    pub n_audio_layer: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Ordinary (non-special) tokens written.
    pub base_tokens: usize,
    /// Size of the output file.
    pub bytes: u64,
}

/// Converts the CTranslate2 Whisper model in `dir` to a ggml file at `out`.
///
/// The file is written under a temporary name next to `out` and renamed
/// when complete, so `out` is either absent, the old file, or a whole model.
pub fn convert_ct2_to_ggml(dir: &Path, out: &Path) -> Result<ConvertReport, ModelError> {
    let model_path = dir.join("model.bin");
    if !model_path.is_file() {
        return Err(ModelError::MissingFile(model_path));
    }
    let vocab_path = vocab::find(dir)?;
    let m = ct2::Ct2Model::read(&model_path)?;
    if m.spec != "WhisperSpec" {
        return Err(ModelError::NotWhisper(m.spec));
    }
    let hp = ggml::hparams(&m)?;
    let tensors = ggml::tensors(&m, &hp)?;
    let used: BTreeSet<usize> = tensors.iter().map(|t| t.var.start).collect();
    for (name, v) in &m.variables {
        if !used.contains(&v.start) && !ggml::CONFIG_VARIABLES.contains(&name.as_str()) {
            return Err(ModelError::UnknownVariable(name.clone()));
        }
    }
    let tokens = vocab::read_base_tokens(&vocab_path)?;
    let filters = mel::filterbank(SAMPLE_RATE, N_FFT, hp.n_mels);

    let tmp = temp_name(out);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        ggml::write(&mut w, &m, &hp, &filters, &tokens, &tensors)?;
        let file = w
            .into_inner()
            .map_err(|e| ModelError::write(e.into_error()))?;
        // Durable before the rename makes it visible under its final name.
        file.sync_all().map_err(ModelError::write)?;
        let bytes = file.metadata().map_err(ModelError::write)?.len();
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
        Ok(bytes)
    })();
    let bytes = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(ConvertReport {
        n_vocab: hp.n_vocab,
        n_state: hp.n_state,
        n_audio_layer: hp.n_audio_layer,
        n_text_layer: hp.n_text_layer,
        n_mels: hp.n_mels,
        tensors: tensors.len(),
        base_tokens: tokens.len(),
        bytes,
    })
}

/// `out` with a suffix unique to this conversion (process and counter), in
/// the same directory so the rename stays on one file system.
fn temp_name(out: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{n}.partial", std::process::id()));
    out.with_file_name(name)
}
