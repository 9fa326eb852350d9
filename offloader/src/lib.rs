//! Enclave's recording, transcription and live-caption job service.
//!
//! - [`model`]: Whisper models. Operators bring CTranslate2 (faster-whisper)
//!   models; [`model::ensure_ggml`] converts one once into whisper.cpp's
//!   format and caches it.
//! - [`transcribe`]: per-speaker 16 kHz audio → voice-activity segments →
//!   Whisper → cues, rendered as WebVTT or plain text; and live captions.
//!
//! Driving it: load an [`transcribe::Engine`] from a ggml model once,
//! share it (`Arc`) between jobs, call [`transcribe::transcribe_call`] with
//! each speaker's audio, or feed [`transcribe::LiveCaptions`] chunks as
//! they arrive and forward the captions it returns.

pub mod model;
pub mod transcribe;
