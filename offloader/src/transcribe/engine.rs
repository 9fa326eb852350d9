//! One loaded Whisper model.

use std::path::Path;

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use super::{SAMPLE_RATE, TranscribeError};

/// Threads per transcription. One: on a machine shared with other work,
/// ggml's spinning thread pool with two threads ran 4–6× slower than one.
pub const DEFAULT_THREADS: usize = 1;

/// Whisper's encoder positions per second of audio (1500 per 30 s window).
const AUDIO_CTX_PER_SEC: usize = 50;
/// Extra encoder context beyond the audio's length: with less, the tiny
/// model tends to drop the last word.
const AUDIO_CTX_MARGIN: usize = 64;
/// Whisper's full window.
const FULL_AUDIO_CTX: usize = 1500;

/// A span of recognised text, times relative to the start of the audio given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// A loaded ggml Whisper model.
///
/// `Send + Sync`: load once and share it (`Arc<Engine>`) across jobs and
/// threads; every [`Engine::transcribe`] call uses its own state, so calls
/// run in parallel (each with [`Engine::threads`] threads).
pub struct Engine {
    ctx: WhisperContext,
    threads: usize,
    multilingual: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("threads", &self.threads)
            .field("multilingual", &self.multilingual)
            .finish()
    }
}

impl Engine {
    /// Loads a ggml model (see [`crate::model`] to make one); `threads` per
    /// transcription, at least 1.
    pub fn load(model: &Path, threads: usize) -> Result<Engine, TranscribeError> {
        whisper_rs::install_logging_hooks();
        let load_err = |detail: String| TranscribeError::Load {
            path: model.to_owned(),
            detail,
        };
        if !model.is_file() {
            return Err(load_err("no such file".to_owned()));
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(model, params)
            .map_err(|e| load_err(format!("{e} (not a whisper.cpp ggml model?)")))?;
        let multilingual = ctx.is_multilingual();
        Ok(Engine {
            ctx,
            threads: threads.max(1),
            multilingual,
        })
    }

    /// Threads each transcription uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the model knows languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// Transcribes 16 kHz mono audio; `language` is a code such as `"en"`
    /// or `"de"`, `None` to detect it (multilingual models; English-only
    /// models always produce English).
    ///
    /// Give it speech, not silence: Whisper invents text for silence
    /// (see [`super::vad`]). Short audio is encoded with a window cut to its
    /// length, which keeps a 3 s utterance from costing a 30 s encode.
    pub fn transcribe(
        &self,
        pcm16k: &[f32],
        language: Option<&str>,
    ) -> Result<Vec<Segment>, TranscribeError> {
        if pcm16k.is_empty() {
            return Ok(Vec::new());
        }
        let language = match language {
            Some(l) if whisper_rs::get_lang_id(l).is_none() => {
                return Err(TranscribeError::Language(l.to_owned()));
            }
            Some(_) if !self.multilingual => Some("en"),
            Some(l) => Some(l),
            None if self.multilingual => Some("auto"),
            None => Some("en"),
        };
        let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.threads as i32);
        p.set_language(language);
        p.set_translate(false);
        p.set_no_context(true);
        p.set_suppress_nst(true);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        let secs = pcm16k.len().div_ceil(SAMPLE_RATE as usize);
        if secs < 30 {
            let ctx = (secs * AUDIO_CTX_PER_SEC + AUDIO_CTX_MARGIN).min(FULL_AUDIO_CTX);
            p.set_audio_ctx(ctx as i32);
        }
        let mut state = self.ctx.create_state()?;
        state.full(p, pcm16k)?;
        let mut out = Vec::new();
        for seg in state.as_iter() {
            let text = seg.to_str_lossy()?.trim().to_owned();
            if text.is_empty() {
                continue;
            }
            // whisper.cpp's timestamps are in 10 ms units.
            out.push(Segment {
                start_ms: u64::try_from(seg.start_timestamp()).unwrap_or(0) * 10,
                end_ms: u64::try_from(seg.end_timestamp()).unwrap_or(0) * 10,
                text,
            });
        }
        Ok(out)
    }
}
