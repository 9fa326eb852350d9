//! Transcription: 16 kHz mono f32 audio → Whisper (whisper.cpp through
//! whisper-rs) → timed text.
//!
//! - [`Engine`]: one loaded model; `Send + Sync`, so one engine is shared
//!   (`Arc<Engine>`) by every job and thread. Each call to
//!   [`Engine::transcribe`] makes its own decoding state (a few MB, a few ms).
//! - [`vad`]: energy-based voice activity with hangover; only speech is
//!   ever given to Whisper (it invents text for silence).
//! - [`transcribe_call`]: per-speaker tracks → [`Cue`]s sorted by time.
//! - [`webvtt`], [`plain_text`]: renderings of cues.
//! - [`LiveCaptions`]: chunks in as they arrive, captions out with low delay.
//! - [`resample_to_16k`]: Whisper's input rate from any other.

mod call;
mod engine;
mod live;
mod render;
mod resample;
pub mod vad;

pub use call::{Cue, SpeakerAudio, transcribe_call};
pub use engine::{DEFAULT_THREADS, Engine, Segment};
pub use live::{Caption, LiveCaptions};
pub use render::{plain_text, webvtt};
pub use resample::resample_to_16k;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Why transcription failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscribeError {
    #[error("loading the Whisper model {path}: {detail}")]
    Load {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("whisper: {0}")]
    Whisper(#[from] whisper_rs::WhisperError),
    #[error("unknown language code {0:?}")]
    Language(String),
    #[error("the live-caption worker stopped")]
    WorkerGone,
}
