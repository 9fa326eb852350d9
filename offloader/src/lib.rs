//! Enclave's recording, transcription and live-caption job service.
//!
//! - [`model`]: Whisper models. Operators bring CTranslate2 (faster-whisper)
//!   models; [`model::ensure_ggml`] converts one once into whisper.cpp's
//!   format and caches it.
//! - [`transcribe`]: per-speaker 16 kHz audio → voice-activity segments →
//!   Whisper → cues, rendered as WebVTT or plain text; and live captions.
//! - [`service`]: the job API (`/v1/jobs`) in front of a persisted queue
//!   with bounded workers, deadlines, retries and retention; the work itself
//!   plugs in as a [`service::Runner`].
//!
//! Driving it: load an [`transcribe::Engine`] from a ggml model once,
//! share it (`Arc`) between jobs, call [`transcribe::transcribe_call`] with
//! each speaker's audio, or feed [`transcribe::LiveCaptions`] chunks as
//! they arrive and forward the captions it returns.
//!
//! [`record`] turns what a receive-only bot captured in a call into files: the
//! bot appends frames to a capture log ([`record::CaptureWriter`]), and a job
//! reads the log back ([`record::read_capture`]) to write an audio-only file,
//! a composed recording, or PCM for transcription
//! ([`record::speaker_pcm16k`] feeds [`transcribe`]).
//!
//! Jobs run through [`service::serve`] (in-process workers behind the job
//! API) or [`service::run_one`] (one job per process, a Kubernetes Job).

pub mod bot;
pub mod model;
pub mod record;
pub mod service;
pub mod transcribe;
pub mod work;
